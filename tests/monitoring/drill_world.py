"""A small drill world shared by the monitor-job and drill tests: 8 h of the shipped slice backfilled
before the replay start, a model per target trained on 5 h of it through the real trainer, logged
and registered in MLflow with its baselines, and 'production' pointing at it. Built once per
session; each test works on its own copy."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.lake.store import Lake
from bikeshare.orchestration.drills import DrillPlan, DrillWorld, drill_settings, prepare_world
from bikeshare.settings import Settings

# Noon in San Francisco: training (07:00-12:00 local) and the live hours that follow are daytime.
WORLD_START = pd.Timestamp("2023-03-09T20:00Z")
HISTORY_HOURS = 8
TRAIN_HOURS = 5


def world_plan(kind: str = "feed-outage", **overrides: object) -> DrillPlan:
    values: dict[str, object] = {
        "start": WORLD_START,
        "history_hours": HISTORY_HOURS,
        "train_hours": TRAIN_HOURS,
        "cycle_min": 10,
        "warmup_cycles": 1,
        "max_cycles": 3,
    }
    values.update(overrides)
    return DrillPlan(kind=kind, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def drill_world(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> DrillWorld:
    root = tmp_path_factory.mktemp("drill-world")
    base = Settings(lake_uri=str(root / "unused"), state_dir=root / "unused-state", weather_enabled=False)
    return prepare_world(root / "world", base_settings=base, plan=world_plan(), mlflow_db=mlflow_db_template)


@dataclass(frozen=True)
class WorldCopy:
    settings: Settings
    lake: Lake
    world: DrillWorld


def copy_world(world: DrillWorld, dest: Path, **settings_overrides: object) -> WorldCopy:
    """A private copy of the world's lake and MLflow store, with settings pointing at it."""
    shutil.copytree(world.root / "lake", dest / "lake")
    shutil.copytree(world.root / "state", dest / "state")
    settings = drill_settings(world.settings, dest, city=world.settings.city).with_values(**settings_overrides)
    copy = DrillWorld(root=dest, settings=settings, recording=world.recording, model_versions=world.model_versions)
    return WorldCopy(settings=settings, lake=Lake.open(settings.lake_uri), world=copy)
