"""Gradient-boosted tree learners behind one call: fit on a matrix, return a bundle scorer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bikeshare.settings import Settings
from bikeshare.training.bundle import LightGBMScorer, RawScorer, XGBoostScorer

ALGOS: tuple[str, ...] = ("lightgbm", "xgboost")


@dataclass(frozen=True)
class FittedModel:
    scorer: RawScorer
    params: dict[str, Any]
    importance: dict[str, float]  # feature -> share of total gain


def positive_weight(y: np.ndarray, settings: Settings) -> float:
    """Weight of a positive row: ``class_weight`` of the settings applied to the class ratio."""
    positives = int(np.sum(y))
    negatives = int(y.size - positives)
    if positives == 0:
        raise ValueError("the training rows hold no positive label: nothing to learn")
    ratio = negatives / positives
    if settings.class_weight == "balanced":
        return ratio
    if settings.class_weight == "sqrt":
        return float(np.sqrt(ratio))
    return 1.0


def fit_model(
    x: np.ndarray, y: np.ndarray, *, feature_names: tuple[str, ...], settings: Settings, algo: str
) -> FittedModel:
    """Fit ``algo`` (lightgbm or xgboost) with the regularised settings; rows weighted by class."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}: expected one of {', '.join(ALGOS)}")
    y = np.asarray(y, dtype=bool)
    weight = np.where(y, positive_weight(y, settings), 1.0)
    if algo == "lightgbm":
        return _fit_lightgbm(x, y, weight, feature_names=feature_names, settings=settings)
    return _fit_xgboost(x, y, weight, feature_names=feature_names, settings=settings)


def _shares(names: tuple[str, ...], gains: np.ndarray) -> dict[str, float]:
    total = float(np.sum(gains)) or 1.0
    return {name: float(g) / total for name, g in zip(names, gains, strict=True)}


def _fit_lightgbm(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, feature_names: tuple[str, ...], settings: Settings
) -> FittedModel:
    import lightgbm

    params: dict[str, Any] = {
        "objective": "binary",
        "learning_rate": settings.train_learning_rate,
        "num_leaves": settings.train_num_leaves,
        "min_data_in_leaf": settings.train_min_rows_per_leaf,
        "bagging_fraction": settings.train_subsample,
        "bagging_freq": 1,
        "feature_fraction": settings.train_feature_fraction,
        "lambda_l2": settings.train_l2,
        "max_bin": settings.train_max_bin,
        "num_threads": settings.train_threads,
        "seed": settings.random_seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
    data = lightgbm.Dataset(x, label=y.astype(np.float32), weight=weight, feature_name=list(feature_names))
    booster = lightgbm.train(params, data, num_boost_round=settings.train_num_trees)
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=float)
    return FittedModel(
        scorer=LightGBMScorer(booster=booster, num_threads=settings.train_threads),
        params={**params, "num_boost_round": settings.train_num_trees},
        importance=_shares(feature_names, gains),
    )


def _fit_xgboost(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, feature_names: tuple[str, ...], settings: Settings
) -> FittedModel:
    import xgboost

    params: dict[str, Any] = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "eta": settings.train_learning_rate,
        "max_leaves": settings.train_num_leaves,
        "grow_policy": "lossguide",
        "max_depth": 0,
        # XGBoost bounds leaves by hessian mass, not rows; p(1-p) ~ 0.1 near the class ratio.
        "min_child_weight": settings.train_min_rows_per_leaf * 0.1,
        "subsample": settings.train_subsample,
        "colsample_bytree": settings.train_feature_fraction,
        "lambda": settings.train_l2,
        "max_bin": settings.train_max_bin,
        "nthread": settings.train_threads,
        "seed": settings.random_seed,
        "verbosity": 0,
    }
    data = xgboost.DMatrix(x, label=y.astype(np.float32), weight=weight, feature_names=list(feature_names))
    booster = xgboost.train(params, data, num_boost_round=settings.train_num_trees)
    scores = booster.get_score(importance_type="total_gain")
    gains = np.asarray([scores.get(name, 0.0) for name in feature_names], dtype=float)
    return FittedModel(
        scorer=XGBoostScorer(booster=booster),
        params={**params, "num_boost_round": settings.train_num_trees},
        importance=_shares(feature_names, gains),
    )
