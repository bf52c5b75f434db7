"""Model against persistence on the same rows: all, onsets (not short now), recoveries (short now)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bikeshare.enums import Target
from bikeshare.features.schema import feature_matrix
from bikeshare.settings import Settings
from bikeshare.training.bundle import ModelBundle
from bikeshare.training.metrics import score_metrics
from bikeshare.training.report import EvaluationReport, SliceComparison


def label_column(target: str) -> str:
    return f"y_{Target(target).value}"


def labelled_rows(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows whose label at slot + horizon is known (the others cannot be scored)."""
    column = label_column(target)
    if column not in frame.columns:
        raise ValueError(f"feature rows lack the label column {column!r}")
    return frame[frame[column].notna()]


def compare_slices(
    *, y: np.ndarray, current: np.ndarray, proba: np.ndarray, decision: np.ndarray, threshold: int
) -> dict[str, SliceComparison]:
    """Model (``proba``, ``decision``) and persistence (score = -current, rule current <= threshold)."""
    y = np.asarray(y, dtype=bool)
    current = np.asarray(current, dtype=float)
    short_now = current <= threshold
    base_score = -current
    base_proba = short_now.astype(float)
    out: dict[str, SliceComparison] = {}
    for name, mask in (("all", np.ones_like(y)), ("onsets", ~short_now), ("recoveries", short_now)):
        out[name] = SliceComparison(
            model=score_metrics(y[mask], proba[mask], decision[mask], proba[mask]),
            baseline=score_metrics(y[mask], base_score[mask], short_now[mask], base_proba[mask]),
        )
    return out


def evaluate_scores(
    rows: pd.DataFrame,
    proba: np.ndarray,
    *,
    target: str,
    decision_threshold: float,
    shortage_threshold: int,
    train_pr_auc: float | None = None,
    validation_pr_auc: float | None = None,
    extra: dict[str, Any] | None = None,
) -> EvaluationReport:
    """An :class:`EvaluationReport` of calibrated probabilities ``proba`` for labelled ``rows``."""
    if rows.empty:
        raise ValueError(f"no labelled rows to evaluate for target {target}")
    y = rows[label_column(target)].to_numpy(dtype=bool)
    current = rows[target].to_numpy(dtype=float)
    slices = compare_slices(
        y=y, current=current, proba=proba, decision=proba >= decision_threshold, threshold=shortage_threshold
    )
    return EvaluationReport(
        target=target,
        window_start=pd.Timestamp(rows["slot"].min()).isoformat(),
        window_end=pd.Timestamp(rows["slot"].max()).isoformat(),
        decision_threshold=float(decision_threshold),
        slices=slices,
        train_pr_auc=train_pr_auc,
        validation_pr_auc=validation_pr_auc,
        extra=dict(extra or {}),
    )


def evaluate_bundle(bundle: ModelBundle, features: pd.DataFrame, *, settings: Settings) -> EvaluationReport:
    """Score ``bundle`` on the labelled rows of ``features`` against persistence on the same rows.

    The label is recomputed from the horizon counts with the bundle's own shortage threshold when
    it differs from the one the rows were built with.
    """
    meta = bundle.meta
    rows = labelled_rows(features, meta.target)
    if meta.shortage_threshold != settings.shortage_threshold:
        rows = rows.assign(**{label_column(meta.target): rows[f"{meta.target}_t_h"] <= meta.shortage_threshold})
    proba = bundle.predict_proba(feature_matrix(rows, meta.feature_names))
    return evaluate_scores(
        rows,
        proba,
        target=meta.target,
        decision_threshold=meta.decision_threshold,
        shortage_threshold=meta.shortage_threshold,
        extra={"feature_version": meta.feature_version, "algo": meta.algo},
    )
