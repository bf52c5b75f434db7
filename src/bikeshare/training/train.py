"""Train one target: time split, class-weighted boosting, isotonic calibration, F-beta threshold,
evaluation against persistence, artifacts and model card."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bikeshare.features.schema import FEATURE_COLUMNS, FEATURE_VERSION, feature_matrix
from bikeshare.settings import Settings
from bikeshare.training import artifacts as art
from bikeshare.training.bundle import BundleMeta, ModelBundle
from bikeshare.training.evaluate import evaluate_scores, label_column, labelled_rows
from bikeshare.training.metrics import best_fbeta_threshold, fit_isotonic, pr_auc
from bikeshare.training.models import fit_model
from bikeshare.training.report import EvaluationReport
from bikeshare.training.split import TimeSplit, plan_split, split_frame

# The train PR-AUC of the overfit check is measured on at most this many training rows.
_TRAIN_SCORE_ROWS = 400_000


@dataclass(frozen=True)
class TrainingResult:
    """Everything one training run produced (what the registry logs)."""

    bundle: ModelBundle
    report: EvaluationReport
    artifacts: dict[str, Path]
    params: dict[str, Any]
    data_window: tuple[str, str]  # first and last slot (ISO UTC) of all rows used
    split: TimeSplit
    importance: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def overfit_ok(self) -> bool:
        return bool(self.report.extra.get("overfit_ok", False))


def default_artifacts_dir(settings: Settings, target: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return settings.state_dir / "training" / f"{settings.city}-{target}-{stamp}"


def train_model(
    features: pd.DataFrame,
    *,
    target: str,
    settings: Settings,
    algo: str = "lightgbm",
    test_start: pd.Timestamp | None = None,
    validation_start: pd.Timestamp | None = None,
    artifacts_dir: Path | None = None,
) -> TrainingResult:
    """Fit, calibrate and evaluate a ``target`` model on feature rows (from ``build_features``).

    The split is ordered in time (``plan_split``); persistence is scored on the same test rows.
    Artifacts (PNG curves, model card) are written to ``artifacts_dir``.
    """
    timings: dict[str, float] = {}
    rows = labelled_rows(features, target)
    if rows.empty:
        raise ValueError(f"no feature rows with a known {label_column(target)} label to train on")
    split = plan_split(rows["slot"], settings=settings, test_start=test_start, validation_start=validation_start)
    train, validation, test = split_frame(rows, split)
    y_col = label_column(target)
    names = tuple(FEATURE_COLUMNS)
    y_train = train[y_col].to_numpy(dtype=bool)
    y_val = validation[y_col].to_numpy(dtype=bool)
    if not y_val.any():
        raise ValueError("the validation rows hold no positive label: a longer window is needed")

    started = time.perf_counter()
    fitted = fit_model(feature_matrix(train, names), y_train, feature_names=names, settings=settings, algo=algo)
    timings["fit_s"] = time.perf_counter() - started

    raw_val = fitted.scorer.raw_proba(feature_matrix(validation, names))
    calibration = fit_isotonic(raw_val, y_val)
    proba_val = calibration.apply(raw_val)
    choice = best_fbeta_threshold(y_val, proba_val, beta=settings.fbeta)
    sample = train.sample(n=min(len(train), _TRAIN_SCORE_ROWS), random_state=settings.random_seed)
    train_pr_auc = pr_auc(sample[y_col].to_numpy(dtype=bool), fitted.scorer.raw_proba(feature_matrix(sample, names)))
    validation_pr_auc = pr_auc(y_val, proba_val)
    if settings.refit_on_validation:
        # The calibration and threshold chosen above stay; the booster is refitted on train and
        # validation together, so that the most recent days are learnt from too.
        started = time.perf_counter()
        both = pd.concat([train, validation])
        fitted = fit_model(
            feature_matrix(both, names),
            both[y_col].to_numpy(dtype=bool),
            feature_names=names,
            settings=settings,
            algo=algo,
        )
        timings["refit_s"] = time.perf_counter() - started

    meta = BundleMeta(
        target=target,
        horizon_min=settings.horizon_min,
        shortage_threshold=settings.shortage_threshold,
        algo=algo,
        feature_names=names,
        decision_threshold=choice.threshold,
        calibration=calibration,
        feature_version=FEATURE_VERSION,
        booster_file=type(fitted.scorer).FILE,  # type: ignore[attr-defined]
        provenance={
            "city": settings.city,
            "trained_at": datetime.now(UTC).isoformat(),
            "split": split.as_dict(),
            "train_rows": len(train),
            "validation_rows": len(validation),
            "test_rows": len(test),
            "refit_on_validation": settings.refit_on_validation,
        },
    )
    bundle = ModelBundle(meta=meta, scorer=fitted.scorer)

    started = time.perf_counter()
    proba_test = bundle.predict_proba(feature_matrix(test, names))
    timings["score_test_s"] = time.perf_counter() - started
    gap = train_pr_auc - validation_pr_auc
    report = evaluate_scores(
        test,
        proba_test,
        target=target,
        decision_threshold=choice.threshold,
        shortage_threshold=settings.shortage_threshold,
        train_pr_auc=train_pr_auc,
        validation_pr_auc=validation_pr_auc,
        extra={
            "algo": algo,
            "feature_version": FEATURE_VERSION,
            "overfit_ok": bool(gap < settings.max_overfit_gap),
            "max_overfit_gap": settings.max_overfit_gap,
            "validation_fbeta": choice.fbeta,
            "split": split.as_dict(),
        },
    )
    out = artifacts_dir or default_artifacts_dir(settings, target)
    paths = write_artifacts(
        out,
        report=report,
        test=test,
        proba=proba_test,
        target=target,
        algo=algo,
        split=split,
        settings=settings,
        params=fitted.params,
        importance=fitted.importance,
    )
    window = (pd.Timestamp(rows["slot"].min()).isoformat(), pd.Timestamp(rows["slot"].max()).isoformat())
    params = {
        **{k: v for k, v in fitted.params.items() if k not in ("verbose", "verbosity")},
        "algo": algo,
        "target": target,
        "feature_version": FEATURE_VERSION,
        "class_weight": settings.class_weight,
        "refit_on_validation": settings.refit_on_validation,
        "fbeta": settings.fbeta,
        "horizon_min": settings.horizon_min,
        "shortage_threshold": settings.shortage_threshold,
        "features": len(names),
        "train_rows": len(train),
        "validation_rows": len(validation),
        "test_rows": len(test),
    }
    return TrainingResult(
        bundle=bundle,
        report=report,
        artifacts=paths,
        params=params,
        data_window=window,
        split=split,
        importance=fitted.importance,
        timings=timings,
    )


def write_artifacts(
    folder: Path,
    *,
    report: EvaluationReport,
    test: pd.DataFrame,
    proba: np.ndarray,
    target: str,
    algo: str,
    split: TimeSplit,
    settings: Settings,
    params: dict[str, Any],
    importance: dict[str, float],
) -> dict[str, Path]:
    """PNG curves, the importance table and ``model_card.md`` of a run; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    y = test[label_column(target)].to_numpy(dtype=bool)
    current = test[target].to_numpy(dtype=float)
    thr = settings.shortage_threshold
    paths = {
        "pr_curve": art.plot_pr_curves(folder / "pr_curve.png", y=y, proba=proba, current=current, threshold=thr),
        "calibration_curve": art.plot_calibration(
            folder / "calibration_curve.png", y=y, proba=proba, brier=report.slices["all"].model.brier
        ),
        "confusion_matrix": art.plot_confusion(
            folder / "confusion_matrix.png", y=y, decision=proba >= report.decision_threshold
        ),
        "feature_importance": art.plot_importance(folder / "feature_importance.png", importance),
    }
    importance_path = folder / "feature_importance.json"
    importance_path.write_text(json.dumps(dict(sorted(importance.items(), key=lambda kv: -kv[1])), indent=2))
    paths["feature_importance_table"] = importance_path
    coverage = art.coverage_table(test, target=target, proba=proba, threshold=thr)
    card = art.model_card(
        report=report,
        target=target,
        algo=algo,
        split=split.as_dict(),
        settings_summary={
            "city": settings.city,
            "grid_minutes": settings.grid_minutes,
            "horizon_min": settings.horizon_min,
            "shortage_threshold": thr,
            "fbeta": settings.fbeta,
            "max_overfit_gap": settings.max_overfit_gap,
            "max_snapshot_age_min": settings.max_snapshot_age_min,
            "history_days": settings.history_days,
        },
        coverage=coverage,
        params=params,
        feature_version=FEATURE_VERSION,
        top_features=sorted(importance.items(), key=lambda kv: -kv[1])[:15],
    )
    card_path = folder / "model_card.md"
    card_path.write_text(card)
    paths["model_card"] = card_path
    return paths
