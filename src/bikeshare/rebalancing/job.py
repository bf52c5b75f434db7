"""One rebalancing plan from the lake: inputs at a time -> forecast -> plan -> ``plans`` table.

What ``bikeshare rebalance plan`` and the loop runner's ``plan`` job both run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bikeshare.lake.store import Lake
from bikeshare.rebalancing.plan import Plan, PlanParams
from bikeshare.settings import Settings


@dataclass(frozen=True)
class PlanRun:
    """What :func:`plan_at` did: the plan and where it went, or why there is none."""

    as_of: pd.Timestamp
    plan: Plan | None
    path: str | None
    stations: int
    skipped: str | None = None  # why no plan was made or stored
    timezone_known: bool = True

    def details(self) -> dict[str, object]:
        """A JSON-able summary (job_runs details)."""
        out: dict[str, object] = {"as_of": self.as_of.isoformat(), "stations": self.stations, "path": self.path}
        if self.skipped:
            out["skipped"] = self.skipped
        if self.plan is not None:
            s = self.plan.summary
            out.update(
                status=self.plan.status,
                forecaster=self.plan.forecaster,
                solve_s=round(self.plan.solve_s, 3),
                stations_in_need=s.stations_in_need,
                stockout_min_no_action=round(s.stockout_min_no_action, 1),
                stockout_min_plan=round(s.stockout_min_plan, 1),
                stockout_min_greedy=round(s.stockout_min_greedy, 1),
            )
        return out


def plan_at(
    *,
    lake: Lake,
    settings: Settings,
    as_of: pd.Timestamp,
    params: PlanParams | None = None,
    trucks: int | None = None,
    truck_capacity: int | None = None,
    overwrite: bool = False,
) -> PlanRun:
    """Plan truck routes at ``as_of`` from the lake and store them (a stored minute is kept unless ``overwrite``)."""
    from bikeshare.rebalancing.fleet import Fleet
    from bikeshare.rebalancing.forecast import FlowProfileForecaster
    from bikeshare.rebalancing.inputs import load_history, load_stations, system_timezone
    from bikeshare.rebalancing.model_forecast import ModelForecaster
    from bikeshare.rebalancing.plan import make_plan
    from bikeshare.rebalancing.storage import plan_exists, write_plan

    city = settings.city
    when = as_of.floor("min")
    if not overwrite and plan_exists(lake, city=city, as_of=when):
        return PlanRun(when, None, None, 0, skipped=f"a plan for {when:%Y-%m-%dT%H:%M}Z is already stored")
    params = params or PlanParams.from_settings(settings, truck_capacity=truck_capacity)
    timezone = system_timezone(lake, city=city) or settings.timezone
    fleet = Fleet.from_settings(settings, timezone=timezone or "UTC", trucks=trucks, capacity=truck_capacity)
    stations = load_stations(
        lake, city=city, as_of=when, max_age_min=settings.max_snapshot_age_min, region_ids=settings.rebalance_region_ids
    )
    if stations.empty:
        return PlanRun(when, None, None, 0, skipped=f"no fresh, active station at {when.isoformat()}")
    history = load_history(
        lake,
        city=city,
        as_of=when,
        days=settings.rebalance_history_days,
        step_min=settings.grid_minutes,
        max_age_min=settings.max_snapshot_age_min,
    )
    # The multi-horizon model's stored forecasts; the flow profile where none is fresh.
    fallback = FlowProfileForecaster(
        history, timezone=fleet.timezone, step_min=settings.grid_minutes, lookback_days=settings.rebalance_history_days
    )
    forecaster = ModelForecaster(
        lake,
        city=city,
        alias=settings.serve_alias,
        max_age_min=settings.forecast_max_age_min,
        threshold=settings.shortage_threshold,
        fallback=fallback,
    )
    step = settings.grid_minutes
    horizons = list(range(step, params.need.horizon_min + 1, step))
    forecast = forecaster.forecast(stations, as_of=when, horizons_min=horizons)
    plan = make_plan(stations, forecast, fleet=fleet, params=params, as_of=when, forecaster=forecaster.name)
    path = write_plan(lake, plan, city=city, overwrite=overwrite)
    skipped = None if path else f"a plan for {when:%Y-%m-%dT%H:%M}Z was stored meanwhile"
    return PlanRun(when, plan, path, len(stations), skipped=skipped, timezone_known=timezone is not None)
