"""Scores of ranking and decisions: PR-AUC, F-beta threshold, Brier, reliability, isotonic fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bikeshare.training.bundle import IsotonicCalibration
from bikeshare.training.report import ScoreMetrics

# Calibrated scores keep the raw order: each knot gets this much of its raw score added, so that
# isotonic plateaus do not turn distinct raw scores into ties (ties cost PR-AUC).
_TIE_BREAK = 1e-6


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (the step-wise area under the precision-recall curve); NaN without positives."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y, dtype=bool)
    if y.size == 0 or not y.any():
        return float("nan")
    return float(average_precision_score(y, score))


def score_metrics(y: np.ndarray, score: np.ndarray, decision: np.ndarray, proba: np.ndarray) -> ScoreMetrics:
    """Ranking (PR-AUC of ``score``), decision quality (F1, precision, recall) and Brier of ``proba``."""
    y = np.asarray(y, dtype=bool)
    decision = np.asarray(decision, dtype=bool)
    tp = int(np.sum(decision & y))
    fp = int(np.sum(decision & ~y))
    fn = int(np.sum(~decision & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    brier = float(np.mean((np.asarray(proba, dtype=float) - y) ** 2)) if y.size else float("nan")
    return ScoreMetrics(
        pr_auc=pr_auc(y, score),
        f1=f1,
        precision=precision,
        recall=recall,
        brier=brier,
        rows=int(y.size),
        positives=int(y.sum()),
    )


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    fbeta: float
    precision: float
    recall: float


def best_fbeta_threshold(y: np.ndarray, proba: np.ndarray, *, beta: float) -> ThresholdChoice:
    """The probability threshold (decide ``proba >= threshold``) that maximises F-beta on ``y``."""
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y, dtype=bool)
    if not y.any():
        raise ValueError("cannot choose a threshold: the validation rows hold no positive label")
    precision, recall, thresholds = precision_recall_curve(y, proba)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    b2 = beta * beta
    denom = b2 * precision + recall
    fbeta = np.where(denom > 0, (1 + b2) * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    i = int(np.argmax(fbeta))
    return ThresholdChoice(
        threshold=float(thresholds[i]), fbeta=float(fbeta[i]), precision=float(precision[i]), recall=float(recall[i])
    )


def fit_isotonic(raw: np.ndarray, y: np.ndarray, *, max_knots: int = 2000) -> IsotonicCalibration:
    """Fit a monotone map from raw score to probability on held-out rows.

    The map is kept strictly increasing (a tiny share of the raw score is added), so calibration
    never merges two raw scores into a tie and the ranking, hence PR-AUC, is unchanged.
    """
    from sklearn.isotonic import IsotonicRegression

    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=float)
    if raw.size == 0:
        raise ValueError("cannot calibrate on zero rows")
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    x = np.asarray(iso.X_thresholds_, dtype=float)
    fitted = np.asarray(iso.y_thresholds_, dtype=float)
    if x.size > max_knots:
        keep = np.unique(np.linspace(0, x.size - 1, max_knots).round().astype(int))
        x, fitted = x[keep], fitted[keep]
    # Anchor the ends so that any raw score in [0, 1] maps inside the fitted range.
    if x[0] > 0.0:
        x, fitted = np.concatenate([[0.0], x]), np.concatenate([[fitted[0]], fitted])
    if x[-1] < 1.0:
        x, fitted = np.concatenate([x, [1.0]]), np.concatenate([fitted, [fitted[-1]]])
    knots_y = np.clip(fitted * (1 - _TIE_BREAK) + _TIE_BREAK * x, 0.0, 1.0)
    return IsotonicCalibration(x=tuple(float(v) for v in x), y=tuple(float(v) for v in knots_y))


@dataclass(frozen=True)
class ReliabilityCurve:
    """Mean predicted probability against observed frequency, per probability bin."""

    predicted: tuple[float, ...]
    observed: tuple[float, ...]
    counts: tuple[int, ...]


def reliability_curve(y: np.ndarray, proba: np.ndarray, *, bins: int = 10) -> ReliabilityCurve:
    """Equal-width bins over [0, 1]; empty bins are left out."""
    y = np.asarray(y, dtype=float)
    proba = np.asarray(proba, dtype=float)
    idx = np.minimum((proba * bins).astype(int), bins - 1)
    predicted, observed, counts = [], [], []
    for b in range(bins):
        mask = idx == b
        n = int(mask.sum())
        if n:
            predicted.append(float(proba[mask].mean()))
            observed.append(float(y[mask].mean()))
            counts.append(n)
    return ReliabilityCurve(tuple(predicted), tuple(observed), tuple(counts))
