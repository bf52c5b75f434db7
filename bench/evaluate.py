"""Model against persistence on a recording: the side-by-side PR-AUC table, plus build and train times.

    .venv/bin/python bench/evaluate.py [--recording DIR] [--shared DIR] [--cache DIR] [--algo lightgbm]

``--recording`` is a recording folder, either raw GBFS JSON Lines (``station_status.jsonl.gz`` ...,
like ``../shared/data/baywheels-2023-03``) or one in the project's format. Without it the shared
Bay Wheels recording is used: ``--shared``, else BIKESHARE_SHARED_DATA, else ../shared/data.
The recording is converted and backfilled once into ``--cache`` (not timed); then the features of
every day are built (timed) and one model per target is trained (timed) on all but the last
``--test-days`` days and tested on them, with persistence scored on the same test rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

SHARED_RECORDING = "baywheels-2023-03"
# The reference run of issue 3 on the shared recording (first 3 weeks -> last week).
REFERENCE = {
    "bikes": {"persistence": 0.955, "model": 0.983, "onset_persistence": 0.069, "onset_model": 0.188},
    "docks": {"persistence": 0.945, "model": 0.980, "onset_persistence": 0.060, "onset_model": 0.194},
}


def resolve_recording(args: argparse.Namespace) -> Path:
    if args.recording:
        path = Path(args.recording)
    else:
        root = Path(args.shared or os.environ.get("BIKESHARE_SHARED_DATA") or "../shared/data")
        path = root / SHARED_RECORDING
    if not path.is_dir():
        sys.exit(
            f"recording not found at {path}: pass --recording DIR, or --shared / BIKESHARE_SHARED_DATA "
            f"naming the folder that holds {SHARED_RECORDING}/"
        )
    return path


def prepare_lake(recording: Path, cache: Path, *, fresh: bool) -> Path:
    """Convert (raw JSON Lines) and backfill the recording into ``cache/<name>/lake`` once."""
    from bikeshare.gbfs.recording import Recording, RecordingError, import_jsonl_recording
    from bikeshare.ingest.backfill import backfill
    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings

    work = cache / recording.name
    lake_root = work / "lake"
    done = work / "backfilled.json"
    if done.is_file() and not fresh:
        return lake_root
    if (recording / "station_status.jsonl.gz").is_file():
        converted = work / "recording"
        try:
            rec = Recording.open(converted)
        except RecordingError:
            print(f"converting {recording} -> {converted} (once, not timed) ...", flush=True)
            rec = import_jsonl_recording(recording, converted, city="sf", overwrite=True)
    else:
        rec = Recording.open(recording)
    print(f"backfilling {rec.path} -> {lake_root} (once, not timed) ...", flush=True)
    if lake_root.exists():
        import shutil

        shutil.rmtree(lake_root)
    settings = Settings(lake_uri=str(lake_root), state_dir=work / "state", weather_enabled=False)
    report = backfill(recording=rec, lake=Lake.open(settings.lake_uri), settings=settings)
    done.write_text(json.dumps({"snapshots": report.snapshots, "rows": report.rows_written}))
    return lake_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recording", help="recording folder (raw JSON Lines or project format)")
    parser.add_argument("--shared", help="folder holding baywheels-2023-03/ (default: BIKESHARE_SHARED_DATA)")
    parser.add_argument("--cache", default="/tmp/bikeshare-bench-evaluate", help="work folder (lake, features)")
    parser.add_argument("--algo", default="lightgbm", choices=("lightgbm", "xgboost"))
    parser.add_argument("--test-days", type=float, default=7.0, help="days at the end that are tested on")
    parser.add_argument("--fresh", action="store_true", help="backfill again even if the cache holds the lake")
    parser.add_argument(
        "--keep-masked",
        action="store_true",
        help="keep the rows the data contract masked (stale, not renting, ...): the row set of the "
        "reference run, for an apples-to-apples comparison; the system itself skips them",
    )
    parser.add_argument("--online-runs", type=int, default=7, help="timed online feature builds (median)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    from bikeshare.features.build import load_features, online_features, status_span, write_features
    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings
    from bikeshare.training.train import train_model

    recording = resolve_recording(args)
    cache = Path(args.cache)
    lake_root = prepare_lake(recording, cache, fresh=args.fresh)
    work = lake_root.parent
    settings = Settings(
        lake_uri=str(lake_root),
        state_dir=work / "state",
        weather_enabled=False,
        features_skip_masked=not args.keep_masked,
    )
    lake = Lake.open(settings.lake_uri)
    first, last = status_span(lake=lake, city=settings.city)
    span_days = (last - first).total_seconds() / 86400

    started = time.perf_counter()
    written = write_features(lake=lake, start=first, end=last, settings=settings)
    build_s = time.perf_counter() - started
    frame = load_features(lake=lake, city=settings.city)
    print(f"features: {len(written)} days, {len(frame):,} rows, built in {build_s:.1f} s", flush=True)

    slot = frame["slot"].max()
    online_times = []
    for _ in range(args.online_runs):
        t0 = time.perf_counter()
        rows = online_features(lake=lake, at=slot, settings=settings)
        online_times.append(time.perf_counter() - t0)
    online_s = statistics.median(online_times)

    test_start = (frame["slot"].max() - pd.Timedelta(days=args.test_days)).ceil(f"{settings.grid_minutes}min")
    results = {}
    for target in ("bikes", "docks"):
        t0 = time.perf_counter()
        result = train_model(
            frame,
            target=target,
            settings=settings,
            algo=args.algo,
            test_start=test_start,
            artifacts_dir=work / "runs" / f"{target}-{args.algo}",
        )
        train_s = time.perf_counter() - t0
        results[target] = (result, train_s)
        print(f"{target}: trained and evaluated in {train_s:.1f} s (fit {result.timings['fit_s']:.1f} s)", flush=True)

    print()
    print(
        f"recording {recording} ({span_days:.1f} days); test {test_start:%Y-%m-%d %H:%M} .. {slot:%Y-%m-%d %H:%M} UTC"
    )
    header = (
        "| target | persistence PR-AUC | model PR-AUC | onset PR-AUC, persistence | onset PR-AUC, model "
        "| onset prevalence | recovery PR-AUC, persistence | recovery PR-AUC, model | model F1 | persistence F1 "
        "| Brier | train-val gap |"
    )
    print(header)
    print("|---" * 12 + "|")
    figures: dict[str, object] = {
        "recording": str(recording),
        "span_days": span_days,
        "test_start": test_start.isoformat(),
        "feature_rows": len(frame),
        "feature_build_s": build_s,
        "online_features_s": online_s,
        "online_rows": len(rows),
        "algo": args.algo,
        "keep_masked": args.keep_masked,
    }
    for target, (result, train_s) in results.items():
        s = result.report.slices
        onset_prev = s["onsets"].model.positives / max(s["onsets"].model.rows, 1)
        print(
            f"| {target} | {s['all'].baseline.pr_auc:.3f} | {s['all'].model.pr_auc:.3f} "
            f"| {s['onsets'].baseline.pr_auc:.3f} | {s['onsets'].model.pr_auc:.3f} | {onset_prev:.2%} "
            f"| {s['recoveries'].baseline.pr_auc:.3f} | {s['recoveries'].model.pr_auc:.3f} "
            f"| {s['all'].model.f1:.3f} | {s['all'].baseline.f1:.3f} | {s['all'].model.brier:.4f} "
            f"| {result.report.overfit_gap:.3f} |"
        )
        figures[target] = {**result.report.flat_metrics(), "train_s": train_s, "fit_s": result.timings["fit_s"]}
    if recording.name == SHARED_RECORDING:
        print()
        print(
            "reference (issue 3): "
            + "; ".join(f"{t} {r['model']:.3f} / onset {r['onset_model']:.3f}" for t, r in REFERENCE.items())
        )
        for target, (result, _) in results.items():
            s = result.report.slices
            ok = s["all"].model.pr_auc > REFERENCE[target]["model"] and (
                s["onsets"].model.pr_auc > REFERENCE[target]["onset_model"]
            )
            print(f"  {target}: beats the reference on overall and onset PR-AUC: {'yes' if ok else 'NO'}")
    print()
    print(f"feature build ({len(written)} days, {len(frame):,} rows): {build_s:.1f} s")
    print(
        "training (fit + calibration + evaluation + artifacts): "
        + ", ".join(f"{t} {ts:.1f} s" for t, (_, ts) in results.items())
    )
    print(
        f"online features for one slot ({len(rows)} stations, median of {args.online_runs}): {online_s * 1000:.0f} ms"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
