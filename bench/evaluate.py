"""Model against persistence on one or more recordings: side-by-side PR-AUC tables, train vs one fit, peak RSS.

    .venv/bin/python bench/evaluate.py [--recording DIR[:TZ]]... [--timezone TZ]... [--days N]
        [--shared DIR] [--cache DIR] [--algo lightgbm]

``--recording`` (repeatable) is a recording folder, either raw GBFS JSON Lines (``station_status.jsonl.gz``
..., like ``../shared/data/baywheels-2023-03``) or one in the project's format, optionally followed by
``:`` and its IANA time zone (or give ``--timezone`` once per recording, in order): a feed without
system_information (Oslo) takes its zone from there. Without it the shared Bay Wheels recording is
used: ``--shared``, else BIKESHARE_SHARED_DATA, else ../shared/data.
Each recording is converted and backfilled once into ``--cache`` (not timed); then the features of
every day are built (timed) and one model per target is trained (timed) on all but the last
``--test-days`` days (of the last ``--days``, default all) and tested on them, with persistence
scored on the same test rows. Beside each training time: one plain fit (``fit_model``, the same
parameters, the training rows) and the peak RSS of each (VmHWM, reset before each), with the load.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SHARED_RECORDING = "baywheels-2023-03"
# The reference run of issue 3 on the shared recording (first 3 weeks -> last week).
REFERENCE = {
    "bikes": {"persistence": 0.955, "model": 0.983, "onset_persistence": 0.069, "onset_model": 0.188},
    "docks": {"persistence": 0.945, "model": 0.980, "onset_persistence": 0.060, "onset_model": 0.194},
}


@dataclass(frozen=True)
class Source:
    """One recording to evaluate: its folder, time zone (None: from system_information) and city key."""

    path: Path
    timezone: str | None
    city: str


def city_of(path: Path) -> str:
    """City key of a recording folder (``baywheels-2023-03`` -> sf, ``oslo-2023-06`` -> oslo)."""
    prefix = path.name.split("-")[0].lower()
    return {"baywheels": "sf"}.get(prefix, prefix)


def resolve_sources(args: argparse.Namespace) -> list[Source]:
    specs = args.recording or []
    if not specs:
        root = Path(args.shared or os.environ.get("BIKESHARE_SHARED_DATA") or "../shared/data")
        specs = [str(root / SHARED_RECORDING)]
    zones = list(args.timezone or [])
    if len(zones) > len(specs):
        sys.exit("more --timezone than --recording")
    sources = []
    for i, spec in enumerate(specs):
        head, colon, tail = spec.rpartition(":")
        text, zone = (head, tail) if colon and "/" in tail else (spec, "")
        zone = zone or (zones[i] if i < len(zones) else "") or None
        path = Path(text)
        if not path.is_dir():
            sys.exit(
                f"recording not found at {path}: pass --recording DIR, or --shared / BIKESHARE_SHARED_DATA "
                f"naming the folder that holds {SHARED_RECORDING}/"
            )
        sources.append(Source(path=path, timezone=zone, city=city_of(path)))
    return sources


def prepare_lake(source: Source, cache: Path, *, fresh: bool) -> Path:
    """Convert (raw JSON Lines) and backfill the recording into ``cache/<name>/lake`` once."""
    from bikeshare.gbfs.recording import Recording, RecordingError, import_jsonl_recording
    from bikeshare.ingest.backfill import backfill
    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings

    recording = source.path
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
            rec = import_jsonl_recording(
                recording, converted, city=source.city, overwrite=True, timezone=source.timezone
            )
    else:
        rec = Recording.open(recording)
    print(f"backfilling {rec.path} -> {lake_root} (once, not timed) ...", flush=True)
    if lake_root.exists():
        import shutil

        shutil.rmtree(lake_root)
    settings = Settings(city=source.city, lake_uri=str(lake_root), state_dir=work / "state", weather_enabled=False)
    report = backfill(recording=rec, lake=Lake.open(settings.lake_uri), settings=settings)
    done.write_text(json.dumps({"snapshots": report.snapshots, "rows": report.rows_written}))
    return lake_root


def reset_peak_rss() -> None:
    """Reset the process's peak RSS (VmHWM) so the next reading covers only what follows (Linux)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident set (VmHWM) since the last reset, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def plain_fit(frame: pd.DataFrame, *, target: str, settings, algo: str, test_start: pd.Timestamp) -> float:
    """Seconds of one plain ``fit_model`` on the training rows of ``train_model``'s split (same parameters)."""
    from bikeshare.features.schema import FEATURE_COLUMNS, feature_matrix
    from bikeshare.training.evaluate import label_column, labelled_rows
    from bikeshare.training.models import fit_model
    from bikeshare.training.split import plan_split, split_frame

    rows = labelled_rows(frame, target)
    split = plan_split(rows["slot"], settings=settings, test_start=test_start)
    train, _, _ = split_frame(rows, split)
    names = tuple(FEATURE_COLUMNS)
    x = feature_matrix(train, names)
    y = train[label_column(target)].to_numpy(dtype=bool)
    del rows, train
    started = time.perf_counter()
    fit_model(x, y, feature_names=names, settings=settings, algo=algo)
    return time.perf_counter() - started


def evaluate_city(source: Source, args: argparse.Namespace) -> dict[str, object]:
    """Build, train and test one recording; print its table; return its figures."""
    from bikeshare.features.build import load_features, online_features, status_span, write_features
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import FEATURES
    from bikeshare.settings import Settings
    from bikeshare.training.train import train_model

    recording = source.path
    lake_root = prepare_lake(source, Path(args.cache), fresh=args.fresh)
    work = lake_root.parent
    settings = Settings(
        city=source.city,
        lake_uri=str(lake_root),
        state_dir=work / "state",
        weather_enabled=False,
        features_skip_masked=not args.keep_masked,
    )
    lake = Lake.open(settings.lake_uri)
    first, last = status_span(lake=lake, city=settings.city)
    if args.days:
        first = max(first, last - pd.Timedelta(days=args.days + 1))
    span_days = (last - first).total_seconds() / 86400

    started = time.perf_counter()
    if args.reuse_features and lake.partitions(FEATURES, city=settings.city):
        written = [dt for dt in lake.partitions(FEATURES, city=settings.city) if dt >= f"{first:%Y-%m-%d}"]
    else:
        written = write_features(lake=lake, start=first, end=last, settings=settings)
    build_s = time.perf_counter() - started
    start = last - pd.Timedelta(days=args.days) if args.days else None
    frame = load_features(lake=lake, city=settings.city, start=start)
    print(f"{source.city}: features {len(written)} days, {len(frame):,} rows, built in {build_s:.1f} s", flush=True)

    slot = frame["slot"].max()
    online_times = []
    for _ in range(args.online_runs):
        t0 = time.perf_counter()
        rows = online_features(lake=lake, at=slot, settings=settings)
        online_times.append(time.perf_counter() - t0)
    online_s = statistics.median(online_times)

    test_start = (slot - pd.Timedelta(days=args.test_days)).ceil(f"{settings.grid_minutes}min")
    results = {}
    for target in ("bikes", "docks"):
        gc.collect()
        reset_peak_rss()
        load_before = load()
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
        train_rss = peak_rss_mb()
        gc.collect()
        reset_peak_rss()
        fit_s = plain_fit(frame, target=target, settings=settings, algo=args.algo, test_start=test_start)
        fit_rss = peak_rss_mb()
        timing = {
            "train_s": train_s,
            "plain_fit_s": fit_s,
            "ratio": train_s / fit_s,
            "train_peak_rss_mb": train_rss,
            "plain_fit_peak_rss_mb": fit_rss,
            "load_before": load_before,
            "load_after": load(),
            **result.timings,
        }
        results[target] = (result, timing)
        print(
            f"{source.city} {target}: trained and evaluated in {train_s:.1f} s (peak RSS {train_rss:.0f} MB); "
            f"one plain fit {fit_s:.1f} s (peak RSS {fit_rss:.0f} MB): {train_s / fit_s:.2f}x; "
            f"load {load_before} -> {timing['load_after']}; stages "
            + ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in result.timings.items()),
            flush=True,
        )

    print()
    print(
        f"{source.city}: recording {recording} ({span_days:.1f} days, tz {source.timezone or 'recorded'}); "
        f"test {test_start:%Y-%m-%d %H:%M} .. {slot:%Y-%m-%d %H:%M} UTC"
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
        "city": source.city,
        "timezone": source.timezone,
        "span_days": span_days,
        "test_start": test_start.isoformat(),
        "feature_rows": len(frame),
        "feature_build_s": build_s,
        "online_features_s": online_s,
        "online_rows": len(rows),
        "algo": args.algo,
        "keep_masked": args.keep_masked,
    }
    for target, (result, timing) in results.items():
        s = result.report.slices
        onset_prev = s["onsets"].model.positives / max(s["onsets"].model.rows, 1)
        print(
            f"| {target} | {s['all'].baseline.pr_auc:.3f} | {s['all'].model.pr_auc:.3f} "
            f"| {s['onsets'].baseline.pr_auc:.3f} | {s['onsets'].model.pr_auc:.3f} | {onset_prev:.2%} "
            f"| {s['recoveries'].baseline.pr_auc:.3f} | {s['recoveries'].model.pr_auc:.3f} "
            f"| {s['all'].model.f1:.3f} | {s['all'].baseline.f1:.3f} | {s['all'].model.brier:.4f} "
            f"| {result.report.overfit_gap:.3f} |"
        )
        figures[target] = {
            **result.report.flat_metrics(),
            **timing,
            "onset_pr_auc": s["onsets"].model.pr_auc,
            "pr_auc": s["all"].model.pr_auc,
            "brier": s["all"].model.brier,
            "train_rows": result.params.get("train_rows"),
            "num_boost_round": result.params.get("num_boost_round"),
        }
    if recording.name == SHARED_RECORDING and not args.days:
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
    print(f"feature build ({len(written)} days, {len(frame):,} rows): {build_s:.1f} s")
    print(
        f"online features for one slot ({len(rows)} stations, median of {args.online_runs}): {online_s * 1000:.0f} ms"
    )
    print(flush=True)
    return figures


ROWS = (
    ("model PR-AUC", "pr_auc", "{:.3f}"),
    ("onset PR-AUC", "onset_pr_auc", "{:.3f}"),
    ("Brier", "brier", "{:.4f}"),
    ("train rows", "train_rows", "{:,}"),
    ("boosting rounds", "num_boost_round", "{}"),
    ("training s", "train_s", "{:.1f}"),
    ("one plain fit s", "plain_fit_s", "{:.1f}"),
    ("training / one fit", "ratio", "{:.2f}x"),
    ("peak RSS training MB", "train_peak_rss_mb", "{:.0f}"),
    ("peak RSS one fit MB", "plain_fit_peak_rss_mb", "{:.0f}"),
    ("load before -> after", "load", "{}"),
)


def print_side_by_side(cities: list[dict[str, object]]) -> None:
    """One column per city and target."""
    cols = [(c["city"], t, c[t]) for c in cities for t in ("bikes", "docks")]
    print("| figure | " + " | ".join(f"{city} {t}" for city, t, _ in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for label, key, fmt in ROWS:
        cells = []
        for _, _, fig in cols:
            value = f"{fig['load_before']} -> {fig['load_after']}" if key == "load" else fig.get(key)
            cells.append("-" if value is None else fmt.format(value))
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recording", action="append", help="recording folder[:TZ] (repeatable)")
    parser.add_argument("--timezone", action="append", help="IANA time zone of the n-th --recording (repeatable)")
    parser.add_argument("--shared", help="folder holding baywheels-2023-03/ (default: BIKESHARE_SHARED_DATA)")
    parser.add_argument("--cache", default="/tmp/bikeshare-bench-evaluate", help="work folder (lake, features)")
    parser.add_argument("--algo", default="lightgbm", choices=("lightgbm", "xgboost"))
    parser.add_argument("--days", type=float, help="use only the last DAYS days of features (default: all)")
    parser.add_argument("--test-days", type=float, default=7.0, help="days at the end that are tested on")
    parser.add_argument(
        "--reuse-features", action="store_true", help="use the features a previous run stored (build not timed)"
    )
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

    print(f"uptime at start: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    cities = [evaluate_city(source, args) for source in resolve_sources(args)]
    print_side_by_side(cities)
    print(f"uptime at end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.json:
        Path(args.json).write_text(json.dumps(cities, indent=2, default=str))


if __name__ == "__main__":
    main()
