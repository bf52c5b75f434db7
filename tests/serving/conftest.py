"""Fixtures for the endpoint tests: real models from the shipped slice in a real MLflow store, and
real endpoints on free loopback ports (uvicorn in a thread, or the CLI in a subprocess)."""

from __future__ import annotations

import functools
import itertools
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from bikeshare.lake.store import Lake
from bikeshare.registry.client import ModelVersionInfo, model_name
from bikeshare.registry.tracking import log_training_run
from bikeshare.resources import Resources
from bikeshare.serving.app import create_app
from bikeshare.serving.models import ModelProvider, RegistryModelProvider
from bikeshare.serving.server import bind_socket, uvicorn_config
from bikeshare.settings import Settings

from .realmodel import slice_features, trained_run


@pytest.fixture(scope="session")
def slice_frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Feature rows with labels from a backfilled cut of the shipped slice."""
    return slice_features(tmp_path_factory.mktemp("slice"))


@dataclass
class Store:
    """One MLflow SQLite store for the session; ``city()`` registers fresh models for a new city."""

    state: Path
    client: Any  # mlflow.MlflowClient
    frame: pd.DataFrame
    work: Path
    _cities: Iterator[int]

    def settings(self, city: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "city": city,
            "state_dir": self.state,
            "lake_uri": str(self.work / f"lake-{city}"),
            "weather_enabled": False,
            "serve_model_poll_s": 0.2,
            **overrides,
        }
        return Settings(**values)

    def log(self, settings: Settings, target: str, *, seed: int, trees: int = 30) -> ModelVersionInfo:
        run = trained_run(
            self.frame, target, self.work / f"run-{settings.city}-{target}-{seed}", seed=seed, trees=trees
        )
        logged = log_training_run(client=self.client, result=run, settings=settings, input_example=self.frame.head(3))
        assert logged.version is not None
        return logged.version

    def city(self, *, production: bool = True, staging: bool = False) -> str:
        """A new city with v1 of both targets (holding ``production``) and v2 (holding ``staging``)."""
        city = f"t{next(self._cities)}"
        settings = self.settings(city)
        for target in ("bikes", "docks"):
            v1 = self.log(settings, target, seed=1)
            if production:
                self.client.set_registered_model_alias(model_name(city, target), "production", v1.version)
            if staging:
                v2 = self.log(settings, target, seed=2, trees=15)
                self.client.set_registered_model_alias(model_name(city, target), "staging", v2.version)
        return city


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, slice_frame: pd.DataFrame, mlflow_db_template: Path) -> Store:
    from bikeshare.registry.client import open_client

    state = tmp_path_factory.mktemp("mlflow-state")
    shutil.copyfile(mlflow_db_template, state / "mlflow.db")
    client = open_client(Settings(state_dir=state, lake_uri=str(state / "unused-lake")))
    return Store(
        state=state, client=client, frame=slice_frame, work=tmp_path_factory.mktemp("work"), _cities=itertools.count()
    )


@pytest.fixture(scope="session")
def city_both(store: Store) -> str:
    """A city whose production (v1) and staging (v2) aliases are both held, shared read-only."""
    return store.city(production=True, staging=True)


@dataclass
class Endpoint:
    url: str
    app: Any
    provider: ModelProvider
    settings: Settings
    server: Any

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)

    @functools.cached_property
    def http(self) -> httpx.Client:
        """A kept-alive client, closed when the endpoint stops."""
        return self.client()


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture
def serve() -> Iterator[Callable[..., Endpoint]]:
    """Start real endpoints (uvicorn in a thread, our socket and protocol); all stop after the test."""
    import uvicorn

    running: list[tuple[Any, threading.Thread]] = []
    endpoints: list[Endpoint] = []

    def start(settings: Settings, *, provider: ModelProvider | None = None, **app_kwargs: Any) -> Endpoint:
        if provider is None:
            registry = RegistryModelProvider(settings=settings, registry=Resources.build(settings).registry)
            registry.load()
            provider = registry
        app = create_app(settings=settings, provider=provider, lake=Lake.open(settings.lake_uri), **app_kwargs)
        sock = bind_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn_config(settings, app, workers=1))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread))
        _wait_listening(port)
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        endpoint = Endpoint(
            url=f"http://127.0.0.1:{port}", app=app, provider=provider, settings=settings, server=server
        )
        endpoints.append(endpoint)
        return endpoint

    yield start
    for endpoint in endpoints:
        if "http" in endpoint.__dict__:
            endpoint.http.close()
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def lake_for(store: Store) -> Callable[[str], Lake]:
    return lambda city: Lake.open(store.settings(city).lake_uri)
