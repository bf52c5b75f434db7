"""Feed commands: recordings, the replay server, and the weather feed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikeshare.cli.app import app, city_of, city_settings, settings_of, window_options

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
    timezone: Annotated[
        str | None,
        typer.Option(help="IANA time zone for an archive without system_information; default: the city's setting."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing, non-empty DEST.")] = False,
) -> None:
    """Convert a JSON Lines GBFS recording (../shared/data format) into a recording folder."""
    from bikeshare.gbfs.recording import RecordingError, import_jsonl_recording

    key = city or settings_of(ctx).city
    zone = timezone or city_settings(ctx, key).timezone
    try:
        rec = import_jsonl_recording(src, dest, start=start, end=end, city=key, overwrite=overwrite, timezone=zone)
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
    from bikeshare.gbfs.recording import Recording, RecordingError, default_recording_path
    from bikeshare.gbfs.replay import ReplayServer
    from bikeshare.orchestration.signals import stop_on_signals

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
    with stop_on_signals() as stop:
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
    from bikeshare.weather.job import fetch_and_store
    from bikeshare.weather.meteostat_source import MeteostatSource

    city = city_of(ctx)
    settings = city.settings
    if not settings.weather_enabled:
        typer.echo("weather is disabled (weather_enabled=false); nothing fetched")
        return
    start_ts, end_ts = window_options(start, end)
    try:
        source = MeteostatSource.from_settings(settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        report = fetch_and_store(
            lake=city.lake.lake, source=source, city=city.key, start=start_ts, end=end_ts, lat=lat, lon=lon
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
