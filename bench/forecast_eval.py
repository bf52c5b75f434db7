"""Multi-horizon forecast models against persistence, per horizon, on the shared recording.

    .venv/bin/python bench/forecast_eval.py [--shared DIR] [--cache DIR] [--test-days 7] [--reuse-features]

The recording is converted and backfilled once into ``--cache`` (bench/evaluate.py's
``prepare_lake``, not timed); the features of every day are built (timed, skipped with
``--reuse-features`` when the cache already holds them), then the forecast family is trained on all
but the last ``--test-days`` days (the 30-minute trainer's split, gaps of the longest horizon) and
evaluated on them at every horizon. Prints: horizon | target | PR-AUC model/persistence | onset
PR-AUC model/persistence | MAE model/persistence | 80% interval coverage, then the timings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    from evaluate import prepare_lake, resolve_recording

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recording", help="recording folder (raw JSON Lines or project format)")
    parser.add_argument("--shared", help="folder holding baywheels-2023-03/ (default: BIKESHARE_SHARED_DATA)")
    parser.add_argument("--cache", default="/tmp/bikeshare-bench-evaluate", help="work folder (lake, features)")
    parser.add_argument("--test-days", type=float, default=7.0, help="days at the end that are tested on")
    parser.add_argument("--fresh", action="store_true", help="backfill again even if the cache holds the lake")
    parser.add_argument("--reuse-features", action="store_true", help="use the features the cache holds")
    parser.add_argument("--max-test-rows", type=int, default=None, help="sample this many test station-slots")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--save-bundle", help="also save the trained forecast bundle to this folder")
    args = parser.parse_args()

    from bikeshare.features.build import load_features, status_span, write_features
    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings
    from bikeshare.training.forecast import train_forecast

    recording = resolve_recording(args)
    lake_root = prepare_lake(recording, Path(args.cache), fresh=args.fresh)
    work = lake_root.parent
    settings = Settings(lake_uri=str(lake_root), state_dir=work / "state", weather_enabled=False)
    lake = Lake.open(settings.lake_uri)
    build_s = None
    if not args.reuse_features:
        first, last = status_span(lake=lake, city=settings.city)
        started = time.perf_counter()
        write_features(lake=lake, start=first, end=last, settings=settings)
        build_s = time.perf_counter() - started
    frame = load_features(lake=lake, city=settings.city)
    if frame.empty:
        sys.exit(f"no features in {lake_root}: run without --reuse-features")
    test_start = (frame["slot"].max() - pd.Timedelta(days=args.test_days)).ceil(f"{settings.grid_minutes}min")
    started = time.perf_counter()
    result = train_forecast(
        frame,
        settings=settings,
        test_start=test_start,
        artifacts_dir=work / "runs" / "forecast",
        max_test_rows=args.max_test_rows,
    )
    total_s = time.perf_counter() - started
    print(
        f"recording {recording}: {len(frame):,} feature rows; test {test_start:%Y-%m-%d %H:%M} .. "
        f"{frame['slot'].max():%Y-%m-%d %H:%M} UTC; train rows {result.params['train_rows']:,} "
        f"(one horizon each), test rows {result.params['test_rows']:,} (every horizon)"
    )
    print()
    print(result.report.table())
    print()
    if build_s is not None:
        print(f"feature build: {build_s:.1f} s")
    print(
        f"forecast training: {total_s:.1f} s in all (fit of the 5 boosters {result.timings['fit_s']:.1f} s, "
        f"test scoring {result.timings['score_test_s']:.1f} s)"
    )
    if args.save_bundle:
        result.bundle.save(Path(args.save_bundle))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"report": result.report.to_dict(), "timings": result.timings, "total_s": total_s}, default=str)
        )


if __name__ == "__main__":
    main()
