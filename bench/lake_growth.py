"""Growth benchmark: what the loop costs at 1 week, 1 month, 3 months and 6 months of age (issue 13).

One city's lake is grown, through the real backfill path, from time-shifted copies of the shared
4-week Bay Wheels recording (copy ``k`` moved ``k * 28`` days later, so the copies follow each
other), and the loop's own tables are filled at the runner's cadences with synthetic values in their
real shapes (see :mod:`growth_loop`). The lake is reused between ages: each age grows it from the
previous one. At each age the bench measures, in this order:

- files and bytes per table before compaction (what the growth since the previous age left), then one
  compaction run as the runner's compact job makes it (``compact_city``; folded minute files removed
  at once, ``compaction_remove_after_s=0``), then files and bytes after;
- the ingest commit of one new snapshot after the lake's end (``ingest_once`` against a
  ``ReplayServer`` on loopback);
- online features for one slot, one inference batch against the real endpoint app on loopback
  (small LightGBM models trained once on the first week's first day, registered as production), one
  monitor run (``run_monitor``, scraping that endpoint);
- the first view of each dashboard page, as ``bench/dashboard_load.py`` measures it (one run each);
- ``bikeshare sql "SELECT count(*) FROM station_status"`` and a one-day query (subprocess wall time);
- the retrain (``bikeshare pipeline`` with ``pipeline_train_days=28``) in a subprocess: wall time and
  peak RSS (``RUSAGE_CHILDREN`` of a wrapper process that runs only it).

Then prints one table and checks the goals (online paths within 20 % of the 1-week figure at the last
age; files per minute-grain table <= days + 1440; retrain peak RSS < 6 GB and retrain time flat from 1
month on), naming each stage that misses.

    nice -n 10 .venv/bin/python bench/lake_growth.py --work /tmp/growth [--ages 1w,1m,3m,6m] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import growth_loop

AGES = {"1w": 7, "1m": 30, "3m": 91, "6m": 182}
ONLINE = ("ingest commit", "online features", "inference batch", "monitor run", "dashboard first view")
TOLERANCE = 0.20
RSS_LIMIT_MB = 6 * 1024


def age_days(age: str) -> int:
    """Days of an age: 1w, 1m, 3m, 6m, or ``Nd``."""
    return AGES.get(age) or int(age.removesuffix("d"))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - started, out


def measure_age(world: growth_loop.World, age: str) -> dict[str, Any]:
    """Every figure of one age (the lake already grown to it)."""
    from bikeshare.orchestration.jobs import compact_city

    end = world.end
    row: dict[str, Any] = {"age": age, "days": world.days, "end": end.isoformat()}
    row["before"] = growth_loop.disk_usage(world.lake_root)
    log(f"{age}: compacting (as the compact job at {end:%Y-%m-%d %H:%M}Z)")
    seconds, reports = timed(compact_city, settings=world.settings, lake=world.lake, now=end)
    row["compact_s"] = seconds
    row["compacted_days"] = sum(r.days_compacted for r in reports)
    row["after"] = growth_loop.disk_usage(world.lake_root)
    log(f"{age}: compaction {seconds:.1f}s, {row['compacted_days']} table-days")

    stages: dict[str, float] = {}
    stages["ingest commit"], outcome = world.ingest_next_snapshot()  # ingest_once alone
    row["ingest_outcome"] = str(outcome)
    # the first grid slot at or after the snapshot just ingested: the slot the loop scores next
    now = world.end.ceil(f"{world.settings.grid_minutes}min")
    stages["online features"], features = timed(world.online_features, now)
    row["feature_rows"] = len(features)
    stages["inference batch"], record = timed(world.inference_batch, now)
    row["batch_status"] = f"{record.status} ({record.rows} rows)"
    stages["monitor run"], result = timed(world.monitor_run, now)
    row["monitor_status"] = result.status
    log(f"{age}: online paths {', '.join(f'{k} {v:.2f}s' for k, v in stages.items())}")
    pages = world.dashboard_first_views()
    stages["dashboard first view"] = max(pages.values())
    row["pages"] = pages
    stages["sql count(*)"] = world.sql("SELECT count(*) FROM station_status")
    day = (now - pd.Timedelta(days=1)).floor("D")
    stages["sql one day"] = world.sql(
        "SELECT station_id, avg(bikes) AS bikes FROM station_status "
        f"WHERE last_updated >= TIMESTAMPTZ '{day.isoformat()}' "
        f"AND last_updated < TIMESTAMPTZ '{(day + pd.Timedelta(days=1)).isoformat()}' GROUP BY station_id"
    )
    log(f"{age}: dashboard {pages}; sql {stages['sql count(*)']:.2f}s / {stages['sql one day']:.2f}s; retraining")
    retrain = world.retrain(now)
    stages["retrain"] = retrain["seconds"]
    row["retrain_rss_mb"] = retrain["peak_mb"]
    row["retrain_exit"] = retrain["exit"]
    row["stages"] = stages
    log(f"{age}: retrain {retrain['seconds']:.1f}s, peak {retrain['peak_mb']:.0f} MB, exit {retrain['exit']}")
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    """The one table: files/bytes per table before and after compaction, then the stage timings."""
    ages = [r["age"] for r in rows]
    width = 14
    head = f"{'':<34}" + "".join(
        f"{a + ' (' + str(r['days']) + ' d)':>{width * 2}}" for a, r in zip(ages, rows, strict=True)
    )
    print("\n" + head)
    print(
        f"{'files (before -> after compaction)':<34}" + "".join(f"{'before':>{width}}{'after':>{width}}" for _ in rows)
    )
    tables = sorted({t for r in rows for t in (*r["before"], *r["after"])})
    for table in tables:
        cells = ""
        for r in rows:
            b, a = r["before"].get(table, (0, 0)), r["after"].get(table, (0, 0))
            cells += f"{b[0]:>{width},}{a[0]:>{width},}"
        print(f"  {table:<32}{cells}")
    total = ""
    for r in rows:
        b = sum(v[1] for v in r["before"].values())
        a = sum(v[1] for v in r["after"].values())
        total += f"{b / 2**20:>{width - 3},.0f} MB{a / 2**20:>{width - 3},.0f} MB"
    print(f"  {'bytes on disk (all tables)':<32}{total}")
    print(f"  {'compaction run (s)':<32}" + "".join(f"{'':>{width}}{r['compact_s']:>{width}.1f}" for r in rows))
    print(f"{'seconds':<34}" + "".join(f"{'':>{width}}{'':>{width}}" for _ in rows))
    for stage in rows[0]["stages"]:
        print(f"  {stage:<32}" + "".join(f"{'':>{width}}{r['stages'][stage]:>{width}.3f}" for r in rows))
    print(
        f"  {'retrain peak RSS (MB)':<32}" + "".join(f"{'':>{width}}{r['retrain_rss_mb']:>{width},.0f}" for r in rows)
    )
    for r in rows:
        pages = ", ".join(f"{p.removesuffix('.py')} {s:.2f}s" for p, s in r["pages"].items())
        print(
            f"  {r['age']}: ingest {r['ingest_outcome']}; {r['feature_rows']} feature rows; batch {r['batch_status']}; "
            f"monitor {r['monitor_status']}; retrain exit {r['retrain_exit']}; pages {pages}"
        )


def check_goals(rows: list[dict[str, Any]]) -> list[str]:
    """One line per goal (met or MISSED, with the stage and its figure)."""
    lines = []
    first, last = rows[0], rows[-1]
    for stage in ONLINE:
        base, now = first["stages"][stage], last["stages"][stage]
        ratio = now / base if base else float("inf")
        verdict = "met" if ratio <= 1 + TOLERANCE else "MISSED"
        figures = f"{now:.3f}s at {last['age']} vs {base:.3f}s at {first['age']} ({ratio:.0%})"
        lines.append(f"{verdict:<6} online path {stage}: {figures}")
    for r in rows:
        limit = r["days"] + 1440
        for table in growth_loop.MINUTE_TABLE_NAMES:
            files = r["after"].get(table, (0, 0))[0]
            if files > limit:
                lines.append(f"MISSED files {table} at {r['age']}: {files:,} > days + 1440 = {limit:,}")
    worst = max(growth_loop.MINUTE_TABLE_NAMES, key=lambda t: last["after"].get(t, (0, 0))[0])
    within = all(r["after"].get(t, (0, 0))[0] <= r["days"] + 1440 for r in rows for t in growth_loop.MINUTE_TABLE_NAMES)
    lines.append(
        f"{'met' if within else 'MISSED':<6} "
        f"files per minute-grain table <= days + 1440 (most at {last['age']}: {worst} "
        f"{last['after'].get(worst, (0, 0))[0]:,} <= {last['days'] + 1440:,})"
    )
    peak = max(r["retrain_rss_mb"] for r in rows)
    lines.append(
        f"{'met' if peak < RSS_LIMIT_MB else 'MISSED':<6} retrain peak RSS {peak:,.0f} MB < {RSS_LIMIT_MB:,} MB"
    )
    monthly = [r for r in rows if r["days"] >= 30]
    if len(monthly) >= 2:
        base, now = monthly[0]["stages"]["retrain"], monthly[-1]["stages"]["retrain"]
        verdict = "met" if now <= base * (1 + TOLERANCE) else "MISSED"
        lines.append(
            f"{verdict:<6} retrain time flat from 1 month: {now:.1f}s at {monthly[-1]['age']} vs {base:.1f}s at "
            f"{monthly[0]['age']} ({now / base:.0%})"
        )
    else:
        lines.append("n/a    retrain time flat from 1 month: needs two ages of 1 month or more")
    if len(rows) < 2 or last["days"] < AGES["6m"]:
        lines.append(f"note   the online-path goal is for 6 months; this run stopped at {last['age']}")
    return lines


def rss_child(command: list[str]) -> int:
    """Run ``command`` and print its wall time and peak RSS (this wrapper has no other child)."""
    started = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    tail = (done.stdout + done.stderr)[-2000:]
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "exit": done.returncode, "tail": tail}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lake-growth"), help="lake, state and recordings")
    parser.add_argument("--ages", default=",".join(AGES), help="comma-separated, of " + ", ".join(AGES))
    parser.add_argument("--shared", type=Path, default=None, help="folder holding baywheels-2023-03/")
    parser.add_argument("--rss-child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child)
    ages = [a.strip() for a in args.ages.split(",") if a.strip()]
    unknown = [a for a in ages if a not in AGES and not (a.endswith("d") and a[:-1].isdigit())]
    if unknown:
        parser.error(f"unknown age(s) {unknown}: expected some of {', '.join(AGES)} (or N d, e.g. 2d)")
    ages.sort(key=age_days)
    shared = args.shared or Path(os.environ.get("BIKESHARE_SHARED_DATA") or "../shared/data")
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with growth_loop.World.open(args.work, shared, bench=Path(__file__).resolve()) as world:
        for age in ages:
            started = time.perf_counter()
            world.grow_to(age_days(age), say=log)
            log(f"{age}: lake grown to {world.days} days in {time.perf_counter() - started:.0f}s")
            rows.append(measure_age(world, age))
            (args.work / "figures.json").write_text(json.dumps(rows, indent=1, default=str))
            print_table(rows)
            for line in check_goals(rows):
                print(f"  {line}")
    print(f"\nlake growth bench, one city (sf), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print_table(rows)
    print("\ngoals")
    for line in check_goals(rows):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
