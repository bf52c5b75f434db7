"""The Typer app, the settings built once by its callback, and the process's :class:`Resources`.

Stage modules (and the resources builder, which opens the lake) are imported inside the commands
so that ``bikeshare --help`` stays fast.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.exceptions import TyperException

from bikeshare.fleet import FLEET_ENV_VAR
from bikeshare.settings import Settings, load_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from bikeshare.fleet import Fleet
    from bikeshare.orchestration.clocks import JobClock
    from bikeshare.orchestration.records import JobRunRecorder
    from bikeshare.orchestration.runner import Job, RunnerReport
    from bikeshare.resources import CityContext, Resources

app = typer.Typer(no_args_is_help=True, add_completion=False, help="MLOps loop for bike-share stock-out prediction.")


@dataclass
class CliState:
    """What the callback keeps on the root context: the settings, and the resources once built."""

    settings: Settings
    fleet_file: Path | None = None
    city: str | None = None
    resources: Resources | None = None
    fanning_out: bool = False  # an each_city command is running once per city of the fleet


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file of settings (or set BIKESHARE_CONFIG).")
    ] = None,
    fleet: Annotated[
        Path | None,
        typer.Option("--fleet", envvar=FLEET_ENV_VAR, help="TOML fleet file: one [[cities]] table per city."),
    ] = None,
    city: Annotated[
        str | None, typer.Option("--city", help="The fleet's city a one-city command acts on (key).")
    ] = None,
) -> None:
    """Settings come from BIKESHARE_* variables, .env, and an optional TOML config file; the cities
    from an optional fleet file (else the city setting alone)."""
    ctx.obj = CliState(load_settings(config), fleet_file=fleet, city=city)


def _state(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    if not isinstance(state, CliState):  # pragma: no cover - the callback always runs first
        raise RuntimeError("settings were not initialised")
    return state


def settings_of(ctx: typer.Context) -> Settings:
    """The settings built once by the app callback."""
    return _state(ctx).settings


def resources_of(
    ctx: typer.Context,
    *,
    settings: Settings | None = None,
    replay_url: str | None = None,
    clock: JobClock | None = None,
) -> Resources:
    """The adapters of this process, built on first use from ``settings`` (default: the callback's)
    and closed when the command ends. A command passes a changed setting as
    ``settings_of(ctx).with_values(...)``, and a replay server or fixed clock, on that first call."""
    from bikeshare.resources import Resources

    state = _state(ctx)
    if state.resources is None:
        base = settings or state.settings
        state.resources = Resources.build(base, replay_url=replay_url, clock=clock, fleet=fleet_of(state, base))
        ctx.find_root().call_on_close(state.resources.close)
    return state.resources


def fleet_of(state: CliState, base: Settings) -> Fleet | None:
    """The ``--fleet`` file's cities over ``base``; a bad file is a usage error naming what is wrong."""
    if state.fleet_file is None:
        return None
    from bikeshare.fleet import FleetError, load_fleet

    try:
        return load_fleet(state.fleet_file, base)
    except FleetError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fleet") from None


def fleet_options(ctx: typer.Context) -> tuple[Path | None, str | None]:
    """The ``--fleet`` file and the ``--city`` key given to the app (either may be None)."""
    state = _state(ctx)
    return state.fleet_file, state.city


def city_settings(ctx: typer.Context, key: str) -> Settings:
    """City ``key``'s settings: its table of the ``--fleet`` file, else the settings with ``city=key``
    (for a command that needs a city's settings but no adapters, such as a recording import)."""
    state = _state(ctx)
    fleet = fleet_of(state, state.settings)
    if fleet is not None and key in fleet.keys:
        return fleet.settings_of(key)
    return state.settings if key == state.settings.city else state.settings.with_values(city=key)


def city_of(ctx: typer.Context, **resources: Any) -> CityContext:
    """The one city a command acts on: ``--city`` (or the fleet's only city); ``resources`` go to
    :func:`resources_of`. An unknown or missing ``--city`` is a usage error naming the fleet's cities."""
    from bikeshare.fleet import FleetError

    try:
        return resources_of(ctx, **resources).city(_state(ctx).city)
    except FleetError as exc:
        raise typer.BadParameter(str(exc), param_hint="--city") from None


def each_city(command: Callable[..., None]) -> Callable[..., None]:
    """A one-city command that, in a fleet and without ``--city``, runs once per city: each run's
    ``city_of`` is that city, one city's failure is printed and the others still run, and the exit
    status is the worst of them. With ``--city`` or a fleet of one it is the plain command."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        ctx = kwargs.get("ctx") or next(a for a in args if isinstance(a, typer.Context))  # every command takes ctx
        state = _state(ctx)
        fleet = fleet_of(state, state.settings)
        if state.city is not None or fleet is None or len(fleet.cities) == 1:
            command(*args, **kwargs)
            return
        worst = 0
        for key in fleet.keys:
            typer.echo(f"== {key} ==")
            state.city, state.fanning_out = key, True
            try:
                command(*args, **kwargs)
            except typer.Exit as exc:
                worst = max(worst, exc.exit_code)
            except TyperException as exc:  # a usage error (BadParameter, ...) of this city
                exc.show()
                worst = max(worst, getattr(exc, "exit_code", 2))
            except Exception as exc:  # one city's failure never stops the others
                typer.echo(f"error: city {key}: {type(exc).__name__}: {exc}", err=True)
                worst = max(worst, 1)
            finally:
                state.city, state.fanning_out = None, False
        if worst:
            raise typer.Exit(worst)

    return run


def run_one_job(ctx: typer.Context, city: CityContext, build: Callable[[JobRunRecorder], Job]) -> RunnerReport:
    """The loop of a job command without ``--once``: the runner with ``city``'s one job (first run at
    once, each run's summary printed) on the resources' clock, until SIGINT/SIGTERM. In a fleet of
    several, the loop is for one ``--city``; ``bikeshare run --jobs`` loops every city."""
    from bikeshare.orchestration.jobs import run_jobs
    from bikeshare.orchestration.signals import stop_on_signals

    if _state(ctx).fanning_out:
        raise typer.BadParameter(
            "in a fleet the loop runs for one --city; `bikeshare run --jobs <job>` runs it for every city"
        )
    resources = city.resources
    with stop_on_signals() as stop:
        return run_jobs(
            lambda recorder, _stack: [build(recorder).starting_at_once().announcing(typer.echo)],
            settings=city.settings,
            lake=resources.lake,
            clock=resources.clock,
            stop=stop,
        )


def registry_failure(exc: Exception) -> typer.Exit:
    """Print why a registry command could not run; exit 3 if the store is unreachable, else 2."""
    from bikeshare.registry.client import RegistryUnavailable

    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=3 if isinstance(exc, RegistryUnavailable) else 2)


def parse_time(text: str | None, *, hint: str | None = None) -> pd.Timestamp | None:
    """An ISO time option (UTC unless it has an offset), None when not given; a bad one is a usage error."""
    if text is None:
        return None
    from bikeshare.utc import parse_utc

    try:
        return parse_utc(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from exc


def window_options(start: str | None, end: str | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The ``--start``/``--end`` window of a command."""
    return parse_time(start), parse_time(end)
