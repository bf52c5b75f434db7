"""Gradient-boosted tree learners behind one call: fit on a matrix, return a bundle scorer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bikeshare.settings import Settings
from bikeshare.training.bundle import LightGBMScorer, RawScorer, XGBoostScorer

ALGOS: tuple[str, ...] = ("lightgbm", "xgboost")
# Rounds without a better validation log loss after which the first fit stops.
EARLY_STOP_ROUNDS = 30


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


def class_weights(y: np.ndarray, settings: Settings, *, base: np.ndarray | None = None) -> np.ndarray:
    """Row weights: ``base`` (default 1; e.g. 1/r of sampled rows) times the positive weight on positives.

    The class ratio is counted in ``base`` weight, so sampled and weighted negatives count as many.
    """
    y = np.asarray(y, dtype=bool)
    base = np.ones(y.size, dtype=np.float32) if base is None else np.asarray(base, dtype=np.float32)
    positives = float(base[y].sum())
    if positives == 0:
        raise ValueError("the training rows hold no positive label: nothing to learn")
    ratio = float(base[~y].sum()) / positives
    weight = {"balanced": ratio, "sqrt": float(np.sqrt(ratio))}.get(settings.class_weight, 1.0)
    return np.where(y, base * np.float32(weight), base).astype(np.float32)


def fit_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    feature_names: tuple[str, ...],
    settings: Settings,
    algo: str,
    weight: np.ndarray | None = None,
) -> FittedModel:
    """One plain fit of ``algo`` (lightgbm or xgboost) with the regularised settings; rows weighted by class."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}: expected one of {', '.join(ALGOS)}")
    y = np.asarray(y, dtype=bool)
    weight = np.where(y, positive_weight(y, settings), 1.0) if weight is None else weight
    if algo == "lightgbm":
        return _fit_lightgbm(x, y, weight, feature_names=feature_names, settings=settings)
    return _fit_xgboost(x, y, weight, feature_names=feature_names, settings=settings)


@dataclass(frozen=True)
class StagedFit:
    """A model fitted on the training rows, its raw scores there and on validation, and the kept model."""

    first: FittedModel  # fitted on the training rows only: what validation scores
    final: FittedModel  # what ships: ``first``, or the refit on training + validation rows
    raw_train: np.ndarray  # ``first``'s raw probabilities of the training rows ``train_scored``
    raw_validation: np.ndarray  # ``first``'s raw probabilities of the validation rows
    rounds: int  # boosting rounds of ``first`` (early stopping on validation)
    timings: dict[str, float]


def fit_staged(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    *,
    train_rows: int,
    train_scored: np.ndarray,
    feature_names: tuple[str, ...],
    settings: Settings,
    algo: str,
    refit: bool,
) -> StagedFit:
    """Fit on the first ``train_rows`` rows of ``x``, score the rest (validation) and the training rows
    ``train_scored`` (indices, for the overfit check), optionally refit on all.

    LightGBM bins ``x`` once: the training and validation parts are subsets of one Dataset, the
    first fit stops early on validation log loss, its kept scores stand in for predictions, and
    the refit (``refit``) reuses the bins and the first fit's round count.
    """
    if algo == "lightgbm":
        return _staged_lightgbm(
            x,
            y,
            weight,
            train_rows=train_rows,
            train_scored=train_scored,
            feature_names=feature_names,
            settings=settings,
            refit=refit,
        )
    timings: dict[str, float] = {}
    started = time.perf_counter()
    first = fit_model(
        x[:train_rows],
        y[:train_rows],
        feature_names=feature_names,
        settings=settings,
        algo=algo,
        weight=weight[:train_rows],
    )
    timings["fit_s"] = time.perf_counter() - started
    raw_train = first.scorer.raw_proba(x[train_scored])
    raw_validation = first.scorer.raw_proba(x[train_rows:])
    final = first
    if refit:
        started = time.perf_counter()
        final = fit_model(x, y, feature_names=feature_names, settings=settings, algo=algo, weight=weight)
        timings["refit_s"] = time.perf_counter() - started
    return StagedFit(first, final, raw_train, raw_validation, settings.train_num_trees, timings)


def _shares(names: tuple[str, ...], gains: np.ndarray) -> dict[str, float]:
    total = float(np.sum(gains)) or 1.0
    return {name: float(g) / total for name, g in zip(names, gains, strict=True)}


def lightgbm_params(settings: Settings) -> dict[str, Any]:
    """LightGBM parameters of the regularised settings (without the round count)."""
    return {
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


def _fit_lightgbm(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, *, feature_names: tuple[str, ...], settings: Settings
) -> FittedModel:
    import lightgbm

    params = lightgbm_params(settings)
    data = lightgbm.Dataset(x, label=y.astype(np.float32), weight=weight, feature_name=list(feature_names))
    booster = lightgbm.train(params, data, num_boost_round=settings.train_num_trees)
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=float)
    return FittedModel(
        scorer=LightGBMScorer(booster=booster, num_threads=settings.train_threads),
        params={**params, "num_boost_round": settings.train_num_trees},
        importance=_shares(feature_names, gains),
    )


def _lightgbm_fitted(
    booster: Any, params: dict[str, Any], feature_names: tuple[str, ...], settings: Settings
) -> FittedModel:
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=float)
    return FittedModel(
        scorer=LightGBMScorer(booster=booster, num_threads=settings.train_threads),
        params={**params, "num_boost_round": booster.current_iteration()},
        importance=_shares(feature_names, gains),
    )


def _kept_scores(booster: Any, which: str) -> np.ndarray:
    """The probabilities LightGBM keeps for its training (``train``) or first validation set: no predict."""
    kept: list[np.ndarray] = []

    def grab(preds: np.ndarray, _: Any) -> tuple[str, float, bool]:
        kept.append(np.asarray(preds, dtype=float))
        return "kept", 0.0, True

    (booster.eval_train if which == "train" else booster.eval_valid)(feval=grab)
    return kept[0]


def _staged_lightgbm(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    *,
    train_rows: int,
    train_scored: np.ndarray,
    feature_names: tuple[str, ...],
    settings: Settings,
    refit: bool,
) -> StagedFit:
    import lightgbm

    timings: dict[str, float] = {}
    params = lightgbm_params(settings)
    started = time.perf_counter()
    full = lightgbm.Dataset(
        x,
        label=y.astype(np.float32),
        weight=weight,
        feature_name=list(feature_names),
        params=params,
        free_raw_data=False,
    ).construct()
    train = full.subset(np.arange(train_rows, dtype=np.int32))
    validation = full.subset(np.arange(train_rows, len(y), dtype=np.int32))
    timings["bin_s"] = time.perf_counter() - started
    started = time.perf_counter()
    booster = lightgbm.train(
        {**params, "metric": "binary_logloss"},
        train,
        num_boost_round=settings.train_num_trees,
        valid_sets=[validation],
        callbacks=[lightgbm.early_stopping(EARLY_STOP_ROUNDS, verbose=False)],
        keep_training_booster=True,
    )
    timings["fit_s"] = time.perf_counter() - started
    rounds = int(booster.best_iteration or booster.current_iteration())
    if rounds < booster.current_iteration():
        kept = lightgbm.Booster(model_str=booster.model_to_string(num_iteration=rounds))
        raw_train = kept.predict(x[train_scored], num_threads=settings.train_threads)
        raw_validation = kept.predict(x[train_rows:], num_threads=settings.train_threads)
    else:
        raw_train, raw_validation = _kept_scores(booster, "train")[train_scored], _kept_scores(booster, "valid")
        kept = lightgbm.Booster(model_str=booster.model_to_string())
    del booster, train, validation
    timings["score_validation_s"] = time.perf_counter() - started - timings["fit_s"]
    booster = kept
    first = _lightgbm_fitted(booster, params, feature_names, settings)
    final = first
    if refit:
        started = time.perf_counter()
        final = _lightgbm_fitted(lightgbm.train(params, full, num_boost_round=rounds), params, feature_names, settings)
        timings["refit_s"] = time.perf_counter() - started
    return StagedFit(first, final, raw_train, raw_validation, rounds, timings)


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
