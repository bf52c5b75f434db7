"""Solve-time benchmark: a plan for every station of Bay Wheels (~500) with 5 trucks, at real snapshots.

Each run is one full ``make_plan`` (need, candidates, greedy, OR-Tools, exact re-scoring) at a plan
time spread over the last week of the shared recording; prints every run and the median.

    .venv/bin/python bench/rebalance_solve.py [--shared ../shared/data] [--runs 7] [--trucks 5]
        [--time-limit-s 30] [--no-stall]

The shared data folder comes from ``--shared``, else BIKESHARE_SHARED_DATA, else ../shared/data.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd

from bikeshare.rebalancing import solver
from bikeshare.rebalancing.evaluation import RecordedCounts, plan_times, stations_from_snapshot
from bikeshare.rebalancing.fleet import Fleet
from bikeshare.rebalancing.forecast import FlowProfileForecaster
from bikeshare.rebalancing.plan import PlanParams, make_plan
from bikeshare.settings import Settings
from rebalance_eval import load_status
from shared_data import shared_recording


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", help="folder holding baywheels-2023-03/ (default: BIKESHARE_SHARED_DATA)")
    parser.add_argument("--cache", type=Path, default=settings.state_dir / "bench")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--trucks", type=int, default=5)
    parser.add_argument("--truck-capacity", type=int, default=settings.rebalance_truck_capacity)
    parser.add_argument("--time-limit-s", type=float, default=30.0)
    parser.add_argument("--no-stall", action="store_true", help="run every solve to its time limit")
    args = parser.parse_args(argv)

    recording = shared_recording(args.shared, args.cache)
    timezone = recording.system_information.get("timezone") or "UTC"
    counts = RecordedCounts.from_status(
        load_status(recording), step_min=settings.grid_minutes, max_age_min=settings.max_snapshot_age_min
    )
    forecaster = FlowProfileForecaster(
        counts.bikes, timezone=timezone, step_min=settings.grid_minutes, lookback_days=settings.rebalance_history_days
    )
    params = PlanParams.from_settings(settings, time_limit_s=args.time_limit_s, truck_capacity=args.truck_capacity)
    fleet = Fleet.from_settings(settings, timezone=timezone, trucks=args.trucks, capacity=args.truck_capacity)
    if args.no_stall:
        solver.STALL_SHARE = 10.0
        solver.IMPROVEMENT_RATE = 1e9
    end = recording.end - pd.Timedelta(minutes=params.need.horizon_min)
    candidates = [t for t in plan_times(end - pd.Timedelta(days=7), end, 60) if fleet.window_s(t, 60) == (0, 3600)]
    # Spread over the week and the hours of the shift: every k-th hour, k prime to the 16 shift hours.
    stride = max(1, len(candidates) // args.runs) | 1
    times = candidates[::stride]
    horizons = list(range(settings.grid_minutes, params.need.horizon_min + 1, settings.grid_minutes))

    print(
        f"{args.runs} runs, {fleet.trucks} trucks x {fleet.capacity}, every station (no region filter), "
        f"time limit {args.time_limit_s} s{' (no early stop)' if args.no_stall else ''}"
    )
    print(f"{'plan time (UTC)':<17} {'stations':>8} {'cands':>6} {'wall s':>7} {'solve s':>7} {'best at':>7}  status")
    walls, solves, gains = [], [], []
    for as_of in times:
        if len(walls) == args.runs:
            break
        stations = stations_from_snapshot(
            recording.status_at(as_of),
            recording.information_at(as_of),
            as_of=as_of,
            max_age_min=settings.max_snapshot_age_min,
            stale_report_s=settings.stale_report_s,
        )
        if stations.empty:  # a gap in the recording: no fresh snapshot at this time
            continue
        forecast = forecaster.forecast(stations, as_of=as_of, horizons_min=horizons)
        started = time.perf_counter()
        plan = make_plan(stations, forecast, fleet=fleet, params=params, as_of=as_of)
        wall = time.perf_counter() - started
        s = plan.summary
        walls.append(wall)
        solves.append(plan.solve_s)
        gains.append(s.stockout_min_greedy - s.stockout_min_plan)
        print(
            f"{as_of:%Y-%m-%d %H:%M} {len(stations):>8} {s.candidates:>6} {wall:>7.2f} {plan.solve_s:>7.2f} "
            f"{plan.best_found_s:>7.2f}  {plan.status}"
        )
    print(
        f"median wall {statistics.median(walls):.2f} s (max {max(walls):.2f}), median solve "
        f"{statistics.median(solves):.2f} s; expected stockout minutes saved beyond greedy per plan: "
        f"median {statistics.median(gains):.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
