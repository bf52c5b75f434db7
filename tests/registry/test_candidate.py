"""register_candidate: one call trains a real model on lake features, logs and registers it, tags the
version and stores its drift baselines (lake and run artifact); a frame the trainer refuses leaves
the registry as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.ingest.backfill import backfill
from bikeshare.monitoring.model_baselines import BASELINE_ARTIFACT
from bikeshare.monitoring.store import read_baselines
from bikeshare.profiles import with_profile
from bikeshare.registry.candidate import CandidateTrainingError, register_candidate
from bikeshare.registry.client import alias_holder, get_version, list_versions, model_name

from .conftest import Registry

START = pd.Timestamp("2023-03-09T13:00Z")
END = pd.Timestamp("2023-03-09T20:00Z")  # 05:00-12:00 in San Francisco


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Feature rows with labels of five hours of the shipped slice, backfilled into a temp lake."""
    from bikeshare.features.build import build_features
    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings

    root = tmp_path_factory.mktemp("candidate-features")
    settings = Settings(city="sf", lake_uri=str(root / "lake"), state_dir=root / "state", weather_enabled=False)
    history = Recording.open(default_recording_path()).cut(root / "cut", start=START, end=END)
    lake = Lake.open(settings.lake_uri)
    backfill(recording=history, lake=lake, settings=settings, workers=2)
    end = END - pd.Timedelta(minutes=settings.horizon_min + settings.grid_minutes)
    return build_features(lake=lake, start=end - pd.Timedelta(hours=5), end=end, settings=settings)


def test_a_candidate_is_trained_logged_tagged_and_has_its_baselines(
    registry: Registry, features: pd.DataFrame, tmp_path: Path
) -> None:
    settings = with_profile(registry.settings, "drill", city=registry.settings.city)  # small, fast models
    stamp = pd.Timestamp("2023-03-09T19:30Z")
    candidate = register_candidate(
        features,
        target="docks",
        lake=registry.lake,
        client=registry.client,
        settings=settings,
        artifacts_dir=tmp_path / "artifacts",
        tags={"pipeline_key": "abc123", "note": "test"},
        created_at=stamp,
    )
    name = model_name(settings.city, "docks")
    assert candidate.name == name and candidate.target == "docks"
    assert [v.version for v in list_versions(registry.client, name)] == [candidate.version]
    info = get_version(registry.client, name, candidate.version)
    assert info.run_id == candidate.run_id
    assert info.tags["pipeline_key"] == "abc123" and info.tags["note"] == "test"
    assert alias_holder(registry.client, name, "production") is None  # moving an alias is the caller's call
    assert (tmp_path / "artifacts").is_dir() and candidate.result.report.target == "docks"

    stored = read_baselines(
        registry.lake, city=settings.city, model_name=name, model_version=candidate.version, target="docks"
    )
    assert len(stored) == candidate.baselines.features > 5
    assert set(candidate.result.bundle.meta.feature_names) <= set(stored)
    created = registry.lake.connect().execute("SELECT DISTINCT created_at FROM feature_baselines").fetchall()
    assert [pd.Timestamp(c).tz_convert("UTC") for (c,) in created] == [stamp]
    artifact = registry.client.download_artifacts(candidate.run_id, BASELINE_ARTIFACT, str(tmp_path / "dl"))
    doc = json.loads(Path(artifact).read_text())
    assert doc["meta"]["model_version"] == candidate.version and doc["meta"]["run_id"] == candidate.run_id


def test_a_frame_the_trainer_refuses_registers_nothing(registry: Registry, features: pd.DataFrame) -> None:
    settings = with_profile(registry.settings, "drill", city=registry.settings.city)
    name = model_name(settings.city, "bikes")
    with pytest.raises(CandidateTrainingError):
        register_candidate(
            features.head(0), target="bikes", lake=registry.lake, client=registry.client, settings=settings
        )
    assert list_versions(registry.client, name) == []
    with pytest.raises(ValueError, match="no timezone"):
        register_candidate(
            features, target="bikes", lake=registry.lake, client=registry.client, settings=settings,
            created_at=pd.Timestamp("2023-03-09T19:30"),
        )  # fmt: skip
    assert list_versions(registry.client, name) == []
