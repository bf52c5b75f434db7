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

    settings = settings_of(ctx)
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    con = lake.connect()
    try:
        frame = con.sql(query).df()
    except duckdb.Error as exc:
        raise typer.BadParameter(str(exc), param_hint="QUERY") from exc
    if fmt == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        typer.echo(frame.to_json(orient="records", date_format="iso"))
    else:
        typer.echo(frame.to_string(index=False) if len(frame) else "(no rows)")
