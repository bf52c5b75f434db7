"""Real models for the serving tests and the latency bench, from the shipped Bay Wheels slice.

A cut of the recording is backfilled into a temp lake, features are built with the project's
feature code, and small LightGBM bundles are fitted per target and logged to an MLflow store with
``log_training_run``, exactly as training does. Evaluation is a plain sklearn scorer (the gate is
not under test here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, precision_score, recall_score

from bikeshare.features.build import build_features
from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import FEATURE_VERSION, FEATURES
from bikeshare.settings import Settings
from bikeshare.training.bundle import BundleMeta, IsotonicCalibration, LightGBMScorer, ModelBundle
from bikeshare.training.report import EvaluationReport, ScoreMetrics, SliceComparison

LABELS = ("bikes_t_h", "docks_t_h", "y_bikes", "y_docks")
KEYS = ("station_id", "slot")
FEATURE_NAMES: tuple[str, ...] = tuple(n for n in FEATURES.schema.names if n not in LABELS + KEYS)


def cut_recording(dest: Path, *, hours: float, source: Path | None = None) -> Recording:
    """The first ``hours`` of the shipped recording, written as a recording folder at ``dest``."""
    src = Recording.open(source or default_recording_path())
    return src.cut(dest, start=src.start, end=src.start + pd.Timedelta(hours=hours), later_information=False)


def slice_features(work: Path, *, hours: float = 30.0, settings: Settings | None = None) -> pd.DataFrame:
    """Feature rows (with labels) of the last hours of a backfilled cut of the shipped slice."""
    settings = settings or Settings(lake_uri=str(work / "lake"), state_dir=work / "state", weather_enabled=False)
    recording = cut_recording(work / "recording", hours=hours)
    lake = Lake.open(settings.lake_uri)
    backfill(recording=recording, lake=lake, settings=settings)
    end = recording.end.floor("5min") - pd.Timedelta(minutes=settings.horizon_min)
    start = end - pd.Timedelta(hours=min(10.0, hours - 26.0))
    return build_features(lake=lake, start=start, end=end, settings=settings)


def matrix(frame: pd.DataFrame, names: tuple[str, ...] = FEATURE_NAMES) -> np.ndarray:
    return frame[list(names)].to_numpy(dtype=np.float64, na_value=np.nan)


def fit_bundle(
    frame: pd.DataFrame,
    target: str,
    *,
    trees: int = 40,
    leaves: int = 31,
    seed: int = 1,
    features: tuple[str, ...] = FEATURE_NAMES,
    threshold: float = 0.5,
) -> ModelBundle:
    """A LightGBM shortage model for ``target`` fitted on the labelled rows of ``frame``."""
    rows = frame[frame[f"y_{target}"].notna()]
    booster = lightgbm.train(
        {
            "objective": "binary",
            "num_leaves": leaves,
            "learning_rate": 0.1,
            "verbose": -1,
            "seed": seed,
            "num_threads": 1,
        },
        lightgbm.Dataset(matrix(rows, features), label=rows[f"y_{target}"].astype("int8").to_numpy()),
        num_boost_round=trees,
    )
    meta = BundleMeta(
        target=target,  # type: ignore[arg-type]
        horizon_min=30,
        shortage_threshold=2,
        algo="lightgbm",
        feature_names=features,
        decision_threshold=threshold,
        calibration=IsotonicCalibration.identity(),
        feature_version=FEATURE_VERSION,
        booster_file=LightGBMScorer.FILE,
        provenance={"trained_on": "shipped slice (tests)", "seed": seed, "trees": trees},
    )
    return ModelBundle(meta=meta, scorer=LightGBMScorer(booster=booster))


def _metrics(y: np.ndarray, proba: np.ndarray, decision: np.ndarray) -> ScoreMetrics:
    positives = int(y.sum())
    return ScoreMetrics(
        pr_auc=float(average_precision_score(y, proba)) if positives else float("nan"),
        f1=float(f1_score(y, decision, zero_division=0)),
        precision=float(precision_score(y, decision, zero_division=0)),
        recall=float(recall_score(y, decision, zero_division=0)),
        brier=float(brier_score_loss(y, proba)) if len(y) else float("nan"),
        rows=len(y),
        positives=positives,
    )


def evaluate(bundle: ModelBundle, frame: pd.DataFrame) -> EvaluationReport:
    """Model against persistence (short now) on every labelled row of ``frame``."""
    target = bundle.meta.target
    rows = frame[frame[f"y_{target}"].notna()]
    y = rows[f"y_{target}"].astype("int8").to_numpy()
    proba = bundle.predict_proba(matrix(rows, bundle.meta.feature_names))
    now = rows[target].to_numpy(dtype=np.float64, na_value=np.inf)
    persistence = (now <= 2).astype(float)
    comparison = SliceComparison(
        model=_metrics(y, proba, bundle.decide(proba)), baseline=_metrics(y, persistence, persistence >= 0.5)
    )
    return EvaluationReport(
        target=target,
        window_start=rows["slot"].min().isoformat(),
        window_end=rows["slot"].max().isoformat(),
        decision_threshold=bundle.meta.decision_threshold,
        slices={"all": comparison},
    )


@dataclass(frozen=True)
class TrainedRun:
    """A training result as ``log_training_run`` reads it."""

    bundle: ModelBundle
    report: EvaluationReport
    params: dict[str, Any]
    artifacts: dict[str, Path]
    data_window: tuple[str, str]
    frame: pd.DataFrame = field(repr=False)


def trained_run(frame: pd.DataFrame, target: str, folder: Path, **fit: Any) -> TrainedRun:
    bundle = fit_bundle(frame, target, **fit)
    folder.mkdir(parents=True, exist_ok=True)
    card = folder / "model_card.md"
    card.write_text(f"# {target} model (serving tests)\n\n{json.dumps(fit, default=str)}\n")
    return TrainedRun(
        bundle=bundle,
        report=evaluate(bundle, frame),
        params={"target": target, **{k: str(v) for k, v in fit.items()}},
        artifacts={"model_card": card},
        data_window=(frame["slot"].min().isoformat(), frame["slot"].max().isoformat()),
        frame=frame,
    )


def city_request(frame: pd.DataFrame, *, features: tuple[str, ...] = FEATURE_NAMES) -> dict[str, Any]:
    """The split-orientation body of one slot's rows (the latest slot of ``frame``)."""
    latest = frame[frame["slot"] == frame["slot"].max()]
    values = latest[list(features)].astype("float64")
    data = [
        [sid, *(None if np.isnan(v) else float(v) for v in row)]
        for sid, row in zip(latest["station_id"], values.to_numpy(), strict=True)
    ]
    return {"columns": ["station_id", *features], "data": data}
