"""One call from the stations and their forecasts to a rebalancing plan (optimised and greedy)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from bikeshare.rebalancing.fleet import Fleet
from bikeshare.rebalancing.greedy import greedy_routes
from bikeshare.rebalancing.instance import Instance, build_instance
from bikeshare.rebalancing.need import NeedParams, compute_need
from bikeshare.rebalancing.solver import solve_routes
from bikeshare.settings import Settings
from bikeshare.utc import to_utc

STOP_COLUMNS: tuple[str, ...] = (
    "method",
    "truck",
    "stop_seq",
    "station_id",
    "name",
    "lat",
    "lon",
    "action",
    "quantity",
    "arrival",
    "departure",
    "load_after",
    "avoided_min",
)


@dataclass(frozen=True)
class PlanParams:
    """Everything a plan needs besides the fleet: need rules, objective weight, solver limit."""

    need: NeedParams = field(default_factory=NeedParams)
    travel_cost: float = 0.2
    time_limit_s: float = 10.0
    helper_neighbours: int = 4

    def __post_init__(self) -> None:
        if self.travel_cost < 0:
            raise ValueError("travel_cost must be >= 0")
        if self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        horizon_min: int | None = None,
        time_limit_s: float | None = None,
        truck_capacity: int | None = None,
    ) -> PlanParams:
        """Plan parameters from the ``rebalance_*`` settings; the keyword overrides win."""
        need = NeedParams(
            band_low=settings.rebalance_band_low,
            band_high=settings.rebalance_band_high,
            threshold=settings.shortage_threshold,
            step_min=settings.grid_minutes,
            horizon_min=horizon_min or settings.rebalance_horizon_min,
            sigma_floor=settings.rebalance_sigma_floor,
            min_move=settings.rebalance_min_move,
            max_move=truck_capacity or settings.rebalance_truck_capacity,
        )
        return cls(
            need=need,
            travel_cost=settings.rebalance_travel_cost,
            time_limit_s=time_limit_s or settings.rebalance_time_limit_s,
            helper_neighbours=settings.rebalance_helper_neighbours,
        )


@dataclass(frozen=True)
class PlanSummary:
    """Expected figures of a plan over its horizon (station-minutes, truck-minutes, bikes)."""

    stockout_min_no_action: float
    stockout_min_plan: float
    stockout_min_greedy: float
    travel_min_plan: float
    travel_min_greedy: float
    bikes_moved_plan: int
    bikes_moved_greedy: int
    stations_in_need: int
    candidates: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Plan:
    """A rebalancing plan: the optimised routes, the greedy routes, and what each is expected to save."""

    as_of: pd.Timestamp
    status: str  # solver status, "greedy_better" when greedy won on the expected objective, or "off_shift"
    solve_s: float
    stops: pd.DataFrame  # STOP_COLUMNS, method in {"optimised", "greedy"}
    need: pd.DataFrame  # compute_need() output
    summary: PlanSummary
    params: PlanParams
    fleet: Fleet
    depot: tuple[float, float]
    forecaster: str = ""
    best_found_s: float = 0.0  # seconds into the solve when the returned routes were found

    def routes(self, method: str = "optimised") -> pd.DataFrame:
        """The stops of one method, ordered by truck then stop."""
        rows = self.stops[self.stops["method"] == method]
        return rows.sort_values(["truck", "stop_seq"]).reset_index(drop=True)


def make_plan(
    stations: pd.DataFrame,
    forecast: pd.DataFrame,
    *,
    fleet: Fleet,
    params: PlanParams,
    as_of: pd.Timestamp,
    forecaster: str = "",
) -> Plan:
    """Need -> candidates -> greedy routes -> OR-Tools routes (warm-started from greedy) -> plan."""
    started = time.perf_counter()
    as_of = to_utc(as_of, what="plan time")
    need, curves = compute_need(stations, forecast, params.need)
    depot = fleet.depot_of(curves.stations) if len(curves.stations) else (0.0, 0.0)
    if fleet.depot is None and fleet.starts is None:
        fleet = replace(fleet, depot=depot)
    no_action = float(need["stockout_min_no_action"].sum())
    in_need = int((need["need"] != 0).sum())
    window = fleet.window_s(as_of, params.need.horizon_min)
    if window is None:
        summary = PlanSummary(no_action, no_action, no_action, 0.0, 0.0, 0, 0, in_need, 0)
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in STOP_COLUMNS})
        return Plan(as_of, "off_shift", 0.0, empty, need, summary, params, fleet, depot, forecaster)

    inst = build_instance(
        curves, fleet, window=window, travel_cost=params.travel_cost, helper_neighbours=params.helper_neighbours
    )
    greedy = greedy_routes(inst)
    # Keep a small reserve of the limit for re-scoring and building the stop frames after the solve.
    reserve = 0.1 + 0.03 * params.time_limit_s
    remaining = max(0.1, params.time_limit_s - reserve - (time.perf_counter() - started))
    result = solve_routes(inst, time_limit_s=remaining, initial_routes=greedy)
    routes, status = result.routes, result.status
    inst.check_routes(routes)
    if _net(inst, greedy) > _net(inst, routes) + 1e-9:
        routes, status = greedy, "greedy_better"
    plan_avoided, plan_drive = inst.objective(routes)
    greedy_avoided, greedy_drive = inst.objective(greedy)
    summary = PlanSummary(
        stockout_min_no_action=no_action,
        stockout_min_plan=no_action - plan_avoided,
        stockout_min_greedy=no_action - greedy_avoided,
        travel_min_plan=plan_drive,
        travel_min_greedy=greedy_drive,
        bikes_moved_plan=_moved(inst, routes),
        bikes_moved_greedy=_moved(inst, greedy),
        stations_in_need=in_need,
        candidates=inst.size - inst.first_candidate,
    )
    stops = pd.concat(
        [_stops_frame(inst, routes, as_of, "optimised"), _stops_frame(inst, greedy, as_of, "greedy")],
        ignore_index=True,
    )
    return Plan(
        as_of, status, result.solve_s, stops, need, summary, params, fleet, depot, forecaster, result.best_found_s
    )


def _net(inst: Instance, routes: list[list[int]]) -> float:
    avoided, drive = inst.objective(routes)
    return avoided - inst.travel_cost * drive


def _moved(inst: Instance, routes: list[list[int]]) -> int:
    return int(sum(abs(int(inst.qty[node])) for route in routes for node in route))


def _stops_frame(inst: Instance, routes: list[list[int]], as_of: pd.Timestamp, method: str) -> pd.DataFrame:
    stations = inst.curves.stations
    records = []
    for truck, route in enumerate(routes):
        for seq, stop in enumerate(inst.schedule(truck, route), start=1):
            row = stations.iloc[int(inst.row[stop.node])]
            records.append(
                {
                    "method": method,
                    "truck": truck + 1,
                    "stop_seq": seq,
                    "station_id": row["station_id"],
                    "name": row["name"],
                    "lat": float(row["lat"]),
                    "lon": float(row["lon"]),
                    "action": "unload" if stop.quantity > 0 else "load",
                    "quantity": abs(stop.quantity),
                    "arrival": as_of + pd.Timedelta(seconds=stop.arrival_s),
                    "departure": as_of + pd.Timedelta(seconds=stop.departure_s),
                    "load_after": stop.load_after,
                    "avoided_min": stop.avoided_min,
                }
            )
    if not records:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in STOP_COLUMNS})
    frame = pd.DataFrame.from_records(records, columns=list(STOP_COLUMNS))
    frame["quantity"] = frame["quantity"].astype(np.int64)
    return frame
