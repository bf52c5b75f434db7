"""Backfill benchmark: 4 weeks of the shared Bay Wheels recording into a fresh lake.

Each run backfills into a new temporary lake in its own process (so peak memory is that run's
own), then backfills again into the same lake to time the idempotent re-run. Prints the median,
min and max wall time, peak RSS, rows, partitions and throughput. Target: <= 120 s per backfill.

    .venv/bin/python bench/backfill.py [--shared ../shared/data | --recording PATH] [--runs 3] [--workers 4]

The shared data folder comes from ``--shared``, else BIKESHARE_SHARED_DATA, else ../shared/data;
it is converted once into the project's recording format under ``--cache``. ``--recording`` takes
an already converted recording folder instead (e.g. the shipped slice).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECORDING = "baywheels-2023-03"
TARGET_S = 120.0


def shared_recording_path(shared: str | None, cache: Path) -> Path:
    """A converted copy of the shared JSON Lines recording (converted once, then reused)."""
    from bikeshare.gbfs.recording import Recording, RecordingError, import_jsonl_recording

    root = Path(shared or os.environ.get("BIKESHARE_SHARED_DATA") or "../shared/data")
    src = root / RECORDING
    if not (src / "station_status.jsonl.gz").is_file():
        sys.exit(
            f"shared recording not found at {src}: pass --shared <folder holding {RECORDING}/>, "
            "set BIKESHARE_SHARED_DATA, or pass --recording <converted recording folder>"
        )
    dest = cache / RECORDING
    try:
        Recording.open(dest)
    except RecordingError:
        print(f"converting {src} into {dest} (once, not timed) ...", flush=True)
        import_jsonl_recording(src, dest, city="sf", overwrite=True)
    return dest


def child(recording: Path, lake_root: Path, workers: int) -> None:
    """One timed backfill (and re-run) in this process; prints a JSON line of figures."""
    from bikeshare.gbfs.recording import Recording
    from bikeshare.ingest.backfill import backfill
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import STATION_STATUS
    from bikeshare.settings import Settings

    settings = Settings(lake_uri=str(lake_root), state_dir=lake_root.parent / "state", weather_enabled=False)
    lake = Lake.open(settings.lake_uri)
    started = time.perf_counter()
    opened = Recording.open(recording)
    report = backfill(recording=opened, lake=lake, settings=settings, workers=workers)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    rerun = backfill(recording=Recording.open(recording), lake=lake, settings=settings, workers=workers)
    rerun_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": peak_mb,
                "rerun_seconds": rerun_s,
                "rerun_written": rerun.committed,
                "snapshots": report.snapshots,
                "committed": report.committed,
                "quarantined": report.quarantined,
                "rows": report.rows_written,
                "masked": report.rows_masked,
                "partitions": len(lake.partitions(STATION_STATUS, city=settings.city)),
                "information_versions": report.information_versions_written,
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", help="folder holding baywheels-2023-03/ (default: BIKESHARE_SHARED_DATA)")
    parser.add_argument("--recording", type=Path, help="a converted recording folder (instead of --shared)")
    parser.add_argument("--cache", type=Path, default=Path(".bikeshare/bench"), help="where the conversion is kept")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="threads writing partitions")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: lake root of one run
    args = parser.parse_args(argv)

    if args.child is not None:
        child(args.recording, args.child, args.workers)
        return 0
    if args.recording is not None:
        from bikeshare.gbfs.recording import Recording, RecordingError

        try:
            Recording.open(args.recording)
        except RecordingError as exc:
            sys.exit(f"--recording: {exc}")
        recording = args.recording
    else:
        recording = shared_recording_path(args.shared, args.cache)

    results = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="bench-backfill-") as folder:
            cmd = [
                sys.executable,
                __file__,
                "--recording",
                str(recording),
                "--workers",
                str(args.workers),
                "--child",
                str(Path(folder) / "lake"),
            ]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"run {run}: {result['seconds']:.1f}s, peak {result['peak_mb']:.0f} MB, "
            f"re-run {result['rerun_seconds']:.1f}s",
            flush=True,
        )

    seconds = [r["seconds"] for r in results]
    median = statistics.median(seconds)
    last = results[-1]
    print(f"\nbackfill of {recording} ({args.runs} runs, {args.workers} writer threads, {os.cpu_count()} CPUs)")
    print(f"  time        median {median:.1f}s  (min {min(seconds):.1f}s, max {max(seconds):.1f}s)")
    print(f"  target      <= {TARGET_S:.0f}s: {'met' if median <= TARGET_S else 'MISSED'} ({median / TARGET_S:.0%})")
    print(f"  peak RSS    {max(r['peak_mb'] for r in results):.0f} MB (max over runs)")
    print(f"  re-run      median {statistics.median(r['rerun_seconds'] for r in results):.1f}s, writes nothing")
    print(
        f"  data        {last['snapshots']} snapshots -> {last['partitions']} partitions, {last['rows']:,} rows "
        f"({last['masked']:,} masked), {last['quarantined']} quarantined, "
        f"{last['information_versions']} station_information versions"
    )
    print(f"  throughput  {last['rows'] / median:,.0f} rows/s, {last['snapshots'] / median:.0f} snapshots/s")
    return 0 if all(r["rerun_written"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
