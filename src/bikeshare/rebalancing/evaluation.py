"""Replay evaluation: plan at recorded times, apply each plan to the recorded counts, compare.

For every plan time the planner sees only the snapshot in force then and counts before it (the
interim forecaster's history is cut at the plan time). Each plan is judged on its own: trucks start
at their start positions with their start loads, the bikes they move change the recorded counts from
their arrival on (see :mod:`~bikeshare.rebalancing.replay`), and stockout station-minutes over the
plan's horizon are counted for no action, the greedy routes and the optimised routes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from bikeshare.rebalancing.fleet import Fleet
from bikeshare.rebalancing.forecast import FlowProfileForecaster, history_grid
from bikeshare.rebalancing.plan import Plan, PlanParams, make_plan
from bikeshare.rebalancing.replay import replay_plan, stockout_minutes


@dataclass(frozen=True)
class RecordedCounts:
    """Recorded bikes and usable slots (bikes + docks) per station on a regular UTC grid."""

    bikes: pd.DataFrame  # index: slot, columns: station_id
    slots: pd.DataFrame
    step_min: int

    @classmethod
    def from_status(cls, status: pd.DataFrame, *, step_min: int, max_age_min: int) -> RecordedCounts:
        """Grids from status rows (station_id, last_updated, bikes, docks) of the whole recording."""
        rows = status.dropna(subset=["station_id", "last_updated", "bikes", "docks"])
        start, end = rows["last_updated"].min(), rows["last_updated"].max()
        bikes = history_grid(rows, start=start, end=end, step_min=step_min, max_age_min=max_age_min)
        total = rows.assign(bikes=rows["bikes"].astype("float64") + rows["docks"].astype("float64"))
        slots = history_grid(total, start=start, end=end, step_min=step_min, max_age_min=max_age_min)
        return cls(bikes=bikes, slots=slots.reindex(index=bikes.index, columns=bikes.columns), step_min=step_min)

    def window(self, station_ids: list[str], as_of: pd.Timestamp, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """(stations, samples+1) bikes and slots at ``as_of + k * step`` (NaN where not recorded)."""
        times = pd.DatetimeIndex([as_of + pd.Timedelta(minutes=k * self.step_min) for k in range(samples + 1)])
        bikes = self.bikes.reindex(index=times, columns=station_ids).to_numpy(dtype="float64").T
        slots = self.slots.reindex(index=times, columns=station_ids).to_numpy(dtype="float64").T
        return bikes, slots


def stations_from_snapshot(
    snapshot: pd.DataFrame,
    information: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    max_age_min: float,
    stale_report_s: float,
    region_ids: Iterable[str] = (),
) -> pd.DataFrame:
    """The planner's station frame from one recorded snapshot: active, fresh, located stations."""
    snap = snapshot.copy()
    fresh = (as_of - pd.to_datetime(snap["last_updated"], utc=True)) <= pd.Timedelta(minutes=max_age_min)
    reported = pd.to_datetime(snap["last_reported"], utc=True)
    recent = (pd.to_datetime(snap["last_updated"], utc=True) - reported) <= pd.Timedelta(seconds=stale_report_s)
    active = snap["is_installed"].fillna(False) & snap["is_renting"].fillna(False) & snap["is_returning"].fillna(False)
    snap = snap[(fresh & recent & active).fillna(False).astype(bool)].dropna(subset=["bikes", "docks"])
    info = information[["station_id", "name", "lat", "lon", "region_id"]].dropna(subset=["lat", "lon"])
    out = snap[["station_id", "bikes", "docks"]].merge(info, on="station_id", how="inner")
    regions = [str(r) for r in region_ids]
    if regions:
        out = out[out["region_id"].astype(str).isin(regions)]
    out = out.drop_duplicates("station_id")
    out["bikes"] = out["bikes"].astype("int64")
    out["docks"] = out["docks"].astype("int64")
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class PlanOutcome:
    """Expected (forecast) and replayed (recorded) figures of one plan."""

    as_of: pd.Timestamp
    status: str
    solve_s: float
    stations: int
    in_need: int
    candidates: int
    expected_no_action: float
    expected_greedy: float
    expected_plan: float
    replay_no_action: float
    replay_greedy: float
    replay_plan: float
    moved_greedy: int
    moved_plan: int
    drive_greedy: float
    drive_plan: float


def evaluate_plan(plan: Plan, counts: RecordedCounts) -> PlanOutcome:
    """Replay one plan's optimised and greedy routes on the recorded counts of its horizon."""
    stations = plan.need["station_id"].tolist()
    samples = plan.params.need.horizon_min // counts.step_min
    bikes, slots = counts.window(stations, plan.as_of, samples)
    thr, step = plan.params.need.threshold, plan.params.need.step_min
    common = {
        "as_of": plan.as_of,
        "station_ids": stations,
        "bikes": bikes,
        "slots": slots,
        "start_loads": plan.fleet.loads(),
        "capacity": plan.fleet.capacity,
        "threshold": thr,
        "step_min": step,
    }
    greedy = replay_plan(plan.routes("greedy"), **common)  # type: ignore[arg-type]
    optimised = replay_plan(plan.routes("optimised"), **common)  # type: ignore[arg-type]
    s = plan.summary
    return PlanOutcome(
        as_of=plan.as_of,
        status=plan.status,
        solve_s=plan.solve_s,
        stations=len(stations),
        in_need=s.stations_in_need,
        candidates=s.candidates,
        expected_no_action=s.stockout_min_no_action,
        expected_greedy=s.stockout_min_greedy,
        expected_plan=s.stockout_min_plan,
        replay_no_action=stockout_minutes(bikes, slots, threshold=thr, step_min=step),
        replay_greedy=greedy.stockout_min,
        replay_plan=optimised.stockout_min,
        moved_greedy=greedy.bikes_moved,
        moved_plan=optimised.bikes_moved,
        drive_greedy=s.travel_min_greedy,
        drive_plan=s.travel_min_plan,
    )


def run_replay(
    *,
    plan_times: Iterable[pd.Timestamp],
    snapshot_at: Callable[[pd.Timestamp], pd.DataFrame],
    information_at: Callable[[pd.Timestamp], pd.DataFrame],
    counts: RecordedCounts,
    fleet: Fleet,
    params: PlanParams,
    region_ids: Iterable[str] = (),
    lookback_days: int = 21,
    max_age_min: float = 30.0,
    stale_report_s: float = 3600.0,
    progress: Callable[[PlanOutcome], None] | None = None,
) -> pd.DataFrame:
    """Plan at every time (interim forecaster), replay each plan; one row of :class:`PlanOutcome` per plan.

    Plan times without a fresh snapshot or outside the shift are skipped.
    """
    forecaster = FlowProfileForecaster(
        counts.bikes, timezone=fleet.timezone, step_min=counts.step_min, lookback_days=lookback_days
    )
    horizons = list(range(counts.step_min, params.need.horizon_min + 1, counts.step_min))
    rows = []
    for as_of in plan_times:
        if fleet.window_s(as_of, params.need.horizon_min) is None:
            continue
        try:
            snapshot = snapshot_at(as_of)
        except KeyError:
            continue
        stations = stations_from_snapshot(
            snapshot,
            information_at(as_of),
            as_of=as_of,
            max_age_min=max_age_min,
            stale_report_s=stale_report_s,
            region_ids=region_ids,
        )
        if stations.empty:
            continue
        forecast = forecaster.forecast(stations, as_of=as_of, horizons_min=horizons)
        plan = make_plan(stations, forecast, fleet=fleet, params=params, as_of=as_of, forecaster=forecaster.name)
        outcome = evaluate_plan(plan, counts)
        if progress is not None:
            progress(outcome)
        rows.append(asdict(outcome))
    return pd.DataFrame(rows)


def summary_table(outcomes: pd.DataFrame, *, travel_cost: float, seed: int = 7) -> pd.DataFrame:
    """The evaluation table: totals per method, avoided minutes, wins, and a bootstrap interval."""
    if outcomes.empty:
        raise ValueError("no plan was evaluated (no plan time had a fresh snapshot inside the shift)")
    o = outcomes
    avoided_g = o["replay_no_action"] - o["replay_greedy"]
    avoided_p = o["replay_no_action"] - o["replay_plan"]
    diff = (avoided_p - avoided_g).to_numpy()
    rng = np.random.default_rng(seed)
    boot = rng.choice(diff, size=(2000, len(diff)), replace=True).mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])

    def pct(x: float, base: float) -> str:
        return f"{100 * x / base:.1f}%" if base else "-"

    base = float(o["replay_no_action"].sum())
    rows = [
        ("plans", f"{len(o)}", f"{len(o)}", f"{len(o)}"),
        (
            "stockout station-min, replayed (sum)",
            f"{base:,.0f}",
            f"{o['replay_greedy'].sum():,.0f}",
            f"{o['replay_plan'].sum():,.0f}",
        ),
        (
            "  avoided vs no action",
            "-",
            f"{avoided_g.sum():,.0f} ({pct(avoided_g.sum(), base)})",
            f"{avoided_p.sum():,.0f} ({pct(avoided_p.sum(), base)})",
        ),
        ("  avoided per plan (mean)", "-", f"{avoided_g.mean():.1f}", f"{avoided_p.mean():.1f}"),
        (
            "stockout station-min, expected (sum)",
            f"{o['expected_no_action'].sum():,.0f}",
            f"{o['expected_greedy'].sum():,.0f}",
            f"{o['expected_plan'].sum():,.0f}",
        ),
        ("bikes moved (executed, sum)", "0", f"{o['moved_greedy'].sum():,}", f"{o['moved_plan'].sum():,}"),
        ("truck driving min (sum)", "0", f"{o['drive_greedy'].sum():,.0f}", f"{o['drive_plan'].sum():,.0f}"),
        (
            f"net = avoided - {travel_cost:g} x driving min",
            "0",
            f"{avoided_g.sum() - travel_cost * o['drive_greedy'].sum():,.0f}",
            f"{avoided_p.sum() - travel_cost * o['drive_plan'].sum():,.0f}",
        ),
        (
            "plans: optimised better / equal / worse than greedy",
            "-",
            "-",
            f"{int((diff > 1e-9).sum())} / {int((np.abs(diff) <= 1e-9).sum())} / {int((diff < -1e-9).sum())}",
        ),
        (
            "optimised - greedy avoided per plan, mean [95% bootstrap]",
            "-",
            "-",
            f"{diff.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]",
        ),
        ("solve s per plan (median / max)", "-", "-", f"{o['solve_s'].median():.2f} / {o['solve_s'].max():.2f}"),
        (
            "plans where greedy won in expectation (kept greedy)",
            "-",
            "-",
            f"{int((o['status'] == 'greedy_better').sum())}",
        ),
    ]
    return pd.DataFrame(rows, columns=["metric", "no action", "greedy", "optimised"])


def plan_times(start: pd.Timestamp, end: pd.Timestamp, every_min: int) -> list[pd.Timestamp]:
    """Plan times every ``every_min`` minutes from ``start`` (rounded up) to ``end`` (inclusive)."""
    step = pd.Timedelta(minutes=every_min)
    first = pd.Timestamp(start).ceil(step)
    count = max(0, math.floor((pd.Timestamp(end) - first) / step) + 1)
    return [first + i * step for i in range(count)]
