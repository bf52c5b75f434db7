"""Baselines stored with a trained model version: what the monitor job measures drift against.

Feature baselines come from the rows the model learnt from (the train and validation parts of the
time split: the booster is refitted on both, or at least calibrated on validation).
The predicted-probability baseline comes from the held-out test rows: scores on rows the model was
fitted on are over-confident, while live scores are out of sample. The probability baseline also
records the model's test Brier score, decision trigger rate and positive rate, so that the monitor
can compare calibration and trigger rate now with training.

They are kept twice: as an MLflow artifact of the training run (``monitoring/feature_baselines.json``)
and in the lake table ``feature_baselines`` (one row per feature), which the monitor job reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bikeshare.lake.store import Lake
from bikeshare.monitoring.baseline import FeatureBaseline, baselines_to_json, build_baselines, numeric_baseline
from bikeshare.monitoring.drift import PREDICTION_FEATURE
from bikeshare.monitoring.store import write_baselines
from bikeshare.settings import Settings
from bikeshare.training.bundle import ModelBundle
from bikeshare.training.evaluate import label_column, labelled_rows
from bikeshare.training.split import TimeSplit, split_frame

if TYPE_CHECKING:
    from mlflow import MlflowClient

BASELINE_ARTIFACT = "monitoring/feature_baselines.json"
# Extra statistics of the predicted-probability baseline (its ``stats``), measured on the test rows.
TRAINING_BRIER = "brier"
TRAINING_TRIGGER_RATE = "trigger_rate"
TRAINING_POSITIVE_RATE = "positive_rate"


@dataclass(frozen=True)
class StoredBaselines:
    """Where a model version's baselines went."""

    model_name: str
    model_version: str
    target: str
    features: int
    lake_path: str | None  # None: this version's baselines were already in the lake
    artifact: str | None  # MLflow artifact path in the run, None when not logged


def training_baselines(
    features: pd.DataFrame, *, bundle: ModelBundle, split: TimeSplit, target: str, settings: Settings
) -> dict[str, FeatureBaseline]:
    """Baselines of the model's features (train and validation rows) and of its predicted probability (test rows)."""
    from bikeshare.features.schema import feature_matrix

    rows = labelled_rows(features, target)
    train, validation, test = split_frame(rows, split)
    train = pd.concat([train, validation])  # what the model learnt from (refit) or was tuned on
    names = tuple(bundle.meta.feature_names)
    if train.empty:
        raise ValueError("the split has no train rows to take feature baselines from")
    if test.empty:
        raise ValueError("the split has no test rows to take the predicted-probability baseline from")
    out = build_baselines(train, features=names, bins=settings.drift_bins, sample_size=settings.drift_ks_sample_size)
    proba = bundle.predict_proba(feature_matrix(test, names))
    labels = test[label_column(target)].to_numpy(dtype=bool)
    decisions = np.asarray(bundle.decide(proba), dtype=bool)
    prediction = numeric_baseline(
        PREDICTION_FEATURE, proba, bins=settings.drift_bins, sample_size=settings.drift_ks_sample_size
    )
    extra = {
        TRAINING_BRIER: float(np.mean((proba - labels) ** 2)),
        TRAINING_TRIGGER_RATE: float(decisions.mean()),
        TRAINING_POSITIVE_RATE: float(labels.mean()),
    }
    out[PREDICTION_FEATURE] = replace(prediction, stats={**prediction.stats, **extra})
    return out


def store_baselines(
    *,
    lake: Lake,
    baselines: Mapping[str, FeatureBaseline],
    city: str,
    model_name: str,
    model_version: str,
    target: str,
    created_at: datetime,
    client: MlflowClient | None = None,
    run_id: str | None = None,
) -> StoredBaselines:
    """Keep a model version's baselines as an MLflow artifact of its run (when given) and in the lake."""
    artifact = None
    if client is not None and run_id is not None:
        from bikeshare.registry.client import reachable, uri_of

        meta = {"model_name": model_name, "model_version": str(model_version), "target": target, "run_id": run_id}
        with reachable(uri_of(client)):
            client.log_text(run_id, baselines_to_json(baselines, meta=meta), BASELINE_ARTIFACT)
        artifact = BASELINE_ARTIFACT
    path = write_baselines(
        lake,
        baselines,
        city=city,
        model_name=model_name,
        model_version=str(model_version),
        target=target,
        created_at=created_at,
    )
    return StoredBaselines(
        model_name=model_name,
        model_version=str(model_version),
        target=target,
        features=len(baselines),
        lake_path=path,
        artifact=artifact,
    )
