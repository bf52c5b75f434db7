"""The adapters of one deployment, built once from the typed :class:`Settings`, and the city-bound context.

Every entry point (the CLI, the runner, the demo, the drills, the endpoint, the dashboard) builds one
:class:`Resources` at start and takes its adapters from it: the lake, the MLflow registry client
(the MLflow environment is set here, once), the feed client, the endpoint client and the clock.
Environments differ in which adapters these are (a folder or ``s3://`` lake, a SQLite or remote
MLflow store, the wall or a replay clock), never in branches inside the stages.

A job for one city takes a :class:`CityContext`: that city's settings and its lake partitions,
bound once, so no stage threads a ``city`` string next to settings that already carry one.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bikeshare.fleet import Fleet, FleetError
from bikeshare.lake.store import CityLake, Lake
from bikeshare.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from mlflow import MlflowClient

    from bikeshare.gbfs.client import GbfsClient
    from bikeshare.inference.endpoint_client import EndpointClient
    from bikeshare.orchestration.clocks import JobClock


class Resources:
    """The adapters of one process, each built at most once (the registry client lazily)."""

    def __init__(self, settings: Settings, *, lake: Lake, clock: JobClock, fleet: Fleet | None = None) -> None:
        self.settings = settings
        self.lake = lake
        self.clock = clock
        self.fleet = fleet or Fleet.of_one(settings)
        self._registry: MlflowClient | None = None
        self._registry_lock = threading.Lock()

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        replay_url: str | None = None,
        clock: JobClock | None = None,
        fleet: Fleet | None = None,
    ) -> Resources:
        """Open the lake, choose the clock (a replay server's when ``replay_url`` is given) and set
        the MLflow environment once for this process. ``fleet``: the cities (default: ``settings.city`` alone)."""
        from bikeshare.orchestration.clocks import ReplayClock, WallClock
        from bikeshare.registry.client import mlflow_environment

        os.environ.update(mlflow_environment(settings))
        # OpenMP threads (LightGBM) sleep while they wait instead of spinning: they share the cores with
        # DuckDB and the job threads, and spinning made a fit 2-3x slower on a loaded 2-core machine.
        # Read when OpenMP starts, so before any model is trained here; an explicit value is kept.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
        if clock is None:
            clock = ReplayClock(replay_url) if replay_url else WallClock()
        return cls(settings, lake=lake, clock=clock, fleet=fleet)

    def registry(self) -> MlflowClient:
        """The MLflow client of ``settings.tracking_uri``, opened (and checked reachable) on first use."""
        from bikeshare.registry.client import open_client

        with self._registry_lock:
            if self._registry is None:
                self._registry = open_client(self.settings)
            return self._registry

    def endpoint_client(self, *, url: str | None = None) -> EndpointClient:
        """A client of the scoring endpoint (default: endpoint_url, else serve_host:serve_port)."""
        from bikeshare.inference.endpoint_client import EndpointClient

        settings = self.settings if url is None else self.settings.with_values(endpoint_url=url)
        return EndpointClient.from_settings(settings)

    def city(self, key: str | None = None) -> CityContext:
        """The context of city ``key`` of the fleet; without ``key``, the fleet's only city.

        :class:`~bikeshare.fleet.FleetError` for a key outside the fleet, or no key in a fleet of several.
        """
        if key is None:
            if len(self.fleet.cities) > 1:
                raise FleetError(
                    f"this command acts on one city of {self.fleet.source}: pass --city KEY "
                    f"(one of {', '.join(self.fleet.keys)})"
                )
            key = self.fleet.keys[0]
        settings = self.fleet.settings_of(key)
        return CityContext(settings=settings, lake=self.lake.for_city(key), resources=self)

    def cities(self) -> list[CityContext]:
        """Every city of the fleet, in its order."""
        return [self.city(key) for key in self.fleet.keys]

    def close(self) -> None:
        """Release what the adapters hold open (the replay clock's HTTP client)."""
        close = getattr(self.clock, "close", None)
        if callable(close):
            close()


@dataclass(frozen=True)
class CityContext:
    """One city, bound once: its settings, its lake partitions, and the deployment's shared adapters."""

    settings: Settings
    lake: CityLake
    resources: Resources

    @property
    def key(self) -> str:
        return self.lake.city

    def registry(self) -> MlflowClient:
        return self.resources.registry()

    def feed_client(
        self, *, discovery_url: str | None = None, utc_now: Callable[[], pd.Timestamp] | None = None
    ) -> GbfsClient:
        """A GBFS client of ``discovery_url`` (default: the city's feed_url) with its ingest retry policy."""
        from bikeshare.gbfs.client import GbfsClient

        kwargs: dict[str, Any] = {} if utc_now is None else {"utc_now": utc_now}
        return GbfsClient.from_settings(self.settings, discovery_url=discovery_url, **kwargs)

    def model_name(self, target: str) -> str:
        """Registered name of this city's model for ``target``: ``bikeshare-<city>-<target>``."""
        from bikeshare.registry.client import model_name

        return model_name(self.key, target)
