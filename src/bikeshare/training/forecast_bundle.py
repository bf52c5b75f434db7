"""The multi-horizon forecast bundle: one pooled model family, the horizon as a feature.

A bundle is a folder: ``forecast.json`` (horizons, features, calibrations, provenance) plus five
LightGBM boosters: two classifiers (P(bikes <= threshold) and P(docks <= threshold) at t + h), a
median (L1) regressor of the change of bikes until t + h (the point forecast, rounded to a whole
count), and two quantile regressors (0.1, 0.9) of that change, whose sum with the current bikes is
the 80% interval.

Like ``bundle.py`` this module must stay importable with numpy, pandas and lightgbm alone: the
logged MLflow model ships a copy of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORECAST_FORMAT = "bikeshare-forecast-bundle"
FORECAST_FORMAT_VERSION = 1
FORECAST_FILE = "forecast.json"
HORIZON_FEATURE = "horizon_min"
# Booster roles, in the order the files are written.
ROLES: tuple[str, ...] = ("p_no_bikes", "p_no_docks", "bikes_median", "bikes_q10", "bikes_q90")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "station_id",
    "horizon_min",
    "p_no_bikes",
    "p_no_docks",
    "expected_bikes",
    "bikes_lo",
    "bikes_hi",
)


@dataclass(frozen=True)
class Calibration:
    """A monotone piecewise-linear map from raw score to probability."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(raw, self.x, self.y)


@dataclass(frozen=True)
class ForecastMeta:
    """What a forecast bundle is, as stored in ``forecast.json``.

    ``feature_names`` are the base feature columns; the scorer appends ``horizon_min``.
    ``target``, ``horizon_min`` and ``decision_threshold`` mirror the 30-minute bundles so that
    the registry adapter logs both kinds alike (``horizon_min`` is the horizon the KPIs use).
    """

    horizons_min: tuple[int, ...]
    shortage_threshold: int
    feature_names: tuple[str, ...]
    feature_version: str
    calibration_bikes: Calibration
    calibration_docks: Calibration
    threshold_bikes: float
    threshold_docks: float
    algo: str = "lightgbm"
    target: str = "forecast"
    horizon_min: int = 30
    # Per horizon of ``horizons_min``: the point forecast moves off the current count only when
    # the median change is at least this large (chosen on validation; 0.5 = plain rounding).
    median_deadband: tuple[float, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def decision_threshold(self) -> float:
        return self.threshold_bikes

    @property
    def model_features(self) -> tuple[str, ...]:
        return (*self.feature_names, HORIZON_FEATURE)

    def to_json(self) -> str:
        payload = asdict(self)
        payload["format"] = FORECAST_FORMAT
        payload["format_version"] = FORECAST_FORMAT_VERSION
        return json.dumps(payload, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ForecastMeta:
        payload = json.loads(text)
        if payload.pop("format", None) != FORECAST_FORMAT:
            raise ValueError(f"not a {FORECAST_FORMAT}")
        if payload.pop("format_version", None) != FORECAST_FORMAT_VERSION:
            raise ValueError("unsupported forecast bundle format_version")
        return cls(
            **{
                **payload,
                "horizons_min": tuple(int(h) for h in payload["horizons_min"]),
                "median_deadband": tuple(float(d) for d in payload.get("median_deadband", ())),
                "feature_names": tuple(payload["feature_names"]),
                "calibration_bikes": Calibration(**{k: tuple(v) for k, v in payload["calibration_bikes"].items()}),
                "calibration_docks": Calibration(**{k: tuple(v) for k, v in payload["calibration_docks"].items()}),
            }
        )


@dataclass(frozen=True)
class ForecastScores:
    """Per row of an expanded matrix: the two probabilities and the bike count with its 80% band."""

    p_no_bikes: np.ndarray
    p_no_docks: np.ndarray
    expected_bikes: np.ndarray
    bikes_lo: np.ndarray
    bikes_hi: np.ndarray


@dataclass(frozen=True)
class ForecastBundle:
    """Five fitted boosters plus metadata; :meth:`score` and :meth:`curve` are the scoring entries."""

    meta: ForecastMeta
    boosters: dict[str, Any]  # role -> lightgbm.Booster
    num_threads: int = 1

    pyfunc_class = "ForecastPyfunc"

    def _index(self, name: str) -> int:
        return self.meta.feature_names.index(name)

    def score(self, matrix: np.ndarray) -> ForecastScores:
        """Score a matrix whose columns are ``meta.model_features`` (the horizon last)."""
        if matrix.ndim != 2 or matrix.shape[1] != len(self.meta.model_features):
            raise ValueError(
                f"expected a (rows, {len(self.meta.model_features)}) forecast matrix, got shape {matrix.shape}"
            )

        def raw(role: str) -> np.ndarray:
            return np.asarray(self.boosters[role].predict(matrix, num_threads=self.num_threads), dtype=float)

        bikes = np.nan_to_num(matrix[:, self._index("bikes")].astype(float), nan=0.0)
        docks = np.nan_to_num(matrix[:, self._index("docks")].astype(float), nan=0.0)
        capacity = matrix[:, self._index("capacity")].astype(float)
        top = np.where(np.isfinite(capacity), np.maximum(capacity, bikes + docks), bikes + docks)
        # Counts are integers, so their median is one: the L1 booster's shrunk leaf values leave
        # fractions that cost MAE on the many rows that do not move (docs/training_eval.md).
        change = raw("bikes_median")
        if self.meta.median_deadband:
            band = np.interp(matrix[:, -1], self.meta.horizons_min, self.meta.median_deadband)
            change = np.where(np.abs(change) < band, 0.0, change)
        mean = np.clip(np.round(bikes + change), 0.0, top)
        q_lo = bikes + raw("bikes_q10")
        q_hi = bikes + raw("bikes_q90")
        lo = np.clip(np.minimum(q_lo, q_hi), 0.0, top)  # quantile regressors may cross: sort them
        hi = np.clip(np.maximum(q_lo, q_hi), 0.0, top)
        return ForecastScores(
            p_no_bikes=self.meta.calibration_bikes.apply(raw("p_no_bikes")),
            p_no_docks=self.meta.calibration_docks.apply(raw("p_no_docks")),
            expected_bikes=mean,
            bikes_lo=np.minimum(lo, mean),
            bikes_hi=np.maximum(hi, mean),
        )

    def curve(self, frame: pd.DataFrame, horizons: tuple[int, ...] | None = None) -> pd.DataFrame:
        """One row per input row and horizon: ``OUTPUT_COLUMNS`` (``station_id`` when present)."""
        horizons = tuple(horizons or self.meta.horizons_min)
        names = list(self.meta.feature_names)
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ValueError(f"input lacks feature columns {missing} (the forecast model needs {len(names)} columns)")
        base = frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
        ids = frame["station_id"].astype(str).tolist() if "station_id" in frame.columns else None
        return self.curve_matrix(base, ids, horizons)

    def curve_matrix(
        self, base: np.ndarray, station_ids: list[str] | None, horizons: tuple[int, ...] | None = None
    ) -> pd.DataFrame:
        """Like :meth:`curve` from a base matrix (columns ``feature_names``); row numbers when no ids."""
        horizons = tuple(horizons or self.meta.horizons_min)
        scores = self.score(expand_matrix(base, horizons))
        n = base.shape[0]
        ids = np.asarray(station_ids if station_ids is not None else [str(i) for i in range(n)], dtype=object)
        return pd.DataFrame(
            {
                "station_id": np.repeat(ids, len(horizons)),
                "horizon_min": np.tile(np.asarray(horizons, dtype="int64"), n),
                "p_no_bikes": scores.p_no_bikes,
                "p_no_docks": scores.p_no_docks,
                "expected_bikes": scores.expected_bikes,
                "bikes_lo": scores.bikes_lo,
                "bikes_hi": scores.bikes_hi,
            }
        )

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for role in ROLES:
            self.boosters[role].save_model(str(folder / f"{role}.txt"))
        (folder / FORECAST_FILE).write_text(self.meta.to_json())
        return folder

    @classmethod
    def load(cls, folder: Path, *, num_threads: int = 1) -> ForecastBundle:
        import lightgbm

        meta_path = folder / FORECAST_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} holds no {FORECAST_FILE}: not a forecast bundle")
        meta = ForecastMeta.from_json(meta_path.read_text())
        boosters = {role: lightgbm.Booster(model_file=str(folder / f"{role}.txt")) for role in ROLES}
        return cls(meta=meta, boosters=boosters, num_threads=num_threads)


def expand_matrix(base: np.ndarray, horizons: tuple[int, ...]) -> np.ndarray:
    """Each row of ``base`` once per horizon (row-major: all horizons of row 0 first), horizon appended."""
    n, k = base.shape
    out = np.empty((n * len(horizons), k + 1), dtype=np.float64)
    out[:, :k] = np.repeat(base, len(horizons), axis=0)
    out[:, k] = np.tile(np.asarray(horizons, dtype=np.float64), n)
    return out
