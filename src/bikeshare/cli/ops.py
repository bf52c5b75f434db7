"""Operations commands: alerts, the monitor job (one evaluation, or the runner with one job), drills."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bikeshare.cli.app import app, city_of, each_city, parse_time, run_one_job, settings_of
from bikeshare.cli.options import ReplayClockOpt

if TYPE_CHECKING:
    from bikeshare.monitoring.store import AlertStore
    from bikeshare.orchestration.records import JobRunRecorder
    from bikeshare.orchestration.runner import Job

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts: list, acknowledge, and check the rules file.")
app.add_typer(alerts_app, name="alerts")


def _alert_store(ctx: typer.Context) -> AlertStore:
    from bikeshare.monitoring.store import AlertStore

    city = city_of(ctx)
    return AlertStore(city.lake.lake, city=city.key)


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Include resolved alerts.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """Alerts that are pending, firing or acknowledged (with --all: resolved ones too)."""
    from bikeshare.monitoring.store import alert_frame

    frame = alert_frame(_alert_store(ctx).alerts(include_resolved=show_all))
    if fmt == "json":
        typer.echo(frame.to_json(orient="records", date_format="iso"))
    elif not len(frame):
        typer.echo("(no alerts)" if show_all else "(no open alerts; --all shows resolved ones)")
    else:
        typer.echo(frame.drop(columns=["message"]).to_string(index=False))


@alerts_app.command("ack")
def alerts_ack(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(help="Alert id from `bikeshare alerts list`.")],
    by: Annotated[str | None, typer.Option("--by", help="Who acknowledges; default: the login name.")] = None,
) -> None:
    """Acknowledge a firing alert; prints its MTTA (fired -> acknowledged)."""
    import getpass

    from bikeshare.monitoring.alerts import AlertStateError
    from bikeshare.monitoring.store import AlertNotFoundError, ack_alert

    try:
        event = ack_alert(store=_alert_store(ctx), alert_id=alert_id, by=by or getpass.getuser())
    except (AlertNotFoundError, AlertStateError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"acknowledged {event.alert_id} ({event.fingerprint}) by {event.acknowledged_by}; MTTA {event.mtta_s:.0f} s"
    )


@alerts_app.command("rules")
def alerts_rules(ctx: typer.Context) -> None:
    """Validate the alert rules file (alert_rules_path, else the built-in rules) and list the rules."""
    from bikeshare.monitoring.rules import RulesFileError, load_rules

    settings = settings_of(ctx)
    try:
        rules = load_rules(settings.alert_rules_path)
    except RulesFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for rule in rules.rules:
        limits = ", ".join(
            f"{sev} {rule.comparison} {value:g}{' ' + rule.unit if rule.unit else ''}"
            for sev, value in (("warning", rule.warning), ("critical", rule.critical))
            if value is not None
        )
        selector = ",".join(f"{k}={v}" for k, v in sorted(rule.labels.items()))
        kind = "absence of " if rule.kind == "absence" else ""
        typer.echo(f"{rule.name}: {kind}{rule.signal}{'{' + selector + '}' if selector else ''}: {limits}")


@app.command()
@each_city
def monitor(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run one evaluation and exit.")] = False,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="Endpoint whose /metrics is scraped (default: monitor_endpoint_url)."),
    ] = None,
    no_endpoint: Annotated[bool, typer.Option("--no-endpoint", help="Do not scrape the endpoint.")] = False,
    replay_clock: ReplayClockOpt = None,
    at: Annotated[str | None, typer.Option("--at", help="With --once: evaluate as of this time (ISO, UTC).")] = None,
) -> None:
    """Measure data quality, drift, model quality and system health every monitor_interval_min; raise alerts."""
    from bikeshare.monitoring.job import endpoint_source, run_monitor
    from bikeshare.monitoring.rules import RulesFileError, load_rules
    from bikeshare.orchestration.clocks import job_clock
    from bikeshare.orchestration.jobs import monitor_job, schedules
    from bikeshare.orchestration.runner import Job

    settings = settings_of(ctx)
    if endpoint is not None:
        settings = settings.with_values(monitor_endpoint_url=endpoint)
    try:
        clock = job_clock(replay_url=replay_clock, at=at, once=once)
        rules = load_rules(settings.alert_rules_path)
    except (ValueError, RulesFileError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    city = city_of(ctx, settings=settings, clock=clock)
    settings, lake = city.settings, city.lake.lake
    source = None if no_endpoint else endpoint_source(settings)
    if once:
        result = run_monitor(lake=lake, settings=settings, now=clock.now(), endpoint_metrics_source=source, rules=rules)
        typer.echo(result.summary())
        return
    typer.echo(
        f"monitoring {lake.root} every {settings.monitor_interval_min} min"
        + (f", scraping {source.url}/metrics" if source else "")
        + " (Ctrl-C stops)"
    )

    def job(recorder: JobRunRecorder) -> Job:
        run = monitor_job(settings=settings, lake=lake, source=source, rules=rules, recorder=recorder)
        return Job("monitor", schedules(settings)["monitor"], run)

    report = run_one_job(ctx, city, job)
    typer.echo(f"stopped after {report.count('monitor')} runs")


drill_app = typer.Typer(
    no_args_is_help=True,
    help="Inject a real fault into a loop on the replay clock (own temp lake, MLflow, replay server, endpoint) "
    "and time the alert: detection, routing, acknowledgement, resolution.",
)
app.add_typer(drill_app, name="drill")

CycleOpt = Annotated[int | None, typer.Option("--cycle-min", min=5, help="Replay minutes per evaluation.")]
WarmupOpt = Annotated[int | None, typer.Option("--warmup-cycles", min=1, help="Evaluations before the fault.")]
MaxOpt = Annotated[int | None, typer.Option("--max-cycles", min=1, help="Evaluations to wait for fire/resolve.")]
StartOpt = Annotated[str | None, typer.Option("--start", help="Replay start (ISO, UTC) within the recording.")]
AckOpt = Annotated[
    float | None,
    typer.Option("--ack-after-min", min=0, help="Simulate a responder acking this many replay minutes after firing."),
]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", help="Keep the drill's lake and MLflow store in this new folder.")
]
KeepOpt = Annotated[bool, typer.Option("--keep", help="Keep the temporary workspace and print where it is.")]


def _run_drill(ctx: typer.Context, kind: str, options: dict[str, object], workspace: Path | None, keep: bool) -> None:
    from bikeshare.orchestration.drills import DrillPlan, drill_in_workspace
    from bikeshare.orchestration.signals import stop_on_signals

    settings = settings_of(ctx)
    start = options.pop("start", None)
    if start is not None:
        options["start"] = parse_time(str(start), hint="--start")
    if workspace is not None and workspace.exists() and any(workspace.iterdir()):
        raise typer.BadParameter(f"{workspace} is not empty: a drill needs a new folder", param_hint="--workspace")
    try:
        plan = DrillPlan.from_settings(kind, settings, **options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"drill {kind}: {plan.describe_fault()}; alert expected from {', '.join(plan.expected_rules)}")
    with stop_on_signals() as stop:
        try:
            report, kept = drill_in_workspace(
                plan,
                stop=stop,
                base_settings=settings,
                workspace=workspace,
                keep=keep,
                progress=lambda m: typer.echo(f"  {m}"),
                on_cycle=lambda c: typer.echo(
                    f"  evaluation {c.index} {c.evaluated_at:%H:%M}Z ({c.phase}): {c.watched}"
                ),
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo("")
    typer.echo(report.table())
    if kept is not None:
        typer.echo(f"workspace kept in {kept} (bikeshare with BIKESHARE_LAKE_URI={kept / 'lake'} reads it)")
    if not report.detected:
        raise typer.Exit(1)


@drill_app.command("feed-outage")
def drill_feed_outage(
    ctx: typer.Context,
    fault: Annotated[str, typer.Option("--fault", help="Replay server fault: http_5xx | timeout.")] = "http_5xx",
    score: Annotated[bool, typer.Option(help="Also run inference and actuals (the whole loop).")] = True,
    cycle_min: CycleOpt = None,
    warmup_cycles: WarmupOpt = None,
    max_cycles: MaxOpt = None,
    start: StartOpt = None,
    ack_after_min: AckOpt = None,
    workspace: WorkspaceOpt = None,
    keep: KeepOpt = False,
) -> None:
    """The feed goes down (replay server faults on station_status): expect dead_feed."""
    options = {"outage": fault, "score": score, "cycle_min": cycle_min, "warmup_cycles": warmup_cycles}
    options.update(max_cycles=max_cycles, start=start, ack_after_min=ack_after_min)
    _run_drill(ctx, "feed-outage", options, workspace, keep)


@drill_app.command("drift")
def drill_drift(
    ctx: typer.Context,
    factor: Annotated[float, typer.Option("--factor", help="Share of each station's bikes the feed keeps.")] = 0.5,
    cycle_min: CycleOpt = None,
    warmup_cycles: WarmupOpt = None,
    max_cycles: MaxOpt = None,
    start: StartOpt = None,
    ack_after_min: AckOpt = None,
    workspace: WorkspaceOpt = None,
    keep: KeepOpt = False,
) -> None:
    """The feed's counts shift (bikes shown as docks): expect feature_drift and prediction_drift."""
    options = {"drift_factor": factor, "cycle_min": cycle_min, "warmup_cycles": warmup_cycles}
    options.update(max_cycles=max_cycles, start=start, ack_after_min=ack_after_min)
    _run_drill(ctx, "drift", options, workspace, keep)


@drill_app.command("latency")
def drill_latency(
    ctx: typer.Context,
    delay_ms: Annotated[float, typer.Option("--delay-ms", min=1, help="Extra time of each scoring call.")] = 400.0,
    cycle_min: CycleOpt = None,
    warmup_cycles: WarmupOpt = None,
    max_cycles: MaxOpt = None,
    start: StartOpt = None,
    ack_after_min: AckOpt = None,
    workspace: WorkspaceOpt = None,
    keep: KeepOpt = False,
) -> None:
    """The endpoint's models slow down: expect endpoint_latency."""
    options = {"latency_s": delay_ms / 1000.0, "cycle_min": cycle_min, "warmup_cycles": warmup_cycles}
    options.update(max_cycles=max_cycles, start=start, ack_after_min=ack_after_min)
    _run_drill(ctx, "latency", options, workspace, keep)
