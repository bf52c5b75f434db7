"""Plans in the lake: ``plans/city=<city>/dt=<plan time, minute>/plan.parquet`` (views in lake/views.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import PLANS, Grain
from bikeshare.rebalancing.plan import Plan
from bikeshare.utc import to_utc, utc_now

PLAN_FILE = "plan"


@dataclass(frozen=True)
class StoredPlan:
    """A plan read back from the lake: its summary row and its stops (both methods)."""

    dt: str
    summary: pd.Series
    stops: pd.DataFrame

    def routes(self, method: str = "optimised") -> pd.DataFrame:
        rows = self.stops[self.stops["method"] == method]
        return rows.sort_values(["truck", "stop_seq"]).reset_index(drop=True)


def plan_id_of(plan: Plan, *, city: str) -> str:
    return f"{city}-{partition_value(plan.as_of, Grain.MINUTE)}"


def plan_frame(plan: Plan, *, city: str, created_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """The plan as rows of the ``plans`` table: one summary row, then every stop."""
    created = utc_now() if created_at is None else to_utc(created_at, what="created_at")
    s = plan.summary
    common = {
        "plan_id": plan_id_of(plan, city=city),
        "as_of": plan.as_of,
        "created_at": created,
        "status": plan.status,
        "forecaster": plan.forecaster,
        "depot_lat": plan.depot[0],
        "depot_lon": plan.depot[1],
        "trucks": plan.fleet.trucks,
        "truck_capacity": plan.fleet.capacity,
        "horizon_min": plan.params.need.horizon_min,
        "time_limit_s": plan.params.time_limit_s,
        "solve_s": plan.solve_s,
        "travel_cost": plan.params.travel_cost,
        "stockout_min_no_action": s.stockout_min_no_action,
        "stockout_min_plan": s.stockout_min_plan,
        "stockout_min_greedy": s.stockout_min_greedy,
        "travel_min_plan": s.travel_min_plan,
        "travel_min_greedy": s.travel_min_greedy,
        "bikes_moved_plan": s.bikes_moved_plan,
        "bikes_moved_greedy": s.bikes_moved_greedy,
        "stations_in_need": s.stations_in_need,
    }
    summary = pd.DataFrame([{**common, "method": "summary"}])
    if plan.stops.empty:
        return summary
    stops = plan.stops.copy()
    for key, value in common.items():
        stops[key] = value
    return pd.concat([summary, stops], ignore_index=True)


def write_plan(lake: Lake, plan: Plan, *, city: str, overwrite: bool = False) -> str | None:
    """Write a plan into its partition; None when a plan for that minute exists and overwrite is off."""
    frame = plan_frame(plan, city=city)
    dt = partition_value(plan.as_of, Grain.MINUTE)
    return lake.write(PLANS, frame, city=city, dt=dt, name=PLAN_FILE, overwrite=overwrite)


def plan_exists(lake: Lake, *, city: str, as_of: pd.Timestamp) -> bool:
    """Whether a plan for the minute of ``as_of`` is stored."""
    return lake.exists(PLANS, city=city, dt=partition_value(as_of, Grain.MINUTE), name=PLAN_FILE)


def read_plan(lake: Lake, *, city: str, dt: str | None = None) -> StoredPlan | None:
    """Read one plan back (the latest when ``dt`` is None); None when there is none."""
    dts = lake.partitions(PLANS, city=city)
    if not dts:
        return None
    if dt is None:
        dt = dts[-1]
    elif dt not in dts:
        raise KeyError(f"no plan for city {city!r} at dt={dt} (plans: {dts[-3:]} ...)")
    frame = lake.read(PLANS, city=city, dts=[dt]).to_pandas()
    summary_rows = frame[frame["method"] == "summary"]
    if len(summary_rows) != 1:
        raise ValueError(f"plan {city}/{dt} has {len(summary_rows)} summary rows; expected exactly one")
    stops = frame[frame["method"] != "summary"].reset_index(drop=True)
    stops["truck"] = stops["truck"].astype(np.int64)
    stops["stop_seq"] = stops["stop_seq"].astype(np.int64)
    stops["quantity"] = stops["quantity"].astype(np.int64)
    return StoredPlan(dt=dt, summary=summary_rows.iloc[0], stops=stops)
