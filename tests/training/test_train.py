"""Training end to end on a day of the shipped slice: split, calibration, threshold, baseline on the
same rows, artifacts, model card, bundle round trip, evaluate_bundle, and the CLI with MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.features.schema import FEATURE_COLUMNS, feature_matrix
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import FEATURES
from bikeshare.settings import Settings
from bikeshare.training.bundle import ModelBundle
from bikeshare.training.evaluate import evaluate_bundle
from bikeshare.training.metrics import pr_auc
from bikeshare.training.split import split_frame
from bikeshare.training.train import TrainingResult, train_model

FAST = {"train_num_trees": 25, "train_min_rows_per_leaf": 100, "train_threads": 1}


@pytest.fixture(scope="module")
def fast_settings(slice_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return slice_settings.model_copy(update={**FAST, "state_dir": tmp_path_factory.mktemp("train_state")})


@pytest.fixture(scope="module")
def trained(slice_day_features: pd.DataFrame, fast_settings: Settings) -> TrainingResult:
    return train_model(slice_day_features, target="bikes", settings=fast_settings, algo="lightgbm")


def test_report_compares_model_and_persistence_on_the_same_test_rows(
    trained: TrainingResult, slice_day_features: pd.DataFrame
) -> None:
    labelled = slice_day_features[slice_day_features["y_bikes"].notna()]
    _, _, test = split_frame(labelled, trained.split)
    report = trained.report
    assert set(report.slices) == {"all", "onsets", "recoveries"}
    everything = report.slices["all"]
    assert everything.model.rows == everything.baseline.rows == len(test)
    assert report.slices["onsets"].model.rows + report.slices["recoveries"].model.rows == len(test)
    y = test["y_bikes"].to_numpy(dtype=bool)
    assert everything.baseline.pr_auc == pytest.approx(pr_auc(y, -test["bikes"].to_numpy(dtype=float)))
    assert everything.model.positives == int(y.sum()) > 0
    assert 0.5 < everything.model.pr_auc <= 1.0
    for name in ("all", "onsets", "recoveries"):
        for scorer in (report.slices[name].model, report.slices[name].baseline):
            assert 0.0 <= scorer.brier <= 1.0 and 0.0 <= scorer.f1 <= 1.0
    assert report.window_start == test["slot"].min().isoformat()
    assert report.overfit_gap is not None and report.overfit_gap == pytest.approx(
        report.train_pr_auc - report.validation_pr_auc
    )
    assert report.extra["overfit_ok"] == (report.overfit_gap < 0.1)
    metrics = report.flat_metrics()
    assert {"all_model_pr_auc", "onsets_baseline_pr_auc", "all_pr_auc_lift", "overfit_gap"} <= set(metrics)


def test_bundle_carries_threshold_calibration_and_round_trips(trained: TrainingResult, tmp_path: Path) -> None:
    meta = trained.bundle.meta
    assert meta.feature_names == FEATURE_COLUMNS
    assert 0.0 < meta.decision_threshold < 1.0
    assert meta.decision_threshold == trained.report.decision_threshold
    assert list(meta.calibration.x) == sorted(meta.calibration.x)
    assert meta.provenance["split"]["test_start"] == trained.split.test[0].isoformat()
    folder = trained.bundle.save(tmp_path / "bundle")
    loaded = ModelBundle.load(folder)
    rows = np.random.default_rng(1).normal(size=(20, len(FEATURE_COLUMNS))).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_proba(rows), trained.bundle.predict_proba(rows))


def test_evaluate_bundle_reproduces_the_training_report(
    trained: TrainingResult, slice_day_features: pd.DataFrame, fast_settings: Settings
) -> None:
    _, _, test = split_frame(slice_day_features, trained.split)
    again = evaluate_bundle(trained.bundle, test, settings=fast_settings)
    for name, comparison in trained.report.slices.items():
        assert again.slices[name].model == comparison.model
        assert again.slices[name].baseline == comparison.baseline
    assert again.window_end == trained.report.window_end


def test_artifacts_and_model_card(trained: TrainingResult) -> None:
    for name in ("pr_curve", "calibration_curve", "confusion_matrix", "feature_importance"):
        assert trained.artifacts[name].suffix == ".png" and trained.artifacts[name].stat().st_size > 5000
    card = trained.artifacts["model_card"].read_text()
    for section in (
        "## Purpose",
        "## Data window",
        "## Metrics on the test rows, model against persistence",
        "## Threshold",
        "## Assumptions",
        "## Risks",
        "## Coverage across regions and station sizes",
    ):
        assert section in card
    assert "| onsets |" in card and "small (<15 docks)" in card and "| region " in card
    assert f"{trained.report.decision_threshold:.4f}" in card
    assert abs(sum(trained.importance.values()) - 1.0) < 1e-6


def test_docks_with_xgboost(slice_day_features: pd.DataFrame, fast_settings: Settings) -> None:
    result = train_model(slice_day_features, target="docks", settings=fast_settings, algo="xgboost")
    assert result.bundle.meta.algo == "xgboost"
    assert result.report.target == "docks"
    assert result.report.slices["all"].model.pr_auc > 0.5
    rows = feature_matrix(slice_day_features.head(10), FEATURE_COLUMNS)
    assert ((result.bundle.predict_proba(rows) >= 0) & (result.bundle.predict_proba(rows) <= 1)).all()


def test_bad_inputs_are_refused(slice_day_features: pd.DataFrame, fast_settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown target"):
        train_model(slice_day_features, target="scooters", settings=fast_settings)
    with pytest.raises(ValueError, match="unknown algo"):
        train_model(slice_day_features, target="bikes", settings=fast_settings, algo="catboost")
    no_labels = slice_day_features.assign(y_bikes=pd.array([pd.NA] * len(slice_day_features), dtype="boolean"))
    with pytest.raises(ValueError, match="no feature rows with a known y_bikes"):
        train_model(no_labels, target="bikes", settings=fast_settings)


def test_cli_trains_logs_and_registers(slice_day_features: pd.DataFrame, tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    for day, part in slice_day_features.groupby(slice_day_features["slot"].dt.strftime("%Y-%m-%d")):
        lake.write(FEATURES, part, city="sf", dt=day, name="features")
    env = {
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        **{f"BIKESHARE_{k.upper()}": str(v) for k, v in FAST.items()},
    }
    result = CliRunner().invoke(app, ["train", "--target", "bikes", "--out", str(tmp_path / "run")], env=env)
    assert result.exit_code == 0, result.output
    assert "onsets" in result.output and "persistence" in result.output
    assert "registered version 1" in result.output
    assert (tmp_path / "run" / "model_card.md").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    version = client.get_model_version("bikeshare-sf-bikes", "1")
    run = client.get_run(version.run_id)
    assert run.data.metrics["all_model_pr_auc"] > 0.5
    assert "all_baseline_pr_auc" in run.data.metrics


def test_cli_without_features_says_what_to_do(tmp_path: Path) -> None:
    env = {"BIKESHARE_LAKE_URI": str(tmp_path / "lake"), "BIKESHARE_STATE_DIR": str(tmp_path / "state")}
    result = CliRunner().invoke(app, ["train", "--target", "bikes", "--no-log"], env=env)
    assert result.exit_code != 0
    assert "features build" in result.output


def test_training_on_rows_with_a_month_long_gap(slice_day_features: pd.DataFrame, fast_settings: Settings) -> None:
    # The earlier part of the day moved a month back: an outage gap before the test start.
    slots = slice_day_features["slot"]
    cut = slots.sort_values().unique()[int(slots.nunique() * 0.5)]
    gapped = slice_day_features.assign(slot=slots.where(slots >= cut, slots - pd.Timedelta(days=30)))
    result = train_model(gapped, target="bikes", settings=fast_settings)
    _, validation, test = split_frame(gapped[gapped["y_bikes"].notna()], result.split)
    assert validation["slot"].min() >= cut and len(validation) > 0
    assert result.report.slices["all"].model.rows == len(test) > 0
