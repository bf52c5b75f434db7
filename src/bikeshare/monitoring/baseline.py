"""Per-feature baselines from training data: what drift is measured against.

A :class:`FeatureBaseline` is small and JSON-serialisable, so it can be stored with the model
version (an MLflow artifact) and in the lake. For a numeric feature it holds quantile bin edges and
the share of training rows in each bin (for PSI), summary statistics, and a sorted reference sample
of at most ``sample_size`` values (for KS). For a categorical feature it holds the share of each
category. Missing values (None, NaN, and for numeric features also +-inf) are counted apart and
never enter the bins.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

BASELINE_FORMAT_VERSION = 1
DEFAULT_BINS = 10
DEFAULT_SAMPLE_SIZE = 1000
DEFAULT_MAX_CATEGORIES = 50
# Live (or rare training) categories outside the kept ones are counted in this bucket.
OTHER_CATEGORY = "__other__"

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class FeatureBaseline:
    """Training-time distribution of one feature (or of the predicted probability)."""

    name: str
    kind: FeatureKind
    rows: int
    missing: int
    # numeric: inner bin edges; bins are (-inf, e0], (e0, e1], ..., (e_last, +inf)
    bin_edges: tuple[float, ...] = ()
    # numeric: share of present rows per bin; categorical: share per entry of ``categories``
    proportions: tuple[float, ...] = ()
    # categorical: kept categories, the last one is OTHER_CATEGORY
    categories: tuple[str, ...] = ()
    # numeric: sorted reference values for KS (all of them when there are few)
    sample: tuple[float, ...] = ()
    stats: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def present(self) -> int:
        """Training rows with a value."""
        return self.rows - self.missing

    @property
    def missing_rate(self) -> float:
        return self.missing / self.rows if self.rows else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists, NaN becomes None)."""
        out = asdict(self)
        out["stats"] = {k: _json_float(v) for k, v in self.stats.items()}
        for key in ("bin_edges", "proportions", "categories", "sample"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureBaseline:
        """Inverse of :meth:`to_dict`; a clear error names what is missing or wrong."""
        try:
            kind = data["kind"]
            if kind not in ("numeric", "categorical"):
                raise ValueError(f"kind must be numeric or categorical, not {kind!r}")
            baseline = cls(
                name=str(data["name"]),
                kind=kind,
                rows=int(data["rows"]),
                missing=int(data["missing"]),
                bin_edges=tuple(float(v) for v in data.get("bin_edges", ())),
                proportions=tuple(float(v) for v in data.get("proportions", ())),
                categories=tuple(str(v) for v in data.get("categories", ())),
                sample=tuple(float(v) for v in data.get("sample", ())),
                stats={k: (None if v is None else float(v)) for k, v in dict(data.get("stats", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            name = data.get("name", "?") if isinstance(data, Mapping) else "?"
            raise ValueError(f"feature baseline {name!r} is malformed: {exc!r}") from exc
        baseline.check()
        return baseline

    def check(self) -> None:
        """Raise ValueError when the parts do not fit together."""
        if self.rows < 0 or not 0 <= self.missing <= self.rows:
            raise ValueError(f"feature baseline {self.name!r}: rows={self.rows}, missing={self.missing}")
        if self.kind == "numeric":
            if self.present and len(self.proportions) != len(self.bin_edges) + 1:
                raise ValueError(
                    f"feature baseline {self.name!r}: {len(self.bin_edges)} edges need "
                    f"{len(self.bin_edges) + 1} proportions, got {len(self.proportions)}"
                )
            if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
                raise ValueError(f"feature baseline {self.name!r}: bin edges must increase")
        elif len(self.categories) != len(self.proportions):
            raise ValueError(f"feature baseline {self.name!r}: one proportion per category is needed")


def is_categorical(values: pd.Series) -> bool:
    """Bool, string, object and category columns are categorical; numbers are numeric."""
    return bool(
        pd.api.types.is_bool_dtype(values)
        or isinstance(values.dtype, pd.CategoricalDtype)
        or not pd.api.types.is_numeric_dtype(values)
    )


def numeric_values(values: Iterable[Any] | pd.Series | np.ndarray) -> tuple[np.ndarray, int]:
    """Finite float values and the count of missing ones (None, NaN, +-inf)."""
    if isinstance(values, pd.Series):
        series = values
    else:
        series = pd.Series(values if isinstance(values, np.ndarray) else list(values))
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        series = pd.to_numeric(series.astype(object), errors="coerce")
    array = series.to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(array)
    return array[finite], int((~finite).sum())


def category_values(values: Iterable[Any] | pd.Series | np.ndarray) -> tuple[np.ndarray, int]:
    """Present values as strings and the count of missing ones."""
    series = pd.Series(values, dtype=object)
    present = series.notna()
    return series[present].astype(str).to_numpy(dtype=object), int((~present).sum())


def bin_counts(values: np.ndarray, edges: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Counts per right-closed bin: (-inf, e0], (e0, e1], ..., (e_last, +inf)."""
    index = np.searchsorted(np.asarray(edges, dtype=float), values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def category_counts(values: np.ndarray, categories: tuple[str, ...]) -> np.ndarray:
    """Counts per kept category; anything else goes to the OTHER_CATEGORY bucket (last)."""
    position = {c: i for i, c in enumerate(categories)}
    other = position[OTHER_CATEGORY]
    counts = np.zeros(len(categories), dtype=np.int64)
    for value, count in zip(*np.unique(values.astype(str), return_counts=True), strict=True):
        counts[position.get(str(value), other)] += int(count)
    return counts


def numeric_baseline(
    name: str,
    values: Iterable[Any] | pd.Series | np.ndarray,
    *,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> FeatureBaseline:
    """Quantile bins, proportions, stats and a KS reference sample of one numeric feature."""
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if sample_size < 10:
        raise ValueError(f"sample_size must be at least 10, got {sample_size}")
    present, missing = numeric_values(values)
    rows = len(present) + missing
    if not len(present):
        return FeatureBaseline(name=name, kind="numeric", rows=rows, missing=missing, stats=_stats(present))
    # Repeated quantiles (discrete or constant features) collapse into one edge.
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
    proportions = bin_counts(present, edges) / len(present)
    ordered = np.sort(present)
    if len(ordered) > sample_size:
        # Mid-point quantiles stand for the distribution; inverted_cdf keeps them actual values.
        ordered = np.quantile(ordered, (np.arange(sample_size) + 0.5) / sample_size, method="inverted_cdf")
    return FeatureBaseline(
        name=name,
        kind="numeric",
        rows=rows,
        missing=missing,
        bin_edges=tuple(float(e) for e in edges),
        proportions=tuple(float(p) for p in proportions),
        sample=tuple(float(v) for v in ordered),
        stats=_stats(present),
    )


def categorical_baseline(
    name: str,
    values: Iterable[Any] | pd.Series | np.ndarray,
    *,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> FeatureBaseline:
    """Share of each of the ``max_categories`` most frequent categories, the rest as OTHER_CATEGORY."""
    if max_categories < 1:
        raise ValueError(f"max_categories must be at least 1, got {max_categories}")
    present, missing = category_values(values)
    uniques, counts = np.unique(present.astype(str), return_counts=True) if len(present) else ([], [])
    ranked = sorted(zip(uniques, counts, strict=True), key=lambda uc: (-int(uc[1]), str(uc[0])))
    kept = (*sorted(str(u) for u, _ in ranked[:max_categories] if u != OTHER_CATEGORY), OTHER_CATEGORY)
    shares = category_counts(present, kept) / len(present) if len(present) else np.zeros(len(kept))
    return FeatureBaseline(
        name=name,
        kind="categorical",
        rows=len(present) + missing,
        missing=missing,
        categories=kept,
        proportions=tuple(float(p) for p in shares),
        stats={"distinct": float(len(uniques))},
    )


def build_baselines(
    frame: pd.DataFrame,
    *,
    features: Iterable[str] | None = None,
    categorical: Iterable[str] = (),
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> dict[str, FeatureBaseline]:
    """One baseline per column of ``features`` (default: all); kinds follow the dtype unless named."""
    names = list(frame.columns if features is None else features)
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise ValueError(f"columns {absent} are not in the training frame")
    forced = set(categorical)
    out: dict[str, FeatureBaseline] = {}
    for name in names:
        column = frame[name]
        if name in forced or is_categorical(column):
            out[name] = categorical_baseline(name, column, max_categories=max_categories)
        else:
            out[name] = numeric_baseline(name, column, bins=bins, sample_size=sample_size)
    return out


def baselines_to_json(baselines: Mapping[str, FeatureBaseline], *, meta: Mapping[str, Any] | None = None) -> str:
    """Serialise a set of baselines (and optional metadata such as the model version) to JSON."""
    payload = {
        "format_version": BASELINE_FORMAT_VERSION,
        "meta": dict(meta or {}),
        "features": [b.to_dict() for b in baselines.values()],
    }
    return json.dumps(payload, allow_nan=False, sort_keys=True)


def baselines_from_json(text: str) -> dict[str, FeatureBaseline]:
    """Inverse of :func:`baselines_to_json`."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"baselines are not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != BASELINE_FORMAT_VERSION:
        raise ValueError(f"baselines JSON needs format_version {BASELINE_FORMAT_VERSION}")
    baselines = [FeatureBaseline.from_dict(item) for item in payload.get("features", [])]
    return {b.name: b for b in baselines}


def _stats(present: np.ndarray) -> dict[str, float | None]:
    if not len(present):
        return dict.fromkeys(("mean", "std", "min", "p05", "p50", "p95", "max"))
    p05, p50, p95 = np.quantile(present, [0.05, 0.5, 0.95])
    return {
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "p05": float(p05),
        "p50": float(p50),
        "p95": float(p95),
        "max": float(present.max()),
    }


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
