"""Replay evaluation of rebalancing plans over the shared Bay Wheels recording.

Plans every ``--every-min`` minutes inside the trucks' shift over the last ``--days`` days of the
recording (the interim flow-profile forecaster learns from the weeks before each plan time), applies
each plan's routes to the recorded counts, and prints stockout station-minutes over the following
hour for no action, the greedy baseline and the OR-Tools plan.

    .venv/bin/python bench/rebalance_eval.py [--shared ../shared/data] [--days 7] [--every-min 60]
        [--regions 3] [--trucks 3] [--truck-capacity 20] [--time-limit-s 10] [--out outcomes.csv]

The shared data folder comes from ``--shared``, else BIKESHARE_SHARED_DATA, else ../shared/data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from bikeshare.gbfs.recording import Recording
from bikeshare.rebalancing.evaluation import RecordedCounts, plan_times, run_replay, summary_table
from bikeshare.rebalancing.fleet import Fleet
from bikeshare.rebalancing.plan import PlanParams
from bikeshare.settings import Settings
from shared_data import shared_recording


def load_status(recording: Recording) -> pd.DataFrame:
    return pd.concat([rows for _, rows in recording.iter_status(chunk=256)], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", help="folder holding baywheels-2023-03/ (default: BIKESHARE_SHARED_DATA)")
    parser.add_argument("--cache", type=Path, default=settings.state_dir / "bench")
    parser.add_argument("--days", type=float, default=7.0, help="evaluate the last N days of the recording")
    parser.add_argument("--every-min", type=int, default=60, help="minutes between plans")
    parser.add_argument("--regions", default="3", help="comma-separated region_ids ('' = every station)")
    parser.add_argument("--trucks", type=int, default=settings.rebalance_trucks)
    parser.add_argument("--truck-capacity", type=int, default=settings.rebalance_truck_capacity)
    parser.add_argument("--horizon-min", type=int, default=settings.rebalance_horizon_min)
    parser.add_argument("--time-limit-s", type=float, default=settings.rebalance_time_limit_s)
    parser.add_argument("--out", type=Path, help="write one row per plan to this CSV")
    args = parser.parse_args(argv)

    recording = shared_recording(args.shared, args.cache)
    timezone = recording.system_information.get("timezone") or "UTC"
    t0 = time.perf_counter()
    status = load_status(recording)
    counts = RecordedCounts.from_status(
        status, step_min=settings.grid_minutes, max_age_min=settings.max_snapshot_age_min
    )
    print(
        f"loaded {len(status):,} status rows, grid {counts.bikes.shape} in {time.perf_counter() - t0:.1f} s", flush=True
    )

    params = PlanParams.from_settings(
        settings, horizon_min=args.horizon_min, time_limit_s=args.time_limit_s, truck_capacity=args.truck_capacity
    )
    fleet = Fleet.from_settings(settings, timezone=timezone, trucks=args.trucks, capacity=args.truck_capacity)
    end = recording.end - pd.Timedelta(minutes=args.horizon_min)
    start = end - pd.Timedelta(days=args.days)
    times = plan_times(start, end, args.every_min)
    regions = [r for r in args.regions.split(",") if r]
    print(
        f"{len(times)} plan times {times[0]:%Y-%m-%d %H:%M}Z .. {times[-1]:%Y-%m-%d %H:%M}Z, "
        f"every {args.every_min} min; "
        f"shift {fleet.shift_start}-{fleet.shift_end} {timezone}; regions {regions or 'all'}; "
        f"{fleet.trucks} trucks x {fleet.capacity} bikes, start load {fleet.loads()[0]}; "
        f"horizon {args.horizon_min} min; "
        f"lambda {params.travel_cost}; time limit {params.time_limit_s} s",
        flush=True,
    )

    done = [0]

    def progress(outcome: object) -> None:
        done[0] += 1
        if done[0] % 10 == 0:
            print(f"  {done[0]} plans ({time.perf_counter() - t0:.0f} s)", flush=True)

    outcomes = run_replay(
        plan_times=times,
        snapshot_at=recording.status_at,
        information_at=recording.information_at,
        counts=counts,
        fleet=fleet,
        params=params,
        region_ids=regions,
        lookback_days=settings.rebalance_history_days,
        max_age_min=settings.max_snapshot_age_min,
        stale_report_s=settings.stale_report_s,
        progress=progress,
    )
    if args.out:
        outcomes.to_csv(args.out, index=False)
    table = summary_table(outcomes, travel_cost=params.travel_cost)
    print()
    print(f"Replay evaluation, stockout station-minutes over the hour after each plan ({len(outcomes)} plans):")
    print(table.to_string(index=False))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
