"""One real MLflow SQLite store for the registry tests (creating one costs seconds); each test gets its
own city, hence its own experiments, registered models and audit partitions, and its own lake."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bikeshare.lake.store import Lake
from bikeshare.settings import Settings


@dataclass(frozen=True)
class Registry:
    settings: Settings
    client: object  # mlflow.MlflowClient
    lake: Lake
    work: Path


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, object]]:
    from bikeshare.registry.client import open_client

    state = tmp_path_factory.mktemp("mlflow-state")
    client = open_client(Settings(state_dir=state, lake_uri=str(state / "unused-lake")))
    yield state, client


@pytest.fixture(scope="session")
def _cities() -> Iterator[int]:
    return itertools.count()


@pytest.fixture
def registry(store: tuple[Path, object], _cities: Iterator[int], tmp_path: Path) -> Registry:
    state, client = store
    # The offline gate is tested here; production admission (online hours) in tests/orchestration.
    settings = Settings(
        city=f"c{next(_cities)}",
        state_dir=state,
        lake_uri=str(tmp_path / "lake"),
        weather_enabled=False,
        staging_min_online_hours=0,
    )
    return Registry(settings=settings, client=client, lake=Lake.open(settings.lake_uri), work=tmp_path)
