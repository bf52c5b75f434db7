"""Inference fixtures: a lake backfilled from a cut of the shipped slice, real models in a temp MLflow
store, the real endpoint (serving.create_app on uvicorn) on a free loopback port.

The cut is 2023-03-07 14:00-20:00 UTC (morning in San Francisco). The lake holds its first three
hours; the rest arrives through a replay server when a test advances the virtual clock.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings
from bikeshare.training.report import EvaluationReport, ScoreMetrics, SliceComparison
from support.worlds import MODEL_FEATURES, EndpointServer, QuickRun, free_loopback_port, quick_bundle

CUT_START = pd.Timestamp("2023-03-07T14:00Z")
HISTORY_END = pd.Timestamp("2023-03-07T17:00Z")  # the lake starts with [CUT_START, HISTORY_END)
CUT_END = pd.Timestamp("2023-03-07T20:00Z")
TRAIN_START, TRAIN_END = pd.Timestamp("2023-03-07T15:00Z"), pd.Timestamp("2023-03-07T16:25Z")


def _metrics(rows: int, positives: int) -> ScoreMetrics:
    return ScoreMetrics(pr_auc=0.9, f1=0.8, precision=0.8, recall=0.8, brier=0.05, rows=rows, positives=positives)


def fit_run(frame: pd.DataFrame, target: str, *, rounds: int, seed: int) -> QuickRun:
    """A small real LightGBM bundle for ``target`` fitted on all feature rows with labels (fixed report)."""
    labelled = frame[frame[f"y_{target}"].notna()]
    y = labelled[f"y_{target}"].astype(bool).to_numpy()
    slices = {
        s: SliceComparison(model=_metrics(len(y), int(y.sum())), baseline=_metrics(len(y), int(y.sum())))
        for s in ("all", "onsets", "recoveries")
    }
    report = EvaluationReport(
        target=target,
        window_start=TRAIN_START.isoformat(),
        window_end=TRAIN_END.isoformat(),
        decision_threshold=0.5,
        slices=slices,
    )
    return QuickRun(
        bundle=quick_bundle(labelled, target, rounds=rounds, seed=seed),
        report=report,
        params={"rounds": rounds, "seed": seed},
        data_window=(TRAIN_START.isoformat(), TRAIN_END.isoformat()),
    )


def fit_forecast_bundle(frame: pd.DataFrame, folder: Path, *, rounds: int = 10) -> Path:
    """A small real forecast bundle (five LightGBM boosters, the horizon as a feature) saved in ``folder``."""
    import lightgbm

    from bikeshare.training.forecast_bundle import (
        ROLES,
        Calibration,
        ForecastBundle,
        ForecastMeta,
        expand_matrix,
    )

    horizons = (15, 30, 60, 90, 120)
    labelled = frame[frame["y_bikes"].notna() & frame["y_docks"].notna() & frame["bikes_t_h"].notna()]
    base = labelled.loc[:, list(MODEL_FEATURES)].astype("float64").to_numpy(np.float64, na_value=np.nan)
    x = expand_matrix(base, horizons)
    change = np.repeat((labelled["bikes_t_h"] - labelled["bikes"]).astype("float64").to_numpy(), len(horizons))
    labels = {
        "p_no_bikes": ({"objective": "binary"}, np.repeat(labelled["y_bikes"].astype(int).to_numpy(), len(horizons))),
        "p_no_docks": ({"objective": "binary"}, np.repeat(labelled["y_docks"].astype(int).to_numpy(), len(horizons))),
        "bikes_median": ({"objective": "regression_l1"}, change),
        "bikes_q10": ({"objective": "quantile", "alpha": 0.1}, change),
        "bikes_q90": ({"objective": "quantile", "alpha": 0.9}, change),
    }
    boosters = {}
    for role in ROLES:
        params, y = labels[role]
        boosters[role] = lightgbm.train(
            {**params, "num_leaves": 7, "verbose": -1, "seed": 1, "num_threads": 1},
            lightgbm.Dataset(x, label=y),
            num_boost_round=rounds,
        )
    identity = Calibration(x=(0.0, 1.0), y=(0.0, 1.0))
    meta = ForecastMeta(
        horizons_min=horizons,
        shortage_threshold=2,
        feature_names=MODEL_FEATURES,
        feature_version="1",
        calibration_bikes=identity,
        calibration_docks=identity,
        threshold_bikes=0.5,
        threshold_docks=0.5,
    )
    return ForecastBundle(meta=meta, boosters=boosters).save(folder)


@dataclass(frozen=True)
class World:
    """What the session built once: the cut, the backfilled lake, the model store."""

    cut: Recording
    history: Recording
    lake_dir: Path
    state_dir: Path
    train_frame: pd.DataFrame


def settings_for(lake_dir: Path, state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "city": "sf",
        "lake_uri": str(lake_dir),
        "state_dir": state_dir,
        "weather_enabled": False,
        "infer_retry_attempts": 3,
        "infer_retry_base_delay_s": 0.0,
        "infer_retry_max_delay_s": 0.0,
        "infer_timeout_s": 5.0,
        "serve_model_poll_s": 5.0,  # tests call provider.refresh() when they move an alias
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from bikeshare.features.build import build_features
    from bikeshare.registry.client import model_name, open_client
    from bikeshare.registry.tracking import log_training_run

    root = tmp_path_factory.mktemp("inference-world")
    shipped = Recording.open(default_recording_path())
    cut = shipped.cut(root / "cut", start=CUT_START, end=CUT_END)
    history = shipped.cut(root / "history", start=CUT_START, end=HISTORY_END)
    state = root / "state"
    settings = settings_for(root / "lake", state)
    lake = Lake.open(settings.lake_uri)
    backfill(recording=history, lake=lake, settings=settings, workers=2)
    frame = build_features(lake=lake, start=TRAIN_START, end=TRAIN_END, settings=settings)
    client = open_client(settings)
    for target in ("bikes", "docks"):
        logged = log_training_run(
            client=client, result=fit_run(frame, target, rounds=20, seed=1), settings=settings, commit="test"
        )
        assert logged.version is not None
        client.set_registered_model_alias(model_name("sf", target), "production", logged.version.version)
    return World(cut=cut, history=history, lake_dir=root / "lake", state_dir=state, train_frame=frame)


@pytest.fixture(scope="session")
def endpoint(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointServer]:
    """One endpoint for the session (tests that stop an endpoint start their own)."""
    settings = settings_for(tmp_path_factory.mktemp("endpoint-lake"), world.state_dir)
    server = EndpointServer(settings, free_loopback_port()).start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Env:
    settings: Settings
    lake: Lake


@pytest.fixture
def env(world: World, tmp_path: Path, endpoint: EndpointServer) -> Env:
    """A private copy of the backfilled lake, with settings pointing at the session endpoint."""
    lake_dir = tmp_path / "lake"
    shutil.copytree(world.lake_dir, lake_dir)
    settings = settings_for(lake_dir, world.state_dir, endpoint_url=endpoint.url)
    return Env(settings=settings, lake=Lake.open(settings.lake_uri))
