"""Multi-horizon forecasts: labels at t + h from the feature grid, one pooled model family, per-horizon evaluation.

Design (docs/training_eval.md, "Multi-horizon forecasts"): the horizon is a model input. Each
training (station, slot) row gets ONE horizon drawn at random (seeded), so the training data does
not grow with the number of horizons; validation rows too. Test rows are expanded to every horizon
so that each horizon is evaluated on the same rows against persistence. Labels come from the
feature frame itself (the station's counts at slot + h); the feature columns are not changed, so
the same feature rows serve online.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bikeshare.enums import TARGET_NAMES
from bikeshare.features.schema import FEATURE_COLUMNS, FEATURE_VERSION, feature_matrix
from bikeshare.settings import Settings
from bikeshare.training.forecast_bundle import (
    HORIZON_FEATURE,
    Calibration,
    ForecastBundle,
    ForecastMeta,
    ForecastScores,
)
from bikeshare.training.metrics import best_fbeta_threshold, fit_isotonic
from bikeshare.training.models import lightgbm_params, positive_weight
from bikeshare.training.report import ScoreMetrics, SliceComparison
from bikeshare.training.split import TimeSplit, plan_split, split_frame

FUTURE_COLUMNS: tuple[str, ...] = ("bikes_at_h", "docks_at_h")
FORECAST_TARGETS: tuple[str, ...] = TARGET_NAMES
INTERVAL = (0.1, 0.9)


# --- labels ---------------------------------------------------------------------------------


def future_counts(frame: pd.DataFrame, horizons: list[int] | tuple[int, ...]) -> pd.DataFrame:
    """Rows ``(station_id, slot, horizon_min, bikes_at_h, docks_at_h)``: the grid counts at slot + h.

    A (station, slot + h) missing from ``frame`` gives no row (no label).
    """
    counts = frame[["station_id", "slot", "bikes", "docks"]]
    parts = []
    for h in horizons:
        shifted = counts.assign(slot=counts["slot"] - pd.Timedelta(minutes=int(h)))
        parts.append(
            shifted.rename(columns={"bikes": "bikes_at_h", "docks": "docks_at_h"}).assign(horizon_min=np.int64(h))
        )
    return pd.concat(parts, ignore_index=True)


def expand_horizons(frame: pd.DataFrame, horizons: list[int] | tuple[int, ...]) -> pd.DataFrame:
    """Every row of ``frame`` once per horizon that has a label; adds ``horizon_min`` and the future counts."""
    out = frame.merge(future_counts(frame, horizons), on=["station_id", "slot"], how="inner")
    return out.sort_values(["slot", "station_id", "horizon_min"], kind="stable").reset_index(drop=True)


def sample_horizons(
    frame: pd.DataFrame, horizons: list[int] | tuple[int, ...], *, seed: int, lookup: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Each row of ``frame`` with ONE horizon drawn at random (seeded), labelled from ``lookup`` (default ``frame``).

    Rows whose drawn horizon has no future count are dropped (no label, no redraw).
    """
    rng = np.random.default_rng(seed)
    drawn = np.asarray(horizons, dtype=np.int64)[rng.integers(0, len(horizons), size=len(frame))]
    rows = frame.assign(horizon_min=drawn)
    source = frame if lookup is None else lookup
    future = source[["station_id", "slot", "bikes", "docks"]].rename(
        columns={"slot": "label_slot", "bikes": "bikes_at_h", "docks": "docks_at_h"}
    )
    rows = rows.assign(label_slot=rows["slot"] + pd.to_timedelta(rows["horizon_min"], unit="min"))
    out = rows.merge(future, on=["station_id", "label_slot"], how="inner").drop(columns=["label_slot"])
    return out.reset_index(drop=True)


def horizon_matrix(rows: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """The model matrix of labelled rows: base features then the horizon (float32)."""
    base = feature_matrix(rows, names)
    return np.column_stack([base, rows[HORIZON_FEATURE].to_numpy(dtype=np.float32)])


def shortage_labels(rows: pd.DataFrame, threshold: int) -> dict[str, np.ndarray]:
    return {t: rows[f"{t}_at_h"].to_numpy(dtype=float) <= threshold for t in FORECAST_TARGETS}


# --- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HorizonMetrics:
    """One horizon's test figures: PR-AUC slices per target, MAE of bikes, 80% interval coverage."""

    horizon_min: int
    rows: int
    targets: dict[str, dict[str, SliceComparison]]  # target -> slice ("all", "onsets") -> comparison
    mae_model: float
    mae_persistence: float
    coverage: float


@dataclass(frozen=True)
class ForecastReport:
    """What the per-horizon evaluation found (logged as ``evaluation_report.json``)."""

    window_start: str
    window_end: str
    horizons: dict[int, HorizonMetrics]
    target: str = "forecast"
    extra: dict[str, Any] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, float]:
        """``h<h>_<target>_<slice>_<scorer>_pr_auc``, ``h<h>_mae_model``, ``h<h>_coverage`` ... for MLflow."""
        out: dict[str, float] = {}
        for h, m in self.horizons.items():
            for target, slices in m.targets.items():
                for name, comp in slices.items():
                    out[f"h{h}_{target}_{name}_model_pr_auc"] = float(comp.model.pr_auc)
                    out[f"h{h}_{target}_{name}_baseline_pr_auc"] = float(comp.baseline.pr_auc)
                    out[f"h{h}_{target}_{name}_model_f1"] = float(comp.model.f1)
            out[f"h{h}_mae_model"] = m.mae_model
            out[f"h{h}_mae_baseline"] = m.mae_persistence
            out[f"h{h}_coverage"] = m.coverage
        return out

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["horizons"] = {str(h): v for h, v in payload["horizons"].items()}
        payload["kind"] = "forecast"
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ForecastReport:
        payload = dict(payload)
        payload.pop("kind", None)
        horizons: dict[int, HorizonMetrics] = {}
        for key, m in payload.pop("horizons").items():
            targets = {
                t: {
                    s: SliceComparison(model=ScoreMetrics(**c["model"]), baseline=ScoreMetrics(**c["baseline"]))
                    for s, c in slices.items()
                }
                for t, slices in m["targets"].items()
            }
            horizons[int(key)] = HorizonMetrics(**{**m, "targets": targets})
        return cls(horizons=horizons, **payload)

    def table(self) -> str:
        """The per-horizon markdown table of the bench and the model card."""
        lines = [
            "| horizon | target | PR-AUC model / persistence | onset PR-AUC model / persistence "
            "| MAE bikes model / persistence | 80% coverage |",
            "|---|---|---|---|---|---|",
        ]
        for h in sorted(self.horizons):
            m = self.horizons[h]
            for target in FORECAST_TARGETS:
                s = m.targets[target]
                lines.append(
                    f"| {h} | {target} | {s['all'].model.pr_auc:.3f} / {s['all'].baseline.pr_auc:.3f} "
                    f"| {s['onsets'].model.pr_auc:.3f} / {s['onsets'].baseline.pr_auc:.3f} "
                    f"| {m.mae_model:.2f} / {m.mae_persistence:.2f} | {m.coverage:.1%} |"
                )
        return "\n".join(lines)


def evaluate_horizons(
    rows: pd.DataFrame,
    scores: ForecastScores,
    *,
    shortage_threshold: int,
    decision_thresholds: dict[str, float],
) -> dict[int, HorizonMetrics]:
    """Per-horizon figures of ``scores`` (aligned with the expanded, labelled ``rows``) against persistence.

    Persistence: shortage score ``-count now`` (decision ``count now <= threshold``), bikes at t + h =
    bikes now. Onsets are the rows not short now.
    """
    from bikeshare.training.metrics import score_metrics

    horizon = rows[HORIZON_FEATURE].to_numpy(dtype=np.int64)
    labels = shortage_labels(rows, shortage_threshold)
    proba = {"bikes": scores.p_no_bikes, "docks": scores.p_no_docks}
    actual = rows["bikes_at_h"].to_numpy(dtype=float)
    bikes_now = rows["bikes"].to_numpy(dtype=float)
    out: dict[int, HorizonMetrics] = {}
    for h in sorted(set(horizon.tolist())):
        at = horizon == h
        targets: dict[str, dict[str, SliceComparison]] = {}
        for target in FORECAST_TARGETS:
            y = labels[target][at]
            current = rows[target].to_numpy(dtype=float)[at]
            p = proba[target][at]
            short_now = current <= shortage_threshold
            decision = p >= decision_thresholds[target]
            slices = {}
            for name, mask in (("all", np.ones_like(y, dtype=bool)), ("onsets", ~short_now)):
                slices[name] = SliceComparison(
                    model=score_metrics(y[mask], p[mask], decision[mask], p[mask]),
                    baseline=score_metrics(y[mask], -current[mask], short_now[mask], short_now[mask].astype(float)),
                )
            targets[target] = slices
        truth = actual[at]
        inside = (truth >= scores.bikes_lo[at] - 1e-9) & (truth <= scores.bikes_hi[at] + 1e-9)
        out[int(h)] = HorizonMetrics(
            horizon_min=int(h),
            rows=int(at.sum()),
            targets=targets,
            mae_model=float(np.mean(np.abs(scores.expected_bikes[at] - truth))),
            mae_persistence=float(np.mean(np.abs(bikes_now[at] - truth))),
            coverage=float(np.mean(inside)),
        )
    return out


# --- training -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastTrainingResult:
    """What one forecast training produced (what the registry logs)."""

    bundle: ForecastBundle
    report: ForecastReport
    artifacts: dict[str, Path]
    params: dict[str, Any]
    data_window: tuple[str, str]
    split: TimeSplit
    timings: dict[str, float] = field(default_factory=dict)


def forecast_horizons(settings: Settings) -> tuple[int, ...]:
    """The configured horizons, sorted and checked against the grid."""
    horizons = tuple(sorted({int(h) for h in settings.forecast_horizons_min}))
    bad = [h for h in horizons if h <= 0 or h % settings.grid_minutes]
    if not horizons or bad:
        raise ValueError(
            f"forecast_horizons_min {list(settings.forecast_horizons_min)}: each must be a positive multiple "
            f"of grid_minutes ({settings.grid_minutes})"
        )
    return horizons


def _lgb_params(settings: Settings, objective: str, **extra: Any) -> dict[str, Any]:
    """The 30-minute models' regularised LightGBM parameters with another objective (and its options)."""
    return {**lightgbm_params(settings), "objective": objective, **extra}


def _fit(x: np.ndarray, y: np.ndarray, params: dict[str, Any], *, names: list[str], rounds: int, weight=None) -> Any:
    import lightgbm

    data = lightgbm.Dataset(x, label=y.astype(np.float64), weight=weight, feature_name=names, free_raw_data=True)
    return lightgbm.train(params, data, num_boost_round=rounds)


def train_forecast(
    features: pd.DataFrame,
    *,
    settings: Settings,
    test_start: pd.Timestamp | None = None,
    validation_start: pd.Timestamp | None = None,
    artifacts_dir: Path | None = None,
    max_test_rows: int | None = None,
) -> ForecastTrainingResult:
    """Fit the five forecast boosters on ``features`` (feature rows with their grid counts) and evaluate per horizon.

    The split is the 30-minute trainer's (``plan_split``) with gaps of the longest horizon plus a
    slot, so that no training label reaches into validation or test. ``max_test_rows`` caps the
    (station, slot) test rows before expansion (seeded sample; None keeps all).
    """
    timings: dict[str, float] = {}
    horizons = forecast_horizons(settings)
    if features.empty:
        raise ValueError("no feature rows to train the forecast models on")
    split_settings = settings.with_values(horizon_min=max(horizons))
    split = plan_split(
        features["slot"], settings=split_settings, test_start=test_start, validation_start=validation_start
    )
    train_part, val_part, test_part = split_frame(features, split)
    seed = settings.random_seed
    # Labels of a part only come from that part (the gaps keep t + h inside it).
    cap = settings.forecast_train_max_rows
    # Sample before drawing horizons (a little more: some drawn labels are missing); labels are
    # still looked up in the whole part.
    chosen = train_part.sample(n=int(cap * 1.1), random_state=seed) if len(train_part) > cap * 1.1 else train_part
    train = sample_horizons(chosen, horizons, seed=seed, lookup=train_part)
    if len(train) > cap:
        train = train.sample(n=cap, random_state=seed)
    validation = sample_horizons(val_part, horizons, seed=seed + 1)
    if max_test_rows is not None and len(test_part) > max_test_rows:
        test_part = test_part.sample(n=max_test_rows, random_state=seed)
    if train.empty or validation.empty or test_part.empty:
        raise ValueError(
            f"too few labelled rows for the forecast models (train {len(train)}, validation {len(validation)}, "
            f"test {len(test_part)} station-slots): a longer window is needed"
        )
    names = tuple(FEATURE_COLUMNS)
    model_names = [*names, HORIZON_FEATURE]
    thr = settings.shortage_threshold
    x_train = horizon_matrix(train, names)
    y_train = shortage_labels(train, thr)
    change = train["bikes_at_h"].to_numpy(dtype=float) - train["bikes"].to_numpy(dtype=float)
    rounds = settings.forecast_num_trees

    started = time.perf_counter()
    boosters: dict[str, Any] = {}
    for target, role in (("bikes", "p_no_bikes"), ("docks", "p_no_docks")):
        y = y_train[target]
        weight = np.where(y, positive_weight(y, settings), 1.0)
        boosters[role] = _fit(
            x_train, y, _lgb_params(settings, "binary"), names=model_names, rounds=rounds, weight=weight
        )
    # L1: the median change. MAE, which the gate compares with persistence, is minimised by the median;
    # on the zero-inflated change of bikes an L2 mean lost to persistence at every horizon (docs).
    boosters["bikes_median"] = _fit(
        x_train, change, _lgb_params(settings, "regression_l1"), names=model_names, rounds=rounds
    )
    for role, alpha in (("bikes_q10", INTERVAL[0]), ("bikes_q90", INTERVAL[1])):
        boosters[role] = _fit(
            x_train, change, _lgb_params(settings, "quantile", alpha=alpha), names=model_names, rounds=rounds
        )
    timings["fit_s"] = time.perf_counter() - started

    x_val = horizon_matrix(validation, names)
    y_val = shortage_labels(validation, thr)
    calibrations: dict[str, Calibration] = {}
    thresholds: dict[str, float] = {}
    for target, role in (("bikes", "p_no_bikes"), ("docks", "p_no_docks")):
        if not y_val[target].any():
            raise ValueError(f"the validation rows hold no {target} shortage: a longer window is needed")
        raw_val = np.asarray(boosters[role].predict(x_val, num_threads=settings.train_threads))
        iso = fit_isotonic(raw_val, y_val[target])
        calibrations[target] = Calibration(x=iso.x, y=iso.y)
        thresholds[target] = best_fbeta_threshold(y_val[target], iso.apply(raw_val), beta=settings.fbeta).threshold

    deadband = choose_deadband(validation, np.asarray(boosters["bikes_median"].predict(x_val)), horizons)
    meta = ForecastMeta(
        horizons_min=horizons,
        median_deadband=deadband,
        shortage_threshold=thr,
        feature_names=names,
        feature_version=FEATURE_VERSION,
        calibration_bikes=calibrations["bikes"],
        calibration_docks=calibrations["docks"],
        threshold_bikes=thresholds["bikes"],
        threshold_docks=thresholds["docks"],
        horizon_min=settings.horizon_min,
        provenance={
            "city": settings.city,
            "trained_at": datetime.now(UTC).isoformat(),
            "split": split.as_dict(),
            "train_rows": len(train),
            "validation_rows": len(validation),
            "test_station_slots": len(test_part),
        },
    )
    bundle = ForecastBundle(meta=meta, boosters=boosters, num_threads=settings.train_threads)
    started = time.perf_counter()
    test, scores = score_expanded(bundle, test_part, horizons)
    if test.empty:
        raise ValueError("no test row has a label at any horizon: a longer test window is needed")
    timings["score_test_s"] = time.perf_counter() - started
    per_horizon = evaluate_horizons(test, scores, shortage_threshold=thr, decision_thresholds=thresholds)
    report = ForecastReport(
        window_start=pd.Timestamp(test["slot"].min()).isoformat(),
        window_end=pd.Timestamp(test["slot"].max()).isoformat(),
        horizons=per_horizon,
        extra={"feature_version": FEATURE_VERSION, "split": split.as_dict(), "horizons_min": list(horizons)},
    )
    params = {
        **{k: v for k, v in _lgb_params(settings, "mixed").items() if k not in ("verbose", "objective")},
        "algo": "lightgbm",
        "target": "forecast",
        "models": "binary p_no_bikes and p_no_docks, L1 (median) and quantile 0.1, 0.9 of the change of bikes",
        "num_boost_round": rounds,
        "horizons_min": list(horizons),
        "horizon_sampling": "one random horizon per training row (seeded)",
        "median_deadband": dict(zip(horizons, deadband, strict=True)),
        "feature_version": FEATURE_VERSION,
        "class_weight": settings.class_weight,
        "shortage_threshold": thr,
        "features": len(model_names),
        "train_rows": len(train),
        "validation_rows": len(validation),
        "test_rows": len(test),
    }
    out = artifacts_dir or settings.state_dir / "training" / (
        f"{settings.city}-forecast-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    )
    paths = write_forecast_artifacts(out, report=report, params=params, boosters=boosters, names=model_names)
    window = (pd.Timestamp(features["slot"].min()).isoformat(), pd.Timestamp(features["slot"].max()).isoformat())
    return ForecastTrainingResult(
        bundle=bundle, report=report, artifacts=paths, params=params, data_window=window, split=split, timings=timings
    )


DEADBANDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5)


def choose_deadband(rows: pd.DataFrame, raw_change: np.ndarray, horizons: tuple[int, ...]) -> tuple[float, ...]:
    """Per horizon, the smallest |median change| (of :data:`DEADBANDS`) below which the point forecast stays
    at the current count, minimising the MAE of bikes on the (validation) ``rows``; 0.5 = plain rounding.
    """
    truth = rows["bikes_at_h"].to_numpy(dtype=float) - rows["bikes"].to_numpy(dtype=float)
    horizon = rows[HORIZON_FEATURE].to_numpy(dtype=np.int64)
    out = []
    for h in horizons:
        at = horizon == h
        if not at.any():
            out.append(DEADBANDS[0])
            continue
        errors = [
            np.mean(np.abs(np.where(np.abs(raw_change[at]) < d, 0.0, np.round(raw_change[at])) - truth[at]))
            for d in DEADBANDS
        ]
        out.append(DEADBANDS[int(np.argmin(errors))])
    return tuple(out)


def score_expanded(
    bundle: ForecastBundle, rows: pd.DataFrame, horizons: tuple[int, ...]
) -> tuple[pd.DataFrame, ForecastScores]:
    """Score every row of ``rows`` at every horizon that has a label, one horizon at a time.

    Returns the light labelled frame (``slot, station_id, horizon_min, bikes, docks, bikes_at_h,
    docks_at_h``) and the scores aligned with it; the wide feature rows are never copied per horizon.
    """
    names = bundle.meta.feature_names
    base = feature_matrix(rows, names)
    keys = rows[["station_id", "slot", "bikes", "docks"]].reset_index(drop=True).assign(pos=np.arange(len(rows)))
    future = future_counts(rows, horizons)
    frames, parts = [], []
    for h in horizons:
        labelled = keys.merge(future[future["horizon_min"] == h], on=["station_id", "slot"], how="inner")
        if labelled.empty:
            continue
        pos = labelled["pos"].to_numpy()
        matrix = np.column_stack([base[pos], np.full(len(pos), h, dtype=np.float32)])
        parts.append(bundle.score(matrix))
        frames.append(labelled.drop(columns=["pos"]))
    if not frames:
        empty = np.empty(0)
        return keys.iloc[0:0], ForecastScores(empty, empty, empty, empty, empty)
    joined = ForecastScores(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ForecastScores.__dataclass_fields__)
    )
    return pd.concat(frames, ignore_index=True), joined


def write_forecast_artifacts(
    folder: Path, *, report: ForecastReport, params: dict[str, Any], boosters: dict[str, Any], names: list[str]
) -> dict[str, Path]:
    """The forecast model card (per-horizon table, params, top features of each booster)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Multi-horizon forecast model",
        "",
        f"Test window {report.window_start} .. {report.window_end}; persistence scored on the same rows.",
        "",
        report.table(),
        "",
        "## Parameters",
        "",
        *[f"- `{k}`: {v}" for k, v in sorted(params.items())],
        "",
        "## Top features (share of gain)",
        "",
    ]
    for role, booster in boosters.items():
        gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=float)
        total = float(gains.sum()) or 1.0
        top = sorted(zip(names, gains / total, strict=True), key=lambda kv: -kv[1])[:8]
        lines.append(f"- {role}: " + ", ".join(f"{n} {s:.1%}" for n, s in top))
    card = folder / "model_card.md"
    card.write_text("\n".join(lines) + "\n")
    return {"model_card": card}
