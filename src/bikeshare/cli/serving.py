"""Serving commands: the scoring endpoint and the operations dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikeshare.cli.app import app, fleet_options, resources_of, settings_of
from bikeshare.enums import Alias


@app.command()
def serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port; default serve_port (8080).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface; default serve_host.")] = None,
    alias: Annotated[
        Alias | None, typer.Option(help="Alias answering by default: production | staging (serve_alias).")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes (serve_workers).")] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="Serve bundle folders <dir>/bikes and <dir>/docks instead of registry aliases."),
    ] = None,
) -> None:
    """Run the endpoint: SageMaker /ping + /invocations and the product API (exit 3: registry unreachable)."""
    from bikeshare.registry.client import RegistryUnavailable
    from bikeshare.serving.server import build_provider, run_server

    settings = settings_of(ctx)
    if alias is not None:
        settings = settings.with_values(serve_alias=alias.value)
    workers = workers or settings.serve_workers
    try:
        # one worker serves the provider loaded here; several check the source and load their own
        resources = resources_of(ctx, settings=settings)
        provider = build_provider(settings, model_dir=model_dir, resources=resources) if workers == 1 else None
        code = run_server(
            settings=settings,
            host=host,
            port=port,
            workers=workers,
            model_dir=model_dir,
            provider=provider,
            resources=resources,
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


@app.command()
def dashboard(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port on 127.0.0.1; default dashboard_port (8501).")
    ] = None,
) -> None:
    """Run the operations dashboard (Streamlit) on 127.0.0.1 until Ctrl-C."""
    from bikeshare.dashboard.launch import run_dashboard

    fleet_file, city = fleet_options(ctx)
    settings = settings_of(ctx)
    if city is not None:  # --city: the city the picker starts on
        settings = settings.with_values(city=city)
    port = settings.dashboard_port if port is None else port
    typer.echo(
        f"dashboard on http://127.0.0.1:{port} (lake {settings.lake_uri}, city {settings.city}); Ctrl-C stops it"
    )
    code = run_dashboard(settings, port=port, fleet_file=fleet_file)
    if code:
        raise typer.Exit(code=code)
