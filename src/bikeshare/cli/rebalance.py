"""Rebalancing commands: one truck plan, made by the same ``plan_at`` as the runner's plan job."""

from __future__ import annotations

from typing import Annotated

import typer

from bikeshare.cli.app import app, city_of, each_city, parse_time

rebalance_app = typer.Typer(no_args_is_help=True, help="Rebalancing plans for the trucks (OR-Tools).")
app.add_typer(rebalance_app, name="rebalance")


@rebalance_app.command("plan")
@each_city
def rebalance_plan(
    ctx: typer.Context,
    trucks: Annotated[int | None, typer.Option(min=1, help="Trucks (default: rebalance_trucks).")] = None,
    truck_capacity: Annotated[int | None, typer.Option(min=1, help="Bikes per truck.")] = None,
    horizon_min: Annotated[int | None, typer.Option(min=5, help="Minutes the plan looks ahead.")] = None,
    time_limit_s: Annotated[float | None, typer.Option(min=0.1, help="Solver wall-clock limit.")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Plan time (ISO, UTC unless it has an offset); default: latest status.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a plan already stored for that minute.")] = False,
) -> None:
    """Plan truck routes for the next hour from the latest forecasts and store them in the lake (plans)."""
    from bikeshare.rebalancing.inputs import latest_status_time
    from bikeshare.rebalancing.job import plan_at
    from bikeshare.rebalancing.plan import PlanParams
    from bikeshare.rebalancing.storage import plan_exists

    city = city_of(ctx)
    lake, settings = city.lake.lake, city.settings
    try:
        params = PlanParams.from_settings(
            settings, horizon_min=horizon_min, time_limit_s=time_limit_s, truck_capacity=truck_capacity
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    when = parse_time(as_of, hint="--as-of") or latest_status_time(lake, city=city.key)
    if when is None:
        raise typer.BadParameter(f"the lake {settings.lake_uri} has no station_status for city {city.key!r}")
    when = when.floor("min")
    if not overwrite and plan_exists(lake, city=city.key, as_of=when):
        typer.echo(f"a plan for {when:%Y-%m-%dT%H:%M}Z is already stored (use --overwrite to replace it)")
        return
    run = plan_at(
        lake=lake,
        settings=settings,
        as_of=when,
        params=params,
        trucks=trucks,
        truck_capacity=truck_capacity,
        overwrite=overwrite,
    )
    plan = run.plan
    if plan is None:
        raise typer.BadParameter(f"no fresh, active station at {when.isoformat()} in the lake for {city.key!r}")
    if not run.timezone_known:
        typer.echo("no system_information time zone in the lake; the shift window is read in UTC")
    s = plan.summary
    typer.echo(
        f"plan {when:%Y-%m-%dT%H:%M}Z ({plan.status}, solved in {plan.solve_s:.1f} s): {run.stations} stations, "
        f"{s.stations_in_need} in need; expected stockout station-minutes over {params.need.horizon_min} min: "
        f"no action {s.stockout_min_no_action:.0f}, greedy {s.stockout_min_greedy:.0f}, plan {s.stockout_min_plan:.0f}"
    )
    routes = plan.routes()
    for truck in range(1, plan.fleet.trucks + 1):
        stops = routes[routes["truck"] == truck]
        legs = ", ".join(
            f"{r.arrival:%H:%M} {r.action} {r.quantity} at {r.name}" for r in stops.itertuples(index=False)
        )
        typer.echo(f"  truck {truck}: {legs or 'stays at the depot'}")
    typer.echo(
        f"stored {run.path}" if run.path else "a plan for this minute is already stored (use --overwrite to replace it)"
    )
