"""Shared fixtures: real temp lakes, the shipped recording slice, free loopback ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.lake.store import Lake
from bikeshare.settings import Settings
from bikeshare.training.forecast import ForecastTrainingResult


def pytest_configure(config: pytest.Config) -> None:
    """As ``Resources.build`` does for a process: OpenMP (LightGBM) threads sleep instead of spinning
    while they wait. Two xdist workers share two cores; spinning made each fit 2-3x slower."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated in a temp folder: its own lake and state (MLflow SQLite)."""
    return Settings(lake_uri=str(tmp_path / "lake"), state_dir=tmp_path / "state", weather_enabled=False)


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake.open(settings.lake_uri)


@pytest.fixture
def s3_endpoint(free_port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on loopback with dummy credentials; the bucket ``lake`` exists."""
    import boto3
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{free_port}"
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lake")
        yield endpoint
    finally:
        server.stop()


# --- the shipped slice in a lake (features and training tests) -------------------------------------
SLICE_FEATURE_DAY = ("2023-03-09T12:00Z", "2023-03-09T23:55Z")  # 04:00-16:00 in San Francisco


@pytest.fixture(scope="session")
def slice_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a lake holding the whole shipped slice (backfilled once per session; read only)."""
    from bikeshare.gbfs.recording import Recording, default_recording_path
    from bikeshare.ingest.backfill import backfill

    root = tmp_path_factory.mktemp("slice_lake")
    settings = Settings(lake_uri=str(root / "lake"), state_dir=root / "state", weather_enabled=False)
    backfill(recording=Recording.open(default_recording_path()), lake=Lake.open(settings.lake_uri), settings=settings)
    return settings


@pytest.fixture(scope="session")
def slice_day_features(slice_settings: Settings) -> pd.DataFrame:
    """Feature rows with labels for half a day of the shipped slice (7 days of history before it)."""
    from bikeshare.features.build import build_features

    start, end = (pd.Timestamp(t) for t in SLICE_FEATURE_DAY)
    lake = Lake.open(slice_settings.lake_uri)
    return build_features(lake=lake, start=start, end=end, settings=slice_settings)


@pytest.fixture(scope="session")
def mlflow_db_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow SQLite store to copy into a test's state dir as ``mlflow.db``.

    Creating a store runs every MLflow migration (~10 s); copying the file takes milliseconds. The
    template is kept in pytest's cache per MLflow version, so later sessions reuse it too.
    """
    import shutil
    import uuid
    from importlib import metadata

    from bikeshare.registry.client import open_client

    version = metadata.version("mlflow")
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir(f"mlflow-template-{version}") if cache is not None else tmp_path_factory.mktemp("mlflow")
    template = Path(folder) / "mlflow.db"
    if not template.is_file():
        scratch = tmp_path_factory.mktemp("mlflow-template")
        open_client(Settings(state_dir=scratch, lake_uri=str(scratch / "lake")))
        staged = Path(folder) / f".mlflow-{uuid.uuid4().hex}.db"
        shutil.copyfile(scratch / "mlflow.db", staged)
        staged.replace(template)  # atomic: a half-written template is never seen
    return template


# --- the multi-horizon forecast model, trained once per session on the slice day ----------------
FORECAST_FAST = {"forecast_num_trees": 20, "train_min_rows_per_leaf": 100, "train_threads": 1}


@pytest.fixture(scope="session")
def forecast_run(
    slice_settings: Settings, slice_day_features: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> ForecastTrainingResult:
    """The forecast family trained on the slice day (20 trees per booster; read only)."""
    from bikeshare.training.forecast import train_forecast

    settings = slice_settings.model_copy(update={**FORECAST_FAST, "state_dir": tmp_path_factory.mktemp("forecast")})
    return train_forecast(slice_day_features, settings=settings)
