"""Small, real models for the registry tests: LightGBM fitted on a synthetic station frame.

The frame mimics the shortage problem: ``bikes_now`` is the current count, ``trend`` the recent
rate of change, and the label is "bikes in 30 minutes <= 2". Persistence ranks by ``-bikes_now``;
a model that sees ``trend`` beats it, above all on onsets (rows not short now). A model fitted on
shuffled labels does not. Evaluation here is a plain scorer over the frame (sklearn metrics), the
injected evaluator the gate takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, precision_score, recall_score

from bikeshare.training.bundle import BundleMeta, IsotonicCalibration, LightGBMScorer, ModelBundle
from bikeshare.training.report import EvaluationReport, ScoreMetrics, SliceComparison

THRESHOLD = 2
FEATURE_VERSION = "test-1"


def station_frame(rows: int, *, seed: int, start: str = "2026-03-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bikes_now = rng.integers(0, 16, rows)
    trend = rng.normal(0.0, 1.0, rows)
    future = bikes_now + 4.0 * trend + rng.normal(0.0, 0.7, rows)
    return pd.DataFrame(
        {
            "slot": pd.date_range(start, periods=rows, freq="5min", tz="UTC"),
            "bikes_now": bikes_now.astype("float64"),
            "trend": trend,
            "trend_noisy": trend + rng.normal(0.0, 1.5, rows),
            "noise": rng.normal(0.0, 1.0, rows),
            "y": (future <= THRESHOLD).astype("int8"),
        }
    )


def fit_bundle(
    frame: pd.DataFrame, features: tuple[str, ...], *, shuffle_labels: bool = False, seed: int = 1
) -> ModelBundle:
    labels = frame["y"].to_numpy()
    if shuffle_labels:
        labels = np.random.default_rng(seed).permutation(labels)
    booster = lightgbm.train(
        {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": seed, "num_threads": 1},
        lightgbm.Dataset(frame[list(features)].to_numpy(np.float64), label=labels),
        num_boost_round=60,
    )
    meta = BundleMeta(
        target="bikes",
        horizon_min=30,
        shortage_threshold=THRESHOLD,
        algo="lightgbm",
        feature_names=features,
        decision_threshold=0.5,
        calibration=IsotonicCalibration.identity(),
        feature_version=FEATURE_VERSION,
        booster_file=LightGBMScorer.FILE,
    )
    return ModelBundle(meta=meta, scorer=LightGBMScorer(booster=booster))


def _metrics(y: np.ndarray, score: np.ndarray, decision: np.ndarray, proba: np.ndarray) -> ScoreMetrics:
    positives = int(y.sum())
    return ScoreMetrics(
        pr_auc=float(average_precision_score(y, score)) if positives else float("nan"),
        f1=float(f1_score(y, decision, zero_division=0)),
        precision=float(precision_score(y, decision, zero_division=0)),
        recall=float(recall_score(y, decision, zero_division=0)),
        brier=float(brier_score_loss(y, proba)) if len(y) else float("nan"),
        rows=len(y),
        positives=positives,
    )


def evaluate(bundle: ModelBundle, frame: pd.DataFrame) -> EvaluationReport:
    """Model and persistence side by side on all rows, onsets and recoveries of ``frame``."""
    proba = bundle.predict_proba(frame[list(bundle.meta.feature_names)].to_numpy(np.float64))
    decision = bundle.decide(proba)
    y = frame["y"].to_numpy()
    now = frame["bikes_now"].to_numpy()
    base_decision = now <= THRESHOLD
    slices = {}
    for name, mask in (("all", np.ones(len(y), bool)), ("onsets", now > THRESHOLD), ("recoveries", now <= THRESHOLD)):
        slices[name] = SliceComparison(
            model=_metrics(y[mask], proba[mask], decision[mask], proba[mask]),
            baseline=_metrics(y[mask], -now[mask], base_decision[mask], base_decision[mask].astype(float)),
        )
    return EvaluationReport(
        target=bundle.meta.target,
        window_start=frame["slot"].min().isoformat(),
        window_end=frame["slot"].max().isoformat(),
        decision_threshold=bundle.meta.decision_threshold,
        slices=slices,
    )


@dataclass(frozen=True)
class SyntheticRun:
    """A training result as the registry reads it (the shape of ``training.TrainingResult``)."""

    bundle: ModelBundle
    report: EvaluationReport
    params: dict[str, Any]
    artifacts: dict[str, Path]
    data_window: tuple[str, str]
    test_frame: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def synthetic_run(
    folder: Path,
    *,
    features: tuple[str, ...] = ("bikes_now", "trend"),
    shuffle_labels: bool = False,
    seed: int = 1,
    test_frame: pd.DataFrame | None = None,
) -> SyntheticRun:
    train = station_frame(3000, seed=seed)
    test = test_frame if test_frame is not None else station_frame(2000, seed=99, start="2026-03-20")
    bundle = fit_bundle(train, features, shuffle_labels=shuffle_labels, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    card = folder / "model_card.md"
    card.write_text(f"# Model card\n\nfeatures: {', '.join(features)}\n")
    plot = folder / "pr_curve.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    return SyntheticRun(
        bundle=bundle,
        report=evaluate(bundle, test),
        params={"num_leaves": 15, "features": list(features), "shuffled": shuffle_labels},
        artifacts={"model_card": card, "pr_curve": plot},
        data_window=(train["slot"].min().isoformat(), test["slot"].max().isoformat()),
        test_frame=test,
    )
