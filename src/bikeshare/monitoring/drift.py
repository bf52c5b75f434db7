"""Drift of live values against a training baseline: PSI and two-sample KS (numpy/scipy only).

PSI = sum over bins of (live_i - base_i) * ln(live_i / base_i), where base_i and live_i are the
shares of present values in bin i. A bin that is empty on either side would make the log infinite,
so every share is first raised to at least ``PSI_EPSILON`` (1e-4); an empty bin then adds a finite,
large term. Numeric features use the baseline's quantile bins; categorical features use the
baseline's categories plus an "other" bucket, so an unseen category counts as drift.

KS compares the live values with the baseline's sorted reference sample (all training values when
there were at most ``sample_size``, else that many mid-point quantiles); the p-value comes from
``scipy.stats.ks_2samp`` with that sample size. KS is not defined for categorical features (NaN).

Missing values are not binned: each side's missing rate is reported next to the scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bikeshare.monitoring.baseline import (
    FeatureBaseline,
    bin_counts,
    category_counts,
    category_values,
    numeric_values,
)

PSI_EPSILON = 1e-4
DEFAULT_PSI_WARN = 0.2
# Name under which the predicted probability is baselined and scored, next to the features.
PREDICTION_FEATURE = "predicted_proba"

DRIFT_COLUMNS: tuple[str, ...] = (
    "feature",
    "kind",
    "psi",
    "ks_stat",
    "ks_pvalue",
    "live_rows",
    "missing_rate",
    "baseline_missing_rate",
    "drifting",
)


@dataclass(frozen=True)
class KsResult:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (NaN when undefined)."""

    statistic: float
    pvalue: float


def psi_from_shares(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """PSI of two share vectors over the same bins (each should sum to 1); shares floored at PSI_EPSILON."""
    base = np.asarray(expected, dtype=float)
    live = np.asarray(actual, dtype=float)
    if base.shape != live.shape or base.ndim != 1 or not len(base):
        raise ValueError(f"PSI needs two share vectors of the same length, got {base.shape} and {live.shape}")
    if (base < 0).any() or (live < 0).any():
        raise ValueError("PSI shares must not be negative")
    base = np.maximum(base, PSI_EPSILON)
    live = np.maximum(live, PSI_EPSILON)
    return float(np.sum((live - base) * np.log(live / base)))


def live_shares(
    baseline: FeatureBaseline, live_values: Iterable[Any] | pd.Series | np.ndarray
) -> tuple[np.ndarray, int, int]:
    """Shares of the live present values over the baseline's bins, present count, missing count."""
    if baseline.kind == "numeric":
        present, missing = numeric_values(live_values)
        counts = bin_counts(present, baseline.bin_edges)
    else:
        present, missing = category_values(live_values)
        counts = category_counts(present, baseline.categories)
    n = len(present)
    shares = counts / n if n else np.zeros(len(counts))
    return shares, n, missing


def psi(baseline: FeatureBaseline, live_values: Iterable[Any] | pd.Series | np.ndarray) -> float:
    """Population stability index of the live values against the baseline (NaN if either side is empty)."""
    if not baseline.present:
        return math.nan
    shares, n, _ = live_shares(baseline, live_values)
    if not n:
        return math.nan
    return psi_from_shares(baseline.proportions, shares)


def ks(baseline: FeatureBaseline, live_values: Iterable[Any] | pd.Series | np.ndarray) -> KsResult:
    """KS statistic and p-value of live values against the baseline's reference sample."""
    if baseline.kind != "numeric" or not baseline.sample:
        return KsResult(math.nan, math.nan)
    present, _ = numeric_values(live_values)
    if not len(present):
        return KsResult(math.nan, math.nan)
    result = stats.ks_2samp(np.asarray(baseline.sample, dtype=float), present)
    return KsResult(float(result.statistic), float(result.pvalue))


def drift_table(
    baselines: Mapping[str, FeatureBaseline],
    live_frame: pd.DataFrame,
    *,
    psi_warn: float = DEFAULT_PSI_WARN,
) -> pd.DataFrame:
    """One row per baselined feature: PSI, KS, live rows, missing rates and ``drifting`` (psi > psi_warn).

    Every baselined feature must be a column of ``live_frame``; a missing column is an error, since
    a feature that vanished from the live data is a pipeline fault, not drift.
    """
    absent = [name for name in baselines if name not in live_frame.columns]
    if absent:
        raise ValueError(f"live frame lacks baselined features {absent}")
    rows = []
    for name, baseline in baselines.items():
        column = live_frame[name]
        shares, present, missing = live_shares(baseline, column)
        value_psi = psi_from_shares(baseline.proportions, shares) if baseline.present and present else math.nan
        result = ks(baseline, column)
        live_rows = len(column)
        rows.append(
            {
                "feature": name,
                "kind": baseline.kind,
                "psi": value_psi,
                "ks_stat": result.statistic,
                "ks_pvalue": result.pvalue,
                "live_rows": live_rows,
                "missing_rate": missing / live_rows if live_rows else math.nan,
                "baseline_missing_rate": baseline.missing_rate,
                "drifting": bool(not math.isnan(value_psi) and value_psi > psi_warn),
            }
        )
    frame = pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))
    return frame.astype(
        {
            "feature": "string",
            "kind": "string",
            "psi": "float64",
            "ks_stat": "float64",
            "ks_pvalue": "float64",
            "live_rows": "int64",
            "missing_rate": "float64",
            "baseline_missing_rate": "float64",
            "drifting": "bool",
        }
    )
