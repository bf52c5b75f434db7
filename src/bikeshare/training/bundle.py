"""The model bundle: everything needed to turn feature rows into calibrated decisions.

A bundle is a folder: ``bundle.json`` (targets, features, threshold, calibration, provenance) plus
the booster file. Training writes it, MLflow stores it as the model's artifacts, the endpoint and
the SageMaker image (``/opt/ml/model``) load it. Scoring works on a float matrix whose columns are
``feature_names`` in order, so the hot path never builds a DataFrame.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bikeshare.enums import TARGET_NAMES, Target

BUNDLE_FORMAT = "bikeshare-model-bundle"
BUNDLE_FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"

TARGETS: tuple[str, ...] = TARGET_NAMES  # the public name importers use


class RawScorer(Protocol):
    """A fitted booster behind a uniform call: feature matrix in, uncalibrated probability out."""

    def raw_proba(self, features: np.ndarray) -> np.ndarray: ...

    def save(self, folder: Path) -> str: ...


@dataclass(frozen=True)
class IsotonicCalibration:
    """A monotone piecewise-linear map from raw score to probability (fitted isotonic steps)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or not self.x:
            raise ValueError("calibration needs the same, non-zero number of x and y knots")
        if any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("calibration x knots must be non-decreasing")

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(raw, self.x, self.y)

    @classmethod
    def identity(cls) -> IsotonicCalibration:
        return cls(x=(0.0, 1.0), y=(0.0, 1.0))


@dataclass(frozen=True)
class BundleMeta:
    """What a bundle is, as stored in ``bundle.json``."""

    target: str  # a Target value, checked on construction
    horizon_min: int
    shortage_threshold: int
    algo: str
    feature_names: tuple[str, ...]
    decision_threshold: float
    calibration: IsotonicCalibration
    feature_version: str
    booster_file: str
    categorical_features: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", Target(self.target).value)

    def to_json(self) -> str:
        payload = asdict(self)
        payload["calibration"] = {"method": "isotonic", "x": list(self.calibration.x), "y": list(self.calibration.y)}
        payload["format"] = BUNDLE_FORMAT
        payload["format_version"] = BUNDLE_FORMAT_VERSION
        return json.dumps(payload, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BundleMeta:
        payload = json.loads(text)
        if payload.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"not a {BUNDLE_FORMAT} (format={payload.get('format')!r})")
        if payload.get("format_version") != BUNDLE_FORMAT_VERSION:
            raise ValueError(f"unsupported bundle format_version {payload.get('format_version')!r}")
        calibration = payload.pop("calibration")
        for key in ("format", "format_version"):
            payload.pop(key)
        return cls(
            **{
                **payload,
                "feature_names": tuple(payload["feature_names"]),
                "categorical_features": tuple(payload.get("categorical_features", ())),
                "calibration": IsotonicCalibration(x=tuple(calibration["x"]), y=tuple(calibration["y"])),
            }
        )


@dataclass(frozen=True)
class ModelBundle:
    """A fitted scorer plus its metadata; ``predict_proba`` is the only scoring entry point."""

    meta: BundleMeta
    scorer: RawScorer

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Calibrated probability of a shortage for each row of ``features`` (columns = feature_names)."""
        if features.ndim != 2 or features.shape[1] != len(self.meta.feature_names):
            raise ValueError(
                f"expected a (rows, {len(self.meta.feature_names)}) feature matrix, got shape {features.shape}"
            )
        return self.meta.calibration.apply(self.scorer.raw_proba(features))

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """The shortage decision at the bundle's validated threshold."""
        return proba >= self.meta.decision_threshold

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        booster_file = self.scorer.save(folder)
        if booster_file != self.meta.booster_file:
            raise ValueError(f"scorer wrote {booster_file}, bundle expects {self.meta.booster_file}")
        (folder / BUNDLE_FILE).write_text(self.meta.to_json())
        return folder

    @classmethod
    def load(cls, folder: Path, *, num_threads: int = 1) -> ModelBundle:
        meta_path = folder / BUNDLE_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} holds no {BUNDLE_FILE}: not a model bundle")
        meta = BundleMeta.from_json(meta_path.read_text())
        return cls(meta=meta, scorer=load_scorer(meta.algo, folder / meta.booster_file, num_threads=num_threads))


@dataclass(frozen=True)
class LightGBMScorer:
    booster: Any  # lightgbm.Booster
    num_threads: int = 1

    FILE = "booster.txt"

    def raw_proba(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(features, num_threads=self.num_threads))

    def save(self, folder: Path) -> str:
        self.booster.save_model(str(folder / self.FILE))
        return self.FILE


@dataclass(frozen=True)
class XGBoostScorer:
    booster: Any  # xgboost.Booster

    FILE = "booster.ubj"

    def raw_proba(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(features))

    def save(self, folder: Path) -> str:
        self.booster.save_model(str(folder / self.FILE))
        return self.FILE


def load_scorer(algo: str, path: Path, *, num_threads: int = 1) -> RawScorer:
    """Read a booster file written by :meth:`RawScorer.save`."""
    if algo == "lightgbm":
        import lightgbm

        return LightGBMScorer(booster=lightgbm.Booster(model_file=str(path)), num_threads=num_threads)
    if algo == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(path))
        booster.set_param({"nthread": num_threads})
        return XGBoostScorer(booster=booster)
    raise ValueError(f"unknown algo {algo!r}: expected lightgbm or xgboost")
