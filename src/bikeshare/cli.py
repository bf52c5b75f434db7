"""The ``bikeshare`` command line: each command wires settings to one stage, nothing more.

Stage modules are imported inside the commands so that ``bikeshare --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikeshare.settings import Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="MLOps loop for bike-share stock-out prediction.")


def settings_of(ctx: typer.Context) -> Settings:
    """The settings built once by the app callback."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):  # pragma: no cover - the callback always runs first
        raise RuntimeError("settings were not initialised")
    return settings


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file of settings (or set BIKESHARE_CONFIG).")
    ] = None,
) -> None:
    """Settings come from BIKESHARE_* variables, .env, and an optional TOML config file."""
    ctx.obj = load_settings(config)


@app.command()
def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="A DuckDB query over the lake's views.")],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
) -> None:
    """Run SQL over the lake (views: station_status, station_information, ingest_log, ...)."""
    import duckdb

    from bikeshare.lake.store import Lake
    from bikeshare.lake.views import ReadOnlyQueryError, read_only_frame

    settings = settings_of(ctx)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    con = lake.connect_read_only()
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
    import signal
    import threading

    from bikeshare.gbfs.client import GbfsClient
    from bikeshare.ingest.clock import ReplayFollower, utc_now
    from bikeshare.ingest.poller import Outcome, ingest_once, run_poller
    from bikeshare.lake.store import Lake

    settings = settings_of(ctx)
    url = feed or settings.feed_url or ""
    clock = ReplayFollower(url.rsplit("/", 1)[0]) if replay_clock else utc_now
    try:
        client = GbfsClient.from_settings(settings, discovery_url=feed, utc_now=clock)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--feed") from exc
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    with client:
        if once:
            outcome = ingest_once(client=client, lake=lake, settings=settings, clock=clock)
            typer.echo(outcome.summary())
            if outcome.outcome == Outcome.FETCH_FAILED:
                raise typer.Exit(1)
            return
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        typer.echo(
            f"polling {client.discovery_url} every {settings.poll_interval_s:g}s into {lake.root} (Ctrl-C stops)"
        )
        try:
            batches = run_poller(
                client=client,
                lake=lake,
                settings=settings,
                stop=stop,
                clock=clock,
                on_outcome=lambda o: typer.echo(o.summary()),
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        typer.echo(f"stopped after {batches} batches")


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
    from bikeshare.lake.store import Lake

    settings = settings_of(ctx)
    path = recording or settings.recording_path or default_recording_path()
    try:
        opened = Recording.open(path)
    except RecordingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--recording") from exc
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    report = backfill(recording=opened, lake=lake, settings=settings, workers=workers or settings.backfill_workers)
    typer.echo(f"backfill of {path} into {lake.root}: {report.summary()}")


recording_app = typer.Typer(no_args_is_help=True, help="GBFS recordings in the project's compact format.")
app.add_typer(recording_app, name="recording")


@recording_app.command("import")
def recording_import(
    ctx: typer.Context,
    src: Annotated[
        Path, typer.Argument(help="Folder of station_status/station_information/system_information.jsonl.gz")
    ],
    dest: Annotated[Path, typer.Argument(help="Recording folder to write (atomically).")],
    start: Annotated[
        str | None, typer.Option(help="Keep snapshots from this ISO time (UTC unless it has an offset).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Exclusive end, ISO.")] = None,
    city: Annotated[str | None, typer.Option(help="City key for the manifest; default: the city setting.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing, non-empty DEST.")] = False,
) -> None:
    """Convert a JSON Lines GBFS recording (../shared/data format) into a recording folder."""
    from bikeshare.gbfs.recording import RecordingError, import_jsonl_recording

    settings = settings_of(ctx)
    try:
        rec = import_jsonl_recording(src, dest, start=start, end=end, city=city or settings.city, overwrite=overwrite)
    except (RecordingError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    m = rec.manifest
    typer.echo(
        f"{dest}: {m['snapshots']} snapshots, {m['status_rows']} status rows, {m['stations']} stations, "
        f"{m['information_versions']} information versions, {m['start']} .. {m['end']}"
    )


replay_app = typer.Typer(no_args_is_help=True, help="Serve a recording as a live GBFS feed on a virtual clock.")
app.add_typer(replay_app, name="replay")


@replay_app.command("serve")
def replay_serve(
    ctx: typer.Context,
    recording: Annotated[
        Path | None, typer.Option(help="Recording folder; default: recording_path, else the shipped slice.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port on 127.0.0.1 (0 = any free port).")] = None,
    speed: Annotated[
        float | None, typer.Option(help="Recorded seconds per real second (60: a minute a second).")
    ] = None,
    gbfs_version: Annotated[str | None, typer.Option("--gbfs-version", help="1.1 | 2.3 | 3.0")] = None,
    start: Annotated[str | None, typer.Option(help="Virtual start (ISO); default: the first snapshot.")] = None,
) -> None:
    """Serve gbfs.json and its feeds from a recording until Ctrl-C (control routes under /_replay/)."""
    import signal
    import threading

    from bikeshare.gbfs.recording import Recording, RecordingError, default_recording_path
    from bikeshare.gbfs.replay import ReplayServer

    settings = settings_of(ctx)
    path = recording or settings.recording_path or default_recording_path()
    try:
        opened = Recording.open(path)
        server = ReplayServer(
            opened,
            gbfs_version=gbfs_version or settings.replay_gbfs_version,
            speed=speed if speed is not None else settings.replay_speed,
            start=start,
            port=settings.replay_port if port is None else port,
        )
    except (RecordingError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        state = server.clock_state()
        typer.echo(
            f"serving {path} as GBFS {server.gbfs_version} at {server.discovery_url} "
            f"(speed {state['speed']:g}x, virtual start {state['now']}, Ctrl-C stops)"
        )
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo("replay server stopped")


weather_app = typer.Typer(no_args_is_help=True, help="Hourly weather from Meteostat 2.")
app.add_typer(weather_app, name="weather")


@weather_app.command("fetch")
def weather_fetch(
    ctx: typer.Context,
    start: Annotated[
        str | None, typer.Option(help="ISO date/time, UTC unless it has an offset; default: the lake's first status.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Exclusive end; default: the hour after the lake's last status.")
    ] = None,
    lat: Annotated[float | None, typer.Option(help="Centre latitude; default: mean of the current stations.")] = None,
    lon: Annotated[float | None, typer.Option(help="Centre longitude.")] = None,
) -> None:
    """Fetch hourly weather near the system's centre into the lake's `weather` table."""
    from bikeshare.lake.store import Lake
    from bikeshare.weather.job import fetch_and_store, parse_utc
    from bikeshare.weather.meteostat_source import MeteostatSource

    settings = settings_of(ctx)
    if not settings.weather_enabled:
        typer.echo("weather is disabled (weather_enabled=false); nothing fetched")
        return
    try:
        start_ts = parse_utc(start) if start else None
        end_ts = parse_utc(end) if end else None
        source = MeteostatSource.from_settings(settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        report = fetch_and_store(
            lake=lake, source=source, city=settings.city, start=start_ts, end=end_ts, lat=lat, lon=lon
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    where = f"({report.centre[0]:.4f}, {report.centre[1]:.4f})" if report.centre else "no centre"
    typer.echo(
        f"weather {report.start:%Y-%m-%dT%H:%M}Z..{report.end:%Y-%m-%dT%H:%M}Z near {where}: "
        f"{report.rows} hourly rows from station {report.weather_station or '-'}, {len(report.files)} files written"
    )


@weather_app.command("mirror")
def weather_mirror(
    dest: Annotated[Path, typer.Argument(help="Folder to write stations.db and hourly/<year>/<station>.csv.gz into.")],
    stations: Annotated[Path, typer.Option(help="CSV: id,name,country,region,latitude,longitude,elevation,timezone")],
    hourly: Annotated[Path, typer.Option(help="CSV: station,time,source and Meteostat parameters (temp, prcp, ...)")],
) -> None:
    """Build a local Meteostat mirror (set meteostat_mirror to its folder or its served URL)."""
    from bikeshare.weather.mirror import build_mirror_from_csv

    try:
        files = build_mirror_from_csv(dest, stations_csv=stations, hourly_csv=hourly)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"wrote {len(files)} files under {dest}")


# --- features and training -------------------------------------------------------------------
features_app = typer.Typer(no_args_is_help=True, help="The feature store: build the features table, EDA report.")
app.add_typer(features_app, name="features")


def _window_options(start: str | None, end: str | None) -> tuple[object, object]:
    from bikeshare.weather.job import parse_utc

    try:
        return (parse_utc(start) if start else None, parse_utc(end) if end else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@features_app.command("build")
def features_build(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option(help="First day (UTC ISO); default: the lake's first status.")] = None,
    end: Annotated[str | None, typer.Option(help="Last day (UTC ISO, inclusive); default: the last status.")] = None,
) -> None:
    """Compute features and labels into features/city=<city>/dt=YYYY-MM-DD/ (a rebuilt day replaces the old)."""
    import time

    from bikeshare.features.build import status_span, write_features
    from bikeshare.lake.store import Lake

    settings = settings_of(ctx)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    start_ts, end_ts = _window_options(start, end)
    started = time.perf_counter()
    try:
        first, last = status_span(lake=lake, city=settings.city)
        written = write_features(
            lake=lake, city=settings.city, start=start_ts or first, end=end_ts or last, settings=settings
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    elapsed = time.perf_counter() - started
    span = f"{written[0]}..{written[-1]}" if written else "none"
    typer.echo(f"features: {len(written)} day partitions written ({span}) in {elapsed:.1f} s")


@features_app.command("report")
def features_report(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for report.md and its PNG plots.")] = Path("reports/features"),
    start: Annotated[str | None, typer.Option(help="First slot (UTC ISO); default: all stored features.")] = None,
    end: Annotated[str | None, typer.Option(help="Last slot (UTC ISO).")] = None,
) -> None:
    """EDA report of the features table: distributions, correlations, label rates, leakage check."""
    from bikeshare.features.build import load_features
    from bikeshare.features.report import write_report
    from bikeshare.lake.store import Lake

    settings = settings_of(ctx)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    start_ts, end_ts = _window_options(start, end)
    frame = load_features(lake=lake, city=settings.city, start=start_ts, end=end_ts)
    if frame.empty:
        raise typer.BadParameter("no feature rows in the lake for this window: run `bikeshare features build` first")
    path = write_report(frame, out=out, lake=lake, settings=settings)
    typer.echo(f"report written to {path}")


@app.command()
def train(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(help="Target: bikes | docks.")],
    algo: Annotated[str, typer.Option(help="lightgbm | xgboost")] = "lightgbm",
    start: Annotated[str | None, typer.Option(help="First feature slot used (UTC ISO); default: all.")] = None,
    end: Annotated[str | None, typer.Option(help="Last feature slot used (UTC ISO).")] = None,
    test_start: Annotated[
        str | None, typer.Option(help="First test slot (UTC ISO); default: the last test_fraction of the span.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Artifacts folder; default under state_dir/training.")] = None,
    log: Annotated[bool, typer.Option(help="Log the run to MLflow and register the model.")] = True,
) -> None:
    """Train, calibrate and evaluate a model against persistence; log and register it in MLflow."""
    from bikeshare.features.build import load_features
    from bikeshare.lake.store import Lake
    from bikeshare.training.models import ALGOS
    from bikeshare.training.train import train_model

    settings = settings_of(ctx)
    if target not in ("bikes", "docks"):
        raise typer.BadParameter(f"{target!r} is not one of bikes, docks", param_hint="--target")
    if algo not in ALGOS:
        raise typer.BadParameter(f"{algo!r} is not one of {', '.join(ALGOS)}", param_hint="--algo")
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    start_ts, end_ts = _window_options(start, end)
    test_ts, _ = _window_options(test_start, None)
    frame = load_features(lake=lake, city=settings.city, start=start_ts, end=end_ts)
    if frame.empty:
        raise typer.BadParameter("no feature rows in the lake for this window: run `bikeshare features build` first")
    try:
        result = train_model(frame, target=target, settings=settings, algo=algo, test_start=test_ts, artifacts_dir=out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    for name, s in result.report.slices.items():
        typer.echo(
            f"{name:<10} model PR-AUC {s.model.pr_auc:.4f}  persistence {s.baseline.pr_auc:.4f}  "
            f"lift {s.pr_auc_lift:+.4f}  F1 {s.model.f1:.3f} vs {s.baseline.f1:.3f}  rows {s.model.rows:,}"
        )
    gap = result.report.overfit_gap
    typer.echo(
        f"threshold {result.report.decision_threshold:.4f}; train-validation PR-AUC gap {gap:.4f} "
        f"({'ok' if result.overfit_ok else 'OVERFIT'}; limit {settings.max_overfit_gap}); "
        f"artifacts in {result.artifacts['model_card'].parent}"
    )
    if log:
        from bikeshare.registry.client import RegistryUnavailable, open_client
        from bikeshare.registry.tracking import log_training_run

        try:
            logged = log_training_run(
                client=open_client(settings), result=result, settings=settings, input_example=frame.head(5)
            )
        except RegistryUnavailable as exc:
            raise _registry_failure(exc) from exc
        version = logged.version.version if logged.version else "-"
        typer.echo(f"logged run {logged.run_id}; registered version {version}")
        if logged.version is not None:
            from datetime import UTC, datetime

            from bikeshare.monitoring.model_baselines import store_baselines, training_baselines
            from bikeshare.registry.client import model_name

            baselines = training_baselines(
                frame, bundle=result.bundle, split=result.split, target=target, settings=settings
            )
            try:
                stored = store_baselines(
                    lake=lake,
                    baselines=baselines,
                    city=settings.city,
                    model_name=model_name(settings.city, target),
                    model_version=str(version),
                    target=target,
                    created_at=datetime.now(UTC),
                    client=open_client(settings),
                    run_id=logged.run_id,
                )
            except RegistryUnavailable as exc:
                raise _registry_failure(exc) from exc
            typer.echo(
                f"drift baselines of {stored.features} columns stored with version {version} "
                f"(lake feature_baselines; run artifact {stored.artifact})"
            )


# --- multi-horizon forecasts (15..120 min) ------------------------------------------------------
forecast_app = typer.Typer(no_args_is_help=True, help="The multi-horizon forecast model: train, gate, promote.")
app.add_typer(forecast_app, name="forecast")


@forecast_app.command("train")
def forecast_train(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option(help="First feature slot used (UTC ISO); default: all.")] = None,
    end: Annotated[str | None, typer.Option(help="Last feature slot used (UTC ISO).")] = None,
    test_start: Annotated[str | None, typer.Option(help="First test slot (UTC ISO).")] = None,
    out: Annotated[Path | None, typer.Option(help="Artifacts folder; default under state_dir/training.")] = None,
    log: Annotated[bool, typer.Option(help="Log the run to MLflow and register bikeshare-<city>-forecast.")] = True,
) -> None:
    """Train the forecast family (horizon as a feature) and print its per-horizon evaluation against persistence."""
    from bikeshare.features.build import load_features
    from bikeshare.lake.store import Lake
    from bikeshare.registry.forecast import forecast_gate
    from bikeshare.training.forecast import train_forecast

    settings = settings_of(ctx)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    start_ts, end_ts = _window_options(start, end)
    test_ts, _ = _window_options(test_start, None)
    frame = load_features(lake=lake, city=settings.city, start=start_ts, end=end_ts)
    if frame.empty:
        raise typer.BadParameter("no feature rows in the lake for this window: run `bikeshare features build` first")
    try:
        result = train_forecast(frame, settings=settings, test_start=test_ts, artifacts_dir=out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(result.report.table())
    verdict = forecast_gate(result.report, horizons=settings.forecast_horizons_min)
    typer.echo(f"gate: {'pass' if verdict.passed else 'FAIL ' + ', '.join(c.name for c in verdict.failed)}")
    if log:
        from bikeshare.registry.client import RegistryUnavailable, open_client
        from bikeshare.registry.forecast import log_forecast_run

        try:
            logged = log_forecast_run(
                client=open_client(settings), result=result, settings=settings, input_example=frame.head(5)
            )
        except RegistryUnavailable as exc:
            raise _registry_failure(exc) from exc
        typer.echo(
            f"logged run {logged.run_id}; registered version {logged.version.version if logged.version else '-'}"
        )


@forecast_app.command("promote")
def forecast_promote(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Alias to move: staging | production.")],
    note: Annotated[str, typer.Option(help="Why: kept in the audit history and on the version.")],
    version: Annotated[str | None, typer.Option(help="Model version; default: the latest.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Move the alias even if checks fail ('forced').")] = False,
) -> None:
    """Gate the forecast model per horizon (vs persistence) and move the alias if it passes (exit 1 if refused)."""
    from bikeshare.lake.store import Lake
    from bikeshare.registry.client import ALIASES, ModelNotFoundError, RegistryUnavailable, open_client
    from bikeshare.registry.forecast import promote_forecast

    settings = settings_of(ctx)
    _check_choice(to, ALIASES, "--to")
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        outcome = promote_forecast(
            client=open_client(settings),
            lake=lake,
            settings=settings,
            alias=to,
            note=note,
            version=version,
            force=force,
        )
    except (RegistryUnavailable, ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        raise _registry_failure(exc) from exc
    if outcome.verdict is not None:
        typer.echo(outcome.verdict.explain())
    typer.echo(outcome.message)
    if outcome.verdict is not None and not outcome.verdict.passed and not outcome.moved:
        raise typer.Exit(code=1)


# --- registry: promotion gate, rollback, model versions ------------------------------------------
ALIAS_HELP = "Alias to move: staging | production."
TARGET_HELP = "Target: bikes | docks."


def _registry_failure(exc: Exception) -> typer.Exit:
    """Print why a registry command could not run; exit 3 if the store is unreachable, else 2."""
    from bikeshare.registry.client import RegistryUnavailable

    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=3 if isinstance(exc, RegistryUnavailable) else 2)


def _check_choice(value: str, choices: tuple[str, ...], hint: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=hint)
    return value


@app.command()
def promote(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(help=TARGET_HELP)],
    to: Annotated[str, typer.Option("--to", help=ALIAS_HELP)],
    note: Annotated[str, typer.Option(help="Why: kept in the audit history and on the version.")],
    version: Annotated[
        str | None,
        typer.Option(help="Model version; default: the staging holder for --to production, else the latest."),
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who promotes; default: the OS user.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Move the alias even if checks fail (e.g. staging's online hours); recorded as 'forced'."
        ),
    ] = False,
) -> None:
    """Run the gate on a model version and move the alias if it passes (exit 1 when refused).

    --to production also needs staging's online quality: staging_min_online_hours of joined
    predictions meeting the KPIs and no worse than production's over the same hours.
    """
    from bikeshare.lake.store import Lake
    from bikeshare.registry.client import ALIASES, ModelNotFoundError, RegistryUnavailable, open_client
    from bikeshare.registry.promotion import PromotionError, lake_window_evaluator
    from bikeshare.registry.promotion import promote as run_promotion
    from bikeshare.training.bundle import TARGETS

    settings = settings_of(ctx)
    _check_choice(target, TARGETS, "--target")
    _check_choice(to, ALIASES, "--to")
    if force and not note.strip():
        raise typer.BadParameter("--force needs a --note saying why the gate is overridden", param_hint="--note")
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        client = open_client(settings)
        outcome = run_promotion(
            client=client,
            lake=lake,
            settings=settings,
            target=target,
            alias=to,
            note=note,
            version=version,
            actor=actor,
            evaluator=lake_window_evaluator(lake=lake, settings=settings),
            force=force,
        )
    except (RegistryUnavailable, ModelNotFoundError, PromotionError, FileNotFoundError, ValueError) as exc:
        raise _registry_failure(exc) from exc
    typer.echo(outcome.message)
    if outcome.verdict is not None and not outcome.verdict.passed and not outcome.moved:
        raise typer.Exit(code=1)


@app.command()
def rollback(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(help=TARGET_HELP)],
    to: Annotated[str, typer.Option("--to", help="Alias to move back: staging | production.")],
    note: Annotated[str, typer.Option(help="Why: kept in the audit history.")] = "",
    actor: Annotated[str | None, typer.Option(help="Who rolls back; default: the OS user.")] = None,
) -> None:
    """Move an alias back to its previous holder, as the audit history records it."""
    from bikeshare.lake.store import Lake
    from bikeshare.registry.client import ALIASES, ModelNotFoundError, RegistryUnavailable, open_client
    from bikeshare.registry.promotion import PromotionError
    from bikeshare.registry.promotion import rollback as run_rollback
    from bikeshare.training.bundle import TARGETS

    settings = settings_of(ctx)
    _check_choice(target, TARGETS, "--target")
    _check_choice(to, ALIASES, "--to")
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        outcome = run_rollback(
            client=open_client(settings), lake=lake, settings=settings, target=target, alias=to, note=note, actor=actor
        )
    except (RegistryUnavailable, ModelNotFoundError, PromotionError, ValueError) as exc:
        raise _registry_failure(exc) from exc
    typer.echo(outcome.message)


models_app = typer.Typer(no_args_is_help=True, help="Registered model versions and their promotion history.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(help=TARGET_HELP)] = "bikes",
) -> None:
    """Versions of bikeshare-<city>-<target>: aliases, test PR-AUC (all / onsets) and gate verdicts."""
    from bikeshare.registry.client import ModelNotFoundError, RegistryUnavailable, open_client
    from bikeshare.registry.promotion import version_table

    settings = settings_of(ctx)
    try:
        frame = version_table(open_client(settings), settings=settings, target=target)
    except (RegistryUnavailable, ModelNotFoundError) as exc:
        raise _registry_failure(exc) from exc
    typer.echo(frame.to_string(index=False) if len(frame) else "(no versions)")


@models_app.command("history")
def models_history(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
) -> None:
    """The promotion audit (the lake's `promotions` table), oldest first."""
    from bikeshare.lake.store import Lake
    from bikeshare.registry.audit import read_events
    from bikeshare.registry.client import model_name

    settings = settings_of(ctx)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    name = model_name(settings.city, target) if target else None
    frame = read_events(lake, city=settings.city, model_name=name)
    columns = ["at", "actor", "model_name", "version", "alias", "action", "previous_version", "verdict", "note"]
    typer.echo(frame[columns].to_string(index=False) if len(frame) else "(no promotions recorded)")


@models_app.command("export")
def models_export(
    ctx: typer.Context,
    dest: Annotated[Path, typer.Argument(help="Folder to write <target>/ bundles into (e.g. for /opt/ml/model).")],
    alias: Annotated[str, typer.Option(help="Alias whose versions to export: staging | production.")] = "production",
) -> None:
    """Write the bundles that hold an alias (bikes and docks) as a model folder `bikeshare serve --model-dir` reads."""
    from bikeshare.registry.client import ALIASES, ModelNotFoundError, RegistryUnavailable, open_client
    from bikeshare.serving.models import export_alias

    settings = settings_of(ctx)
    _check_choice(alias, ALIASES, "--alias")
    try:
        written = export_alias(open_client(settings), settings=settings, alias=alias, dest=dest)
    except (RegistryUnavailable, ModelNotFoundError) as exc:
        raise _registry_failure(exc) from exc
    for target, record in written.items():
        typer.echo(f"{dest / target}: {record['name']} v{record['version']} ({alias})")


@app.command()
def serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port; default serve_port (8080).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface; default serve_host.")] = None,
    alias: Annotated[
        str | None, typer.Option(help="Alias answering by default: production | staging (serve_alias).")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes (serve_workers).")] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="Serve bundle folders <dir>/bikes and <dir>/docks instead of registry aliases."),
    ] = None,
) -> None:
    """Run the endpoint: SageMaker /ping + /invocations and the product API (exit 3: registry unreachable)."""
    from bikeshare.registry.client import ALIASES, RegistryUnavailable
    from bikeshare.serving.server import build_provider, run_server

    settings = settings_of(ctx)
    if alias is not None:
        settings = settings.model_copy(update={"serve_alias": _check_choice(alias, ALIASES, "--alias")})
    workers = workers or settings.serve_workers
    try:
        # one worker serves the provider loaded here; several check the source and load their own
        provider = build_provider(settings, model_dir=model_dir) if workers == 1 else None
        code = run_server(
            settings=settings, host=host, port=port, workers=workers, model_dir=model_dir, provider=provider
        )
    except RegistryUnavailable as exc:
        typer.echo(f"error: cannot start the endpoint: {exc}", err=True)
        raise typer.Exit(code=3) from exc
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: cannot start the endpoint: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if code:
        raise typer.Exit(code=code)


alerts_app = typer.Typer(no_args_is_help=True, help="Alerts: list, acknowledge, and check the rules file.")
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Include resolved alerts.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """Alerts that are pending, firing or acknowledged (with --all: resolved ones too)."""
    from bikeshare.lake.store import Lake
    from bikeshare.monitoring.store import AlertStore, alert_frame

    settings = settings_of(ctx)
    store = AlertStore(Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url), city=settings.city)
    frame = alert_frame(store.alerts(include_resolved=show_all))
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

    from bikeshare.lake.store import Lake
    from bikeshare.monitoring.alerts import AlertStateError
    from bikeshare.monitoring.store import AlertNotFoundError, AlertStore, ack_alert

    settings = settings_of(ctx)
    store = AlertStore(Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url), city=settings.city)
    try:
        event = ack_alert(store=store, alert_id=alert_id, by=by or getpass.getuser())
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


# ---- monitor job and drills (bikeshare.monitoring) -------------------------------------------


@app.command()
def monitor(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run one evaluation and exit.")] = False,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="Endpoint whose /metrics is scraped (default: monitor_endpoint_url)."),
    ] = None,
    no_endpoint: Annotated[bool, typer.Option("--no-endpoint", help="Do not scrape the endpoint.")] = False,
    replay_clock: Annotated[
        str | None, typer.Option("--replay-clock", help="Take 'now' from the replay server at this base URL.")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="With --once: evaluate as of this time (ISO, UTC).")] = None,
) -> None:
    """Measure data quality, drift, model quality and system health every monitor_interval_min; raise alerts."""
    from bikeshare.inference.schedule import job_clock, run_until_signal
    from bikeshare.lake.store import Lake
    from bikeshare.monitoring.job import endpoint_source, run_monitor, run_monitor_loop
    from bikeshare.monitoring.rules import RulesFileError, load_rules

    settings = settings_of(ctx)
    try:
        clock = job_clock(replay_url=replay_clock, at=at, once=once)
        rules = load_rules(settings.alert_rules_path)
    except (ValueError, RulesFileError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    source = None if no_endpoint else endpoint_source(settings, endpoint)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    if once:
        result = run_monitor(lake=lake, settings=settings, now=clock(), endpoint_metrics_source=source, rules=rules)
        typer.echo(result.summary())
        return
    typer.echo(
        f"monitoring {lake.root} every {settings.monitor_interval_min} min"
        + (f", scraping {source.url}/metrics" if source else "")
        + " (Ctrl-C stops)"
    )
    runs = run_until_signal(
        lambda stop: run_monitor_loop(
            lake=lake,
            settings=settings,
            clock=clock,
            stop=stop,
            endpoint_metrics_source=source,
            on_result=lambda r: typer.echo(r.summary()),
        )
    )
    typer.echo(f"stopped after {runs} runs")


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
    from bikeshare.monitoring.drills import DrillPlan, drill_in_workspace

    settings = settings_of(ctx)
    start = options.pop("start", None)
    if start is not None:
        from bikeshare.weather.job import parse_utc

        try:
            options["start"] = parse_utc(str(start))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--start") from exc
    if workspace is not None and workspace.exists() and any(workspace.iterdir()):
        raise typer.BadParameter(f"{workspace} is not empty: a drill needs a new folder", param_hint="--workspace")
    try:
        plan = DrillPlan.from_settings(kind, settings, **options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"drill {kind}: {plan.describe_fault()}; alert expected from {', '.join(plan.expected_rules)}")
    try:
        report, kept = drill_in_workspace(
            plan,
            base_settings=settings,
            workspace=workspace,
            keep=keep,
            progress=lambda m: typer.echo(f"  {m}"),
            on_cycle=lambda c: typer.echo(f"  evaluation {c.index} {c.evaluated_at:%H:%M}Z ({c.phase}): {c.watched}"),
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


rebalance_app = typer.Typer(no_args_is_help=True, help="Rebalancing plans for the trucks (OR-Tools).")
app.add_typer(rebalance_app, name="rebalance")


@rebalance_app.command("plan")
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
    from bikeshare.lake.store import Lake
    from bikeshare.rebalancing.fleet import Fleet
    from bikeshare.rebalancing.forecast import FlowProfileForecaster
    from bikeshare.rebalancing.inputs import latest_status_time, load_history, load_stations, system_timezone
    from bikeshare.rebalancing.plan import PlanParams, make_plan
    from bikeshare.rebalancing.storage import plan_exists, write_plan
    from bikeshare.weather.job import parse_utc

    settings = settings_of(ctx)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        params = PlanParams.from_settings(
            settings, horizon_min=horizon_min, time_limit_s=time_limit_s, truck_capacity=truck_capacity
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if as_of:
        try:
            when = parse_utc(as_of)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--as-of") from exc
    else:
        latest = latest_status_time(lake, city=settings.city)
        if latest is None:
            raise typer.BadParameter(f"the lake {settings.lake_uri} has no station_status for city {settings.city!r}")
        when = latest
    if not overwrite and plan_exists(lake, city=settings.city, as_of=when):
        typer.echo(f"a plan for {when:%Y-%m-%dT%H:%M}Z is already stored (use --overwrite to replace it)")
        return
    timezone = system_timezone(lake, city=settings.city)
    if timezone is None:
        typer.echo("no system_information time zone in the lake; the shift window is read in UTC")
    fleet = Fleet.from_settings(settings, timezone=timezone or "UTC", trucks=trucks, capacity=truck_capacity)
    stations = load_stations(
        lake,
        city=settings.city,
        as_of=when,
        max_age_min=settings.max_snapshot_age_min,
        region_ids=settings.rebalance_region_ids,
    )
    if stations.empty:
        raise typer.BadParameter(f"no fresh, active station at {when.isoformat()} in the lake for {settings.city!r}")
    history = load_history(
        lake,
        city=settings.city,
        as_of=when,
        days=settings.rebalance_history_days,
        step_min=settings.grid_minutes,
        max_age_min=settings.max_snapshot_age_min,
    )
    # Interim forecaster until the multi-horizon models write forecasts (docs/optimization_extension.md).
    forecaster = FlowProfileForecaster(
        history, timezone=fleet.timezone, step_min=settings.grid_minutes, lookback_days=settings.rebalance_history_days
    )
    step = settings.grid_minutes
    horizons = list(range(step, params.need.horizon_min + 1, step))
    forecast = forecaster.forecast(stations, as_of=when, horizons_min=horizons)
    plan = make_plan(stations, forecast, fleet=fleet, params=params, as_of=when, forecaster=forecaster.name)
    path = write_plan(lake, plan, city=settings.city, overwrite=overwrite)
    s = plan.summary
    typer.echo(
        f"plan {when:%Y-%m-%dT%H:%M}Z ({plan.status}, solved in {plan.solve_s:.1f} s): {len(stations)} stations, "
        f"{s.stations_in_need} in need; expected stockout station-minutes over {params.need.horizon_min} min: "
        f"no action {s.stockout_min_no_action:.0f}, greedy {s.stockout_min_greedy:.0f}, plan {s.stockout_min_plan:.0f}"
    )
    routes = plan.routes()
    for truck in range(1, fleet.trucks + 1):
        stops = routes[routes["truck"] == truck]
        legs = ", ".join(
            f"{r.arrival:%H:%M} {r.action} {r.quantity} at {r.name}" for r in stops.itertuples(index=False)
        )
        typer.echo(f"  truck {truck}: {legs or 'stays at the depot'}")
    typer.echo(f"stored {path}" if path else "a plan for this minute is already stored (use --overwrite to replace it)")


# ---- operations dashboard (bikeshare.dashboard) ----------------------------------------------


@app.command()
def dashboard(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port on 127.0.0.1; default dashboard_port (8501).")
    ] = None,
) -> None:
    """Run the operations dashboard (Streamlit) on 127.0.0.1 until Ctrl-C."""
    from bikeshare.dashboard.launch import run_dashboard

    settings = settings_of(ctx)
    port = settings.dashboard_port if port is None else port
    typer.echo(
        f"dashboard on http://127.0.0.1:{port} (lake {settings.lake_uri}, city {settings.city}); Ctrl-C stops it"
    )
    code = run_dashboard(settings, port=port)
    if code:
        raise typer.Exit(code=code)


# ---- batch inference and actuals (bikeshare.inference) ---------------------------------------


@app.command()
def infer(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Score one batch and exit (status 1 when it failed).")] = False,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Endpoint base URL; default: endpoint_url (serve_host:serve_port).")
    ] = None,
    shadow: Annotated[
        list[str] | None,
        typer.Option("--shadow", help="Also score this alias in shadow (repeatable); default: infer_shadow_aliases."),
    ] = None,
    replay_clock: Annotated[
        str | None, typer.Option("--replay-clock", help="Take 'now' from the replay server at this base URL.")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="With --once: score the slot of this time (ISO, UTC).")] = None,
) -> None:
    """Score all active stations every infer_interval_min through the endpoint into inference/ (Ctrl-C stops)."""
    import contextlib

    from bikeshare.inference.batch import alias_clients, check_aliases, run_inference_batch, run_inference_loop
    from bikeshare.inference.endpoint_client import EndpointClient
    from bikeshare.inference.schedule import job_clock, run_until_signal
    from bikeshare.lake.store import Lake

    settings = settings_of(ctx)
    if endpoint is not None:
        settings = settings.model_copy(update={"endpoint_url": endpoint})
    try:
        aliases = check_aliases([settings.serve_alias, *(settings.infer_shadow_aliases if shadow is None else shadow)])
        client = EndpointClient.from_settings(settings)
        routes = alias_clients(settings, aliases)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        clock = job_clock(replay_url=replay_clock, at=at, once=once)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    with client, contextlib.ExitStack() as stack:
        for route in routes.values():
            stack.enter_context(route)
        if once:
            record = run_inference_batch(
                lake=lake, endpoint=client, settings=settings, now=clock(), aliases=aliases, alias_endpoints=routes
            )
            typer.echo(record.summary())
            if record.status == "failed":
                raise typer.Exit(1)
            return
        typer.echo(
            f"scoring {', '.join(aliases)} through {client.invocations_url} every {settings.infer_interval_min} min "
            f"into {lake.root} (Ctrl-C stops)"
        )
        runs = run_until_signal(
            lambda stop: run_inference_loop(
                lake=lake,
                endpoint=client,
                settings=settings,
                clock=clock,
                stop=stop,
                aliases=aliases,
                alias_endpoints=routes,
                on_record=lambda r: typer.echo(r.summary()),
            )
        )
    typer.echo(f"stopped after {runs} batches")


@app.command()
def actuals(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Join once and exit.")] = False,
    replay_clock: Annotated[
        str | None, typer.Option("--replay-clock", help="Take 'now' from the replay server at this base URL.")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="With --once: join as of this time (ISO, UTC).")] = None,
) -> None:
    """Join predictions whose horizon has passed with the observed counts into monitoring/quality/ (Ctrl-C stops)."""
    from bikeshare.inference.actuals import run_actuals, run_actuals_loop
    from bikeshare.inference.schedule import job_clock, run_until_signal
    from bikeshare.lake.store import Lake

    settings = settings_of(ctx)
    try:
        clock = job_clock(replay_url=replay_clock, at=at, once=once)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    if once:
        typer.echo(run_actuals(lake=lake, settings=settings, now=clock()).summary())
        return
    typer.echo(f"joining actuals every {settings.actuals_interval_min} min in {lake.root} (Ctrl-C stops)")
    runs = run_until_signal(
        lambda stop: run_actuals_loop(
            lake=lake, settings=settings, clock=clock, stop=stop, on_report=lambda r: typer.echo(r.summary())
        )
    )
    typer.echo(f"stopped after {runs} runs")


# ---- loop runner, training pipeline, demo (bikeshare.orchestration) --------------------------


@app.command("pipeline")
def pipeline_command(
    ctx: typer.Context,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Target to train (repeatable); default: bikes and docks.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Train on features up to this time (UTC ISO); default: all.")] = None,
) -> None:
    """Features -> train both targets -> evaluate -> register -> gate -> staging; idempotent.

    Exit 0: every target's version holds staging; 1: a gate refused; 2: no usable data; 3: registry unreachable.
    """
    from bikeshare.lake.store import Lake
    from bikeshare.orchestration.pipeline import PipelineError, run_pipeline
    from bikeshare.registry.client import ModelNotFoundError, RegistryUnavailable, open_client
    from bikeshare.training.bundle import TARGETS

    settings = settings_of(ctx)
    targets = [_check_choice(t, TARGETS, "--target") for t in (target or TARGETS)]
    _, end_ts = _window_options(None, end)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        report = run_pipeline(
            lake=lake,
            client=open_client(settings),
            settings=settings,
            targets=targets,
            end=end_ts,  # type: ignore[arg-type]
            progress=typer.echo,
        )
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    except (RegistryUnavailable, ModelNotFoundError) as exc:
        raise _registry_failure(exc) from exc
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
        str | None, typer.Option("--jobs", help="Comma-separated jobs to run; default: run_jobs (all six).")
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
    import threading

    from bikeshare.inference.schedule import run_until_signal
    from bikeshare.lake.store import Lake
    from bikeshare.orchestration.clocks import JobClock, ReplayClock, WallClock
    from bikeshare.orchestration.jobs import LoopEndpoints, check_jobs, run_loop
    from bikeshare.orchestration.records import JobRun
    from bikeshare.orchestration.runner import RunnerReport
    from bikeshare.weather.job import parse_utc

    settings = settings_of(ctx)
    try:
        names = check_jobs([n.strip() for n in jobs.split(",") if n.strip()]) if jobs else None
        stop_at = parse_utc(until) if until else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if until_end and replay_clock is None:
        raise typer.BadParameter("--until-end needs --replay-clock", param_hint="--until-end")
    clock: JobClock
    if replay_clock is not None:
        replay = ReplayClock(replay_clock)
        try:
            reading = replay.read()
        except Exception as exc:
            raise typer.BadParameter(f"cannot read the replay clock at {replay_clock}: {exc}") from exc
        if until_end:
            stop_at = reading.end if stop_at is None else min(stop_at, reading.end)
        clock = replay
    else:
        clock = WallClock()
    feed_url = feed or (f"{replay_clock.rstrip('/')}/gbfs.json" if replay_clock else settings.feed_url)
    if not feed_url:
        raise typer.BadParameter("no feed: pass --feed or set feed_url", param_hint="--feed")
    endpoints = LoopEndpoints(feed_url=feed_url, endpoint_url=endpoint or settings.resolved_endpoint_url)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)

    def show(run: JobRun) -> None:
        if not quiet:
            typer.echo(
                f"{run.started_at:%Y-%m-%d %H:%M:%S}Z {run.job:<8} {run.status:<7} {run.duration_s:6.2f}s "
                f"lag {run.lag_s:5.0f}s {run.error or ''}".rstrip()
            )

    typer.echo(
        f"running {', '.join(names or settings.run_jobs)} on the {clock.name} clock: feed {feed_url}, "
        f"endpoint {endpoints.endpoint_url}, lake {lake.root} (Ctrl-C stops)"
    )
    reports: list[RunnerReport] = []

    def loop(stop: threading.Event) -> int:
        reports.append(
            run_loop(
                settings=settings,
                lake=lake,
                clock=clock,
                endpoints=endpoints,
                stop=stop,
                names=names,
                until=stop_at,
                on_run=show,
            )
        )
        return 0

    try:
        run_until_signal(loop)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(reports[0].summary() if reports else "runner did not start")


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
    import threading

    from bikeshare.orchestration.demo import DemoError, run_demo, signals_set

    settings = settings_of(ctx)
    updates: dict[str, object] = {}
    if workspace is not None:
        updates["demo_dir"] = workspace
    if speed is not None:
        updates["demo_speed"] = speed
    if live_hours is not None:
        updates["demo_live_hours"] = live_hours
    settings = settings.model_copy(update=updates)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    try:
        with signals_set(stop):
            run_demo(base=settings, reset=reset, serve=not no_serve, stop=stop, say=typer.echo)
    except DemoError as exc:
        typer.echo(f"demo stopped: {exc}", err=True)
        raise typer.Exit(code=1) from exc
