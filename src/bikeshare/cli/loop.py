"""Loop commands: batch inference and actuals (one run, or the runner with one job), the training
pipeline, the runner with every job, and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bikeshare.cli.app import (
    app,
    city_of,
    each_city,
    parse_time,
    registry_failure,
    resources_of,
    run_one_job,
    settings_of,
)
from bikeshare.cli.options import EndpointOpt, ReplayClockOpt
from bikeshare.enums import Alias, Target

if TYPE_CHECKING:
    from bikeshare.orchestration.clocks import JobClock
    from bikeshare.orchestration.records import JobRun


def _job_clock(replay_url: str | None, at: str | None, once: bool) -> JobClock:
    from bikeshare.orchestration.clocks import job_clock

    try:
        return job_clock(replay_url=replay_url, at=at, once=once)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
@each_city
def infer(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Score one batch and exit (status 1 when it failed).")] = False,
    endpoint: EndpointOpt = None,
    shadow: Annotated[
        list[Alias] | None,
        typer.Option("--shadow", help="Also score this alias in shadow (repeatable); default: infer_shadow_aliases."),
    ] = None,
    replay_clock: ReplayClockOpt = None,
    at: Annotated[str | None, typer.Option("--at", help="With --once: score the slot of this time (ISO, UTC).")] = None,
) -> None:
    """Score all active stations every infer_interval_min through the endpoint into inference/ (Ctrl-C stops)."""
    import contextlib

    from bikeshare.inference.batch import alias_clients, check_aliases, run_inference_batch
    from bikeshare.orchestration.jobs import infer_job, schedules
    from bikeshare.orchestration.runner import Job

    settings = settings_of(ctx)
    if endpoint is not None:
        settings = settings.with_values(endpoint_url=endpoint)
    shadows = settings.infer_shadow_aliases if shadow is None else [a.value for a in shadow]
    clock = _job_clock(replay_clock, at, once)
    city = city_of(ctx, settings=settings, clock=clock)
    settings, lake = city.settings, city.lake.lake
    try:
        aliases = check_aliases([settings.serve_alias, *shadows])
        client = city.resources.endpoint_client()
        routes = alias_clients(settings, aliases)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with client, contextlib.ExitStack() as stack:
        for route in routes.values():
            stack.enter_context(route)
        if once:
            record = run_inference_batch(
                lake=lake, endpoint=client, settings=settings, now=clock.now(), aliases=aliases, alias_endpoints=routes
            )
            typer.echo(record.summary())
            if record.status == "failed":
                raise typer.Exit(1)
            return
        typer.echo(
            f"scoring {', '.join(aliases)} through {client.invocations_url} every {settings.infer_interval_min} min "
            f"into {lake.root} (Ctrl-C stops)"
        )
        run = infer_job(settings=settings, lake=lake, client=client, aliases=aliases, routes=routes)
        report = run_one_job(ctx, city, lambda _recorder: Job("infer", schedules(settings)["infer"], run))
    typer.echo(f"stopped after {report.count('infer')} batches")


@app.command()
@each_city
def actuals(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Join once and exit.")] = False,
    replay_clock: ReplayClockOpt = None,
    at: Annotated[str | None, typer.Option("--at", help="With --once: join as of this time (ISO, UTC).")] = None,
) -> None:
    """Join predictions whose horizon has passed with the observed counts into monitoring/quality/ (Ctrl-C stops)."""
    from bikeshare.inference.actuals import run_actuals
    from bikeshare.orchestration.jobs import actuals_job, schedules
    from bikeshare.orchestration.runner import Job

    clock = _job_clock(replay_clock, at, once)
    city = city_of(ctx, clock=clock)
    settings, lake = city.settings, city.lake.lake
    if once:
        typer.echo(run_actuals(lake=lake, settings=settings, now=clock.now()).summary())
        return
    typer.echo(f"joining actuals every {settings.actuals_interval_min} min in {lake.root} (Ctrl-C stops)")
    run = actuals_job(settings=settings, lake=lake)
    report = run_one_job(ctx, city, lambda _recorder: Job("actuals", schedules(settings)["actuals"], run))
    typer.echo(f"stopped after {report.count('actuals')} runs")


@app.command("pipeline")
@each_city
def pipeline_command(
    ctx: typer.Context,
    target: Annotated[
        list[Target] | None, typer.Option("--target", help="Target to train (repeatable); default: bikes and docks.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Train on features up to this time (UTC ISO); default: all.")] = None,
) -> None:
    """Features -> train both targets -> evaluate -> register -> gate -> staging; idempotent.

    Exit 0: every target's version holds staging; 1: a gate refused; 2: no usable data; 3: registry unreachable.
    """
    from bikeshare.orchestration.pipeline import PipelineError, run_pipeline
    from bikeshare.registry.client import ModelNotFoundError, RegistryUnavailable

    targets = [t.value for t in (target or list(Target))]
    end_ts = parse_time(end)
    city = city_of(ctx)
    try:
        report = run_pipeline(
            lake=city.lake.lake,
            client=city.registry(),
            settings=city.settings,
            targets=targets,
            end=end_ts,  # type: ignore[arg-type]
            progress=typer.echo,
        )
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    except (RegistryUnavailable, ModelNotFoundError) as exc:
        raise registry_failure(exc) from exc
    typer.echo(report.summary())
    if report.exit_code:
        raise typer.Exit(code=report.exit_code)


@app.command("run")
def run_command(
    ctx: typer.Context,
    replay_clock: Annotated[
        str | None,
        typer.Option(
            "--replay-clock", help="Base URL of a replay server: its virtual clock drives the schedule (and the feed)."
        ),
    ] = None,
    feed: Annotated[
        str | None, typer.Option("--feed", help="gbfs.json URL; default: <replay>/gbfs.json, else feed_url.")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Endpoint base URL; default: endpoint_url (serve_host:port).")
    ] = None,
    jobs: Annotated[
        str | None, typer.Option("--jobs", help="Comma-separated jobs to run; default: run_jobs (every standard job).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Stop when the job clock reaches this time (UTC ISO).")
    ] = None,
    until_end: Annotated[
        bool, typer.Option("--until-end", help="With --replay-clock: stop at the recording's last snapshot.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print a line per job run.")] = False,
) -> None:
    """Run every job on its own schedule (ingest, infer, actuals, monitor, retrain, plan) until Ctrl-C/SIGTERM."""
    from bikeshare.orchestration.clocks import ReplayClock
    from bikeshare.orchestration.jobs import LoopEndpoints, check_jobs, run_loop
    from bikeshare.orchestration.signals import stop_on_signals

    settings = settings_of(ctx)
    try:
        names = check_jobs([n.strip() for n in jobs.split(",") if n.strip()]) if jobs else None
        stop_at = parse_time(until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if until_end and replay_clock is None:
        raise typer.BadParameter("--until-end needs --replay-clock", param_hint="--until-end")
    resources = resources_of(ctx, replay_url=replay_clock)
    clock = resources.clock
    if isinstance(clock, ReplayClock):
        try:
            reading = clock.read()
        except Exception as exc:
            raise typer.BadParameter(f"cannot read the replay clock at {replay_clock}: {exc}") from exc
        if until_end:
            stop_at = reading.end if stop_at is None else min(stop_at, reading.end)
    feed_url = feed or (f"{replay_clock.rstrip('/')}/gbfs.json" if replay_clock else settings.feed_url)
    if not feed_url:
        raise typer.BadParameter("no feed: pass --feed or set feed_url", param_hint="--feed")
    endpoints = LoopEndpoints(feed_url=feed_url, endpoint_url=endpoint or settings.resolved_endpoint_url)
    lake = resources.lake

    def show(run: JobRun) -> None:
        if not quiet:
            job = f"{run.job}@{run.city}" if run.city else run.job
            typer.echo(
                f"{run.started_at:%Y-%m-%d %H:%M:%S}Z {job:<8} {run.status:<7} "
                f"{run.duration_s:6.2f}s lag {run.lag_s:5.0f}s {run.error or ''}".rstrip()
            )

    if len(resources.fleet.cities) > 1:
        typer.echo(f"fleet of {len(resources.fleet.cities)} from {resources.fleet.source}: "
                   f"{', '.join(resources.fleet.keys)}, each on its own feed_url")  # fmt: skip
    typer.echo(
        f"running {', '.join(names or settings.run_jobs)} on the {clock.name} clock: feed {feed_url}, "
        f"endpoint {endpoints.endpoint_url}, lake {lake.root} (Ctrl-C stops)"
    )
    try:
        with stop_on_signals() as stop:
            report = run_loop(
                settings=settings, lake=lake, clock=clock, endpoints=endpoints, stop=stop, names=names,
                until=stop_at, on_run=show, fleet=[city.settings for city in resources.cities()],
                registry=resources.registry,
            )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(report.summary())


@app.command("demo")
def demo_command(
    ctx: typer.Context,
    reset: Annotated[bool, typer.Option("--reset", help="Start from an empty workspace (demo_dir).")] = False,
    no_serve: Annotated[
        bool,
        typer.Option(
            "--no-serve", "--exit-after-batch", help="Exit after the summary instead of serving until Ctrl-C."
        ),
    ] = False,
    workspace: Annotated[Path | None, typer.Option(help="Workspace folder; default demo_dir (./demo).")] = None,
    speed: Annotated[float | None, typer.Option(min=1, help="Replay speed; default demo_speed.")] = None,
    live_hours: Annotated[
        float | None, typer.Option(min=0.5, help="Hours replayed after the soak; default demo_live_hours.")
    ] = None,
) -> None:
    """The whole loop on the shipped slice: replay, backfill, pipeline, staging soak, production, live loop, summary."""
    import logging

    from bikeshare.orchestration.demo import DemoError, run_demo
    from bikeshare.orchestration.signals import stop_on_signals

    updates: dict[str, object] = {}
    if workspace is not None:
        updates["demo_dir"] = workspace
    if speed is not None:
        updates["demo_speed"] = speed
    if live_hours is not None:
        updates["demo_live_hours"] = live_hours
    settings = settings_of(ctx).with_values(**updates)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with stop_on_signals() as stop:
            run_demo(base=settings, reset=reset, serve=not no_serve, stop=stop, say=typer.echo)
    except DemoError as exc:
        typer.echo(f"demo stopped: {exc}", err=True)
        raise typer.Exit(code=1) from exc
