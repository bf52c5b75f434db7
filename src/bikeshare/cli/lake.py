"""Lake commands: SQL over the views, the feed ingest (one batch, or the runner with one job), backfill,
compaction and retention."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikeshare.cli.app import app, city_of, each_city, resources_of, run_one_job, settings_of


@app.command()
def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="A DuckDB query over the lake's views.")],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
) -> None:
    """Run SQL over the lake (views: station_status, station_information, ingest_log, ...)."""
    import duckdb

    from bikeshare.lake.views import ReadOnlyQueryError, read_only_frame

    con = resources_of(ctx).lake.connect_read_only()
    try:
        frame = read_only_frame(con, query)
    except (duckdb.Error, ReadOnlyQueryError) as exc:
        raise typer.BadParameter(str(exc), param_hint="QUERY") from exc
    if fmt == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        typer.echo(frame.to_json(orient="records", date_format="iso"))
    else:
        typer.echo(frame.to_string(index=False) if len(frame) else "(no rows)")


@app.command()
@each_city
def ingest(
    ctx: typer.Context,
    feed: Annotated[str | None, typer.Option("--feed", help="gbfs.json URL; default: the feed_url setting.")] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run one batch and exit (status 1 when the fetch failed).")
    ] = False,
    replay_clock: Annotated[
        bool,
        typer.Option("--replay-clock", help="Time batches by the replay server's virtual clock (feed = a replay)."),
    ] = False,
) -> None:
    """Poll the GBFS feed into the lake every poll_interval_s (never faster than its ttl); Ctrl-C stops."""
    from bikeshare.ingest.poller import Outcome, ingest_once
    from bikeshare.orchestration.jobs import RunClock, ingest_job, schedules
    from bikeshare.orchestration.runner import Job

    url = feed or settings_of(ctx).feed_url or ""
    city = city_of(ctx, replay_url=url.rsplit("/", 1)[0] if replay_clock else None)
    settings, lake = city.settings, city.lake.lake
    run_clock = RunClock(city.resources.clock)
    try:
        client = city.feed_client(discovery_url=feed, utc_now=run_clock.now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--feed") from exc
    with client:
        if once:
            outcome = ingest_once(client=client, lake=lake, settings=settings, clock=run_clock.now)
            typer.echo(outcome.summary())
            if outcome.outcome == Outcome.FETCH_FAILED:
                raise typer.Exit(1)
            return
        typer.echo(
            f"polling {client.discovery_url} every {settings.poll_interval_s:g}s into {lake.root} (Ctrl-C stops)"
        )
        run = ingest_job(settings=settings, lake=lake, client=client, run_clock=run_clock)
        report = run_one_job(ctx, city, lambda _recorder: Job("ingest", schedules(settings)["ingest"], run))
    typer.echo(f"stopped after {report.count('ingest')} batches")


@app.command("backfill")
def backfill_command(
    ctx: typer.Context,
    recording: Annotated[
        Path | None,
        typer.Option("--recording", help="Recording folder; default: recording_path, else the shipped slice."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Threads writing partitions; default: backfill_workers.")
    ] = None,
) -> None:
    """Write a whole recording into the lake through the same contract and layout as ingest."""
    from bikeshare.gbfs.recording import Recording, RecordingError, default_recording_path
    from bikeshare.ingest.backfill import backfill

    settings = settings_of(ctx)
    path = recording or settings.recording_path or default_recording_path()
    try:
        opened = Recording.open(path)
    except RecordingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--recording") from exc
    lake = resources_of(ctx).lake
    report = backfill(recording=opened, lake=lake, settings=settings, workers=workers or settings.backfill_workers)
    typer.echo(f"backfill of {path} into {lake.root}: {report.summary()}")


@app.command("compact")
def compact_command(
    ctx: typer.Context,
    city: Annotated[str | None, typer.Option("--city", help="City to compact; default: the city setting.")] = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="A minute-grain table (repeatable); default: all of them.")
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Compact the UTC days before this one (YYYY-MM-DD); default: the closed days, as the compact job "
            "(compaction_settle_h after midnight; inference also waits actuals_lookback_h).",
        ),
    ] = None,
    remove_now: Annotated[
        bool,
        typer.Option(
            "--remove-now",
            help="Remove the folded minute files at once (no reader is running); default: after "
            "compaction_remove_after_s, by a later run.",
        ),
    ] = False,
) -> None:
    """Rewrite the closed days of the minute-grain tables into one file per table and day (crash-safe)."""
    from bikeshare.lake.compaction import MINUTE_TABLES, compact, table_named
    from bikeshare.lake.store import parse_partition_value
    from bikeshare.orchestration.jobs import compaction_cutoffs

    settings = settings_of(ctx) if city is None else settings_of(ctx).with_values(city=city)
    try:
        specs = [table_named(name) for name in table] if table else list(MINUTE_TABLES)
        if before is not None and (len(before) != 10 or not parse_partition_value(before)):
            raise ValueError(f"--before {before!r}: expected YYYY-MM-DD")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    resources = resources_of(ctx, settings=settings)
    if before is not None:
        groups = {before: specs}
    else:
        cutoffs = compaction_cutoffs(settings, resources.clock.now())
        groups = {day: [s for s in group if s in specs] for day, group in cutoffs.items()}
    for day, group in sorted(groups.items()):
        if group:
            wait = 0.0 if remove_now else settings.compaction_remove_after_s
            report = compact(resources.lake, city=settings.city, before=day, tables=group, remove_after_s=wait)
            typer.echo(report.summary())


@app.command("retention")
def retention_command(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
) -> None:
    """Delete lake partitions older than retention_days, keeping the production models' training windows."""
    from bikeshare.lake.retention import apply_retention
    from bikeshare.orchestration.jobs import production_windows

    settings = settings_of(ctx)
    resources = resources_of(ctx)
    windows = production_windows(resources.registry(), city=settings.city)
    report = apply_retention(
        resources.lake,
        city=settings.city,
        retention_days=settings.retention_days,
        now=resources.clock.now(),
        windows=windows,
        dry_run=dry_run,
    )
    for window in windows:
        typer.echo(f"training window kept: {window.label} {window.start.isoformat()}..{window.end.isoformat()}")
    for table in report.tables:
        if table.removed:
            verb = "would remove" if dry_run else "removed"
            typer.echo(f"{table.table}: {verb} {', '.join(table.removed)}")
    typer.echo(report.summary())
