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
from bikeshare.training.models import EARLY_STOP_ROUNDS, class_weights, fit_staged
from bikeshare.training.report import EvaluationReport
from bikeshare.training.sampling import easy_negative_sampling, stacked_matrix
from bikeshare.training.split import TimeSplit, plan_split

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
    y_col = label_column(target)
    if y_col not in features.columns:
        labelled_rows(features, target)  # raises the error that names the missing column
    labelled = features[y_col].notna().to_numpy()
    if not labelled.any():
        raise ValueError(f"no feature rows with a known {label_column(target)} label to train on")
    slots = features["slot"]
    split = plan_split(slots[labelled], settings=settings, test_start=test_start, validation_start=validation_start)
    parts = [labelled & ((slots >= lo) & (slots <= hi)).to_numpy() for lo, hi in (split.train, split.validation)]
    names = tuple(FEATURE_COLUMNS)
    started = time.perf_counter()
    labels = features[y_col].to_numpy(dtype=bool, na_value=False)
    y_val = labels[parts[1]]
    if not y_val.any():
        raise ValueError("the validation rows hold no positive label: a longer window is needed")
    sampling = easy_negative_sampling(features, parts[0], target=target, settings=settings)
    parts[0] = sampling.kept
    x = stacked_matrix(features, parts, names)
    y = np.concatenate([labels[parts[0]], y_val])
    train_rows = int(parts[0].sum())
    weight = class_weights(y, settings, base=np.concatenate([sampling.weight, np.ones(y_val.size, np.float32)]))
    timings["matrix_s"] = time.perf_counter() - started

    pick = np.sort(np.random.default_rng(settings.random_seed).permutation(train_rows)[:_TRAIN_SCORE_ROWS])
    staged = fit_staged(
        x,
        y,
        weight,
        train_rows=train_rows,
        train_scored=pick,
        feature_names=names,
        settings=settings,
        algo=algo,
        refit=settings.refit_on_validation,
    )
    timings.update(staged.timings)
    fitted = staged.final
    started = time.perf_counter()
    calibration = fit_isotonic(staged.raw_validation, y_val)
    proba_val = calibration.apply(staged.raw_validation)
    choice = best_fbeta_threshold(y_val, proba_val, beta=settings.fbeta)
    train_pr_auc = pr_auc(y[pick], staged.raw_train)
    validation_pr_auc = pr_auc(y_val, proba_val)
    timings["calibrate_s"] = time.perf_counter() - started
    train_count, validation_count, rounds = sampling.rows, int(y_val.size), staged.rounds
    del x, y, weight, staged
    test = features[labelled & ((slots >= split.test[0]) & (slots <= split.test[1])).to_numpy()]

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
            "train_rows": train_count,
            "validation_rows": validation_count,
            "test_rows": len(test),
            "refit_on_validation": settings.refit_on_validation,
            **sampling.params(),
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
    started = time.perf_counter()
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
    timings["artifacts_s"] = time.perf_counter() - started
    held = slots[labelled]
    window = (pd.Timestamp(held.min()).isoformat(), pd.Timestamp(held.max()).isoformat())
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
        "train_rows": train_count,
        "validation_rows": validation_count,
        "test_rows": len(test),
        "first_fit_rounds": rounds,
        "early_stopping_rounds": EARLY_STOP_ROUNDS if algo == "lightgbm" else None,
        **sampling.params(),
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
