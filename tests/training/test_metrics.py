"""Calibration, threshold choice and scores on cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bikeshare.training.evaluate import compare_slices
from bikeshare.training.metrics import (
    best_fbeta_threshold,
    fit_isotonic,
    pr_auc,
    reliability_curve,
    score_metrics,
)


def test_isotonic_calibration_matches_observed_frequencies_and_keeps_the_ranking() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 8_000)
    truth = raw**2  # the raw score overstates the probability
    y = rng.uniform(0, 1, raw.size) < truth
    calibration = fit_isotonic(raw, y)
    grid = np.linspace(0.05, 0.95, 10)
    np.testing.assert_allclose(calibration.apply(grid), grid**2, atol=0.07)
    # Strictly increasing: no two raw scores become a tie, so PR-AUC is unchanged.
    fine = np.sort(rng.uniform(0, 1, 5000))
    assert np.all(np.diff(calibration.apply(fine)) > 0)
    assert pr_auc(y, calibration.apply(raw)) == pytest.approx(pr_auc(y, raw), abs=1e-12)
    # Brier improves on the miscalibrated raw score.
    assert np.mean((calibration.apply(raw) - y) ** 2) < np.mean((raw - y) ** 2)


def test_isotonic_maps_the_whole_unit_interval() -> None:
    calibration = fit_isotonic(np.array([0.2, 0.3, 0.6, 0.7]), np.array([0, 0, 1, 1]))
    assert calibration.x[0] == 0.0 and calibration.x[-1] == 1.0
    assert calibration.apply(np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-5)
    assert calibration.apply(np.array([1.0]))[0] == pytest.approx(1.0, abs=1e-5)


def test_threshold_maximises_f_beta() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 1], dtype=bool)
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    # F1 by threshold: >=0.4 gives 4 TP, 1 FP (F1 0.889), the best.
    choice = best_fbeta_threshold(y, p, beta=1.0)
    assert choice.threshold == pytest.approx(0.4)
    assert choice.fbeta == pytest.approx(8 / 9)
    # A small beta favours precision: >= 0.7 is exact (precision 1, recall 0.5).
    assert best_fbeta_threshold(y, p, beta=0.3).threshold == pytest.approx(0.7)
    # A large beta favours recall: everything from 0.4 up still, recall 1.
    assert best_fbeta_threshold(y, p, beta=3.0).recall == 1.0
    with pytest.raises(ValueError, match="no positive"):
        best_fbeta_threshold(np.zeros(4, dtype=bool), p[:4], beta=1.0)


def test_score_metrics_and_persistence_slices() -> None:
    y = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    current = np.array([0, 2, 1, 8, 5, 9])  # short now: the first three (threshold 2)
    proba = np.array([0.9, 0.4, 0.3, 0.1, 0.6, 0.05])
    slices = compare_slices(y=y, current=current, proba=proba, decision=proba >= 0.5, threshold=2)
    base = slices["all"].baseline
    # Persistence says "short" for rows 0, 1, 2: TP 2, FP 1, FN 1.
    assert (base.precision, base.recall, base.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert base.brier == pytest.approx(2 / 6)
    assert slices["onsets"].model.rows == 3 and slices["onsets"].model.positives == 1
    assert slices["recoveries"].model.rows == 3 and slices["recoveries"].model.positives == 2
    # On onsets persistence ranks by -count: the positive (5 bikes) first -> PR-AUC 1; the model too.
    assert slices["onsets"].baseline.pr_auc == pytest.approx(1.0)
    assert slices["onsets"].model.pr_auc == pytest.approx(1.0)
    assert slices["all"].model.f1 == pytest.approx(score_metrics(y, proba, proba >= 0.5, proba).f1)


def test_pr_auc_without_positives_is_nan() -> None:
    assert math.isnan(pr_auc(np.zeros(3, dtype=bool), np.array([0.1, 0.2, 0.3])))


def test_reliability_curve_bins() -> None:
    curve = reliability_curve(np.array([0, 1, 1, 1]), np.array([0.05, 0.15, 0.95, 0.95]), bins=10)
    assert curve.counts == (1, 1, 2)
    assert curve.observed == (0.0, 1.0, 1.0)
