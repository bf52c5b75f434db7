"""What the monitor job measures, read from the lake over one window: data quality, drift, model
quality, inference batches, job runs and the endpoint.

Each ``measure_*`` function reads what it needs and returns a :class:`Part`: the alert
:class:`~bikeshare.monitoring.alerts.Signal` values (names in docs/ops_sla.md), rows for the long
``monitor_metrics`` table, and notes saying why a value could not be measured. A value that could
not be measured is a signal with value None, which the alert rules treat as "no news" (an open
alert neither fires again nor resolves). Timestamps are UTC instants; the window is
``(start, end]`` with ``end`` the run's "now".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from bikeshare.enums import TARGET_NAMES
from bikeshare.lake.store import Lake, empty_select_sql, partition_value
from bikeshare.lake.tables import (
    INFERENCE,
    INFERENCE_BATCHES,
    INGEST_LOG,
    JOB_RUNS,
    QUALITY,
    STATION_STATUS,
    Grain,
    TableSpec,
)
from bikeshare.monitoring.alerts import Signal
from bikeshare.monitoring.baseline import FeatureBaseline
from bikeshare.monitoring.drift import PREDICTION_FEATURE, drift_table
from bikeshare.monitoring.endpoint_metrics import ALL_ROUTES, OPS_ROUTES, EndpointWindow
from bikeshare.monitoring.model_baselines import TRAINING_BRIER, TRAINING_TRIGGER_RATE
from bikeshare.settings import Settings
from bikeshare.utc import to_utc

# ingest_log rows written by `bikeshare backfill` carry this source prefix: not the live feed.
BACKFILL_SOURCE_PREFIX = "recording:"
STATUS_FEED = "station_status"
# Fields of station_status whose missing rate is reported: every feed column but the station's id.
STATUS_FIELDS: tuple[str, ...] = tuple(c for c in STATION_STATUS.feed_columns if c != "station_id")
# How far back the dead-feed signal looks for the newest live commit.
LAST_COMMIT_LOOKBACK_DAYS = 7
TARGETS: tuple[str, ...] = TARGET_NAMES


@dataclass(frozen=True)
class Window:
    """The live window ``(start, end]`` of one monitor run."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __post_init__(self) -> None:
        start, end = to_utc(self.start, what="window start"), to_utc(self.end, what="window end")
        if end <= start:
            raise ValueError(f"monitor window end {end} is not after its start {start}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def days(self, *, back: int = 0) -> list[str]:
        """``dt`` values (day grain) the window touches, plus ``back`` days before it."""
        first = self.start.floor("D") - pd.Timedelta(days=back)
        return [partition_value(d, Grain.DAY) for d in pd.date_range(first, self.end, freq="D")]


@dataclass
class Part:
    """One family's outcome: signals, metric rows and notes."""

    signals: list[Signal] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def metric(
        self,
        family: str,
        metric: str,
        value: float | int | None,
        *,
        subject: str = "",
        target: str | None = None,
        alias: str | None = None,
        model_version: str | None = None,
    ) -> None:
        number = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        self.metrics.append(
            {
                "family": family,
                "metric": metric,
                "subject": subject,
                "target": target,
                "alias": alias,
                "model_version": model_version,
                "value": number,
            }
        )


@dataclass(frozen=True)
class DriftResult:
    """Drift scores of one target against one model version's baselines."""

    target: str
    model_name: str
    model_version: str
    scores: pd.DataFrame  # drift_table columns
    live_rows: int


@dataclass
class DriftPart(Part):
    results: list[DriftResult] = field(default_factory=list)


# ---- data quality ------------------------------------------------------------------------------


def measure_data_quality(lake: Lake, *, city: str, window: Window) -> Part:
    """Ingest outcomes, validation pass rate, masked stations, missing fields and delay of the live feed."""
    part = Part()
    log = read_days(lake, INGEST_LOG, city=city, days=window.days())
    live = log[~log["source"].fillna("").str.startswith(BACKFILL_SOURCE_PREFIX)] if len(log) else log
    in_window = live[(live["fetched_at"] > window.start) & (live["fetched_at"] <= window.end)] if len(live) else live
    feeds = sorted(set(in_window["feed"].dropna())) if len(in_window) else []
    if STATUS_FEED not in feeds:
        feeds.append(STATUS_FEED)
    for feed in feeds:
        rows = in_window[in_window["feed"] == feed] if len(in_window) else in_window
        outcomes = rows["outcome"].value_counts() if len(rows) else pd.Series(dtype="int64")
        committed = rows[rows["outcome"] == "committed"] if len(rows) else rows
        n_committed = int(outcomes.get("committed", 0))
        n_quarantined = int(outcomes.get("quarantined", 0))
        validated = n_committed + n_quarantined
        pass_rate = n_committed / validated if validated else None
        delays = committed["ingest_latency_s"].dropna().to_numpy(dtype=float) if len(committed) else np.array([])
        for outcome in ("committed", "duplicate", "unchanged", "quarantined", "fetch_failed"):
            part.metric("data_quality", f"batches_{outcome}", int(outcomes.get(outcome, 0)), subject=feed)
        part.metric("data_quality", "batches", len(rows), subject=feed)
        part.metric("data_quality", "validation_pass_rate", pass_rate, subject=feed)
        part.metric(
            "data_quality",
            "row_pass_rate",
            float(committed["row_pass_rate"].mean()) if len(committed) else None,
            subject=feed,
        )
        part.metric(
            "data_quality", "rows_masked", int(committed["rows_masked"].sum()) if len(committed) else 0, subject=feed
        )
        for name, q in (("delay_p50_s", 0.5), ("delay_p95_s", 0.95)):
            part.metric("data_quality", name, float(np.quantile(delays, q)) if len(delays) else None, subject=feed)
        worst = float(delays.max()) if len(delays) else None
        part.metric("data_quality", "delay_max_s", worst, subject=feed)
        for reason, count in _masked_by_reason(committed).items():
            part.metric("data_quality", "rows_masked_by_reason", count, subject=f"{feed}:{reason}")
        part.signals.append(Signal("data_delay_s", worst, {"feed": feed}, observed_at=window.end))
        part.signals.append(Signal("ingest_validation_pass_rate", pass_rate, {"feed": feed}, observed_at=window.end))
        part.signals.append(Signal("ingest_quarantined_batches", float(n_quarantined), {"feed": feed}))
        part.signals.append(Signal("ingest_fetch_failures", float(outcomes.get("fetch_failed", 0)), {"feed": feed}))
        if worst is None:
            part.notes.append(f"{feed}: no live batch committed in the window: data delay not measured")
    # The window's day partitions are already read; older days only when they hold no commit.
    recent = (
        live[(live["feed"] == STATUS_FEED) & (live["outcome"] == "committed") & (live["committed_at"] <= window.end)]
        if len(live)
        else live
    )
    last = (
        pd.Timestamp(recent["committed_at"].max())
        if len(recent)
        else last_live_commit(lake, city=city, feed=STATUS_FEED, at=window.end)
    )
    if last is None:
        part.notes.append(
            f"{STATUS_FEED}: no live commit in the last {LAST_COMMIT_LOOKBACK_DAYS} days (dead-feed rule: never seen)"
        )
    else:
        part.signals.append(Signal("feed_snapshot_committed", 1.0, {"feed": STATUS_FEED}, observed_at=last))
        part.metric(
            "data_quality", "seconds_since_last_commit", (window.end - last).total_seconds(), subject=STATUS_FEED
        )
    status = _status_window(lake, city=city, window=window)
    stations = int(status["stations"].iloc[0] or 0)
    masked = int(status["masked_stations"].iloc[0] or 0)
    part.metric("data_quality", "status_rows", int(status["rows"].iloc[0] or 0), subject=STATUS_FEED)
    part.metric("data_quality", "stations", stations, subject=STATUS_FEED)
    part.metric("data_quality", "masked_stations", masked, subject=STATUS_FEED)
    part.signals.append(Signal("masked_stations", float(masked) if stations else None, {"feed": STATUS_FEED}))
    rows = int(status["rows"].iloc[0] or 0)
    for name in STATUS_FIELDS:
        rate = float(status[f"missing_{name}"].iloc[0]) / rows if rows else None
        part.metric("data_quality", "missing_rate", rate, subject=name)
    return part


def last_live_commit(lake: Lake, *, city: str, feed: str, at: pd.Timestamp) -> pd.Timestamp | None:
    """Newest ``committed_at`` at or before ``at`` of a live (not backfilled) batch of ``feed``."""
    at = to_utc(at)
    for back in range(LAST_COMMIT_LOOKBACK_DAYS + 1):
        day = partition_value(at.floor("D") - pd.Timedelta(days=back), Grain.DAY)
        log = read_days(lake, INGEST_LOG, city=city, days=[day])
        if not len(log):
            continue
        rows = log[
            (log["feed"] == feed)
            & (log["outcome"] == "committed")
            & (log["committed_at"] <= at)
            & ~log["source"].fillna("").str.startswith(BACKFILL_SOURCE_PREFIX)
        ]
        if len(rows):
            return pd.Timestamp(rows["committed_at"].max())
    return None


def _masked_by_reason(committed: pd.DataFrame) -> dict[str, int]:
    out: dict[str, int] = {}
    for text in committed["masked_by_reason"].dropna() if len(committed) else []:
        try:
            counts = json.loads(text)
        except json.JSONDecodeError:
            continue
        for reason, count in dict(counts).items():
            out[str(reason)] = out.get(str(reason), 0) + int(count)
    return out


def _status_window(lake: Lake, *, city: str, window: Window) -> pd.DataFrame:
    from bikeshare.inference.snapshots import connect_window

    missing = ", ".join(f"count(*) FILTER (WHERE {name} IS NULL) AS missing_{name}" for name in STATUS_FIELDS)
    con = connect_window(lake, city=city, lo=window.start, hi=window.end)
    try:
        return con.execute(
            f"""
            SELECT count(*) AS rows, count(DISTINCT station_id) AS stations,
                   count(DISTINCT station_id) FILTER (WHERE masked) AS masked_stations, {missing}
            FROM status_window WHERE last_updated > ? AND last_updated <= ?
            """,
            [window.start.to_pydatetime(), window.end.to_pydatetime()],
        ).df()
    finally:
        con.close()


# ---- drift -------------------------------------------------------------------------------------


def served_predictions(lake: Lake, *, settings: Settings, window: Window) -> pd.DataFrame:
    """Served (not shadow) inference rows of the window at the KPI horizon, both targets."""
    from bikeshare.inference.snapshots import minute_partitions

    dts = minute_partitions(lake, INFERENCE, city=settings.city, lo=window.start, hi=window.end)
    if not dts:
        return pd.DataFrame(columns=list(INFERENCE.schema.names))
    con = _connect(lake)
    try:
        return con.execute(
            f"""
            SELECT * FROM ({lake.scan_sql(INFERENCE, city=settings.city, dts=dts)})
            WHERE NOT shadow AND alias = ? AND horizon_min = ? AND feature_time > ? AND feature_time <= ?
            """,
            [settings.serve_alias, settings.horizon_min, window.start.to_pydatetime(), window.end.to_pydatetime()],
        ).df()
    finally:
        con.close()


def measure_drift(
    lake: Lake,
    *,
    settings: Settings,
    window: Window,
    predictions: pd.DataFrame,
    baselines_of: BaselineReader,
    psi_warn: float,
) -> DriftPart:
    """PSI/KS of the window's scored features and probabilities against the serving version's baselines."""
    from bikeshare.features.build import build_features

    part = DriftPart()
    if predictions.empty:
        part.notes.append("drift: no served predictions in the window")
        _missing_drift_signals(part, settings)
        return part
    features: pd.DataFrame | None = None
    for target in TARGETS:
        rows = predictions[predictions["target"] == target]
        if rows.empty:
            part.notes.append(f"drift {target}: no served predictions in the window")
            _missing_drift_signals(part, settings, targets=(target,))
            continue
        newest = rows.sort_values("feature_time").iloc[-1]
        name, version = str(newest["model_name"]), str(newest["model_version"])
        rows = rows[(rows["model_name"] == name) & (rows["model_version"] == version)]
        baselines = baselines_of(name, version, target)
        if not baselines:
            part.notes.append(f"drift {target}: no baselines stored for {name} v{version} (train stores them)")
            _missing_drift_signals(part, settings, targets=(target,))
            continue
        if len(rows) < settings.monitor_drift_min_rows:
            part.notes.append(
                f"drift {target}: {len(rows)} live rows < monitor_drift_min_rows ({settings.monitor_drift_min_rows})"
            )
            _missing_drift_signals(part, settings, targets=(target,))
            continue
        if features is None:
            slots = predictions["feature_time"]
            features = build_features(
                lake=lake,
                start=pd.Timestamp(slots.min()),
                end=pd.Timestamp(slots.max()),
                settings=settings,
                with_labels=False,
            )
        live = live_frame(rows, features, baselines)
        scores = drift_table(baselines, live, psi_warn=psi_warn)
        part.results.append(
            DriftResult(target=target, model_name=name, model_version=version, scores=scores, live_rows=len(live))
        )
        by_feature = scores.set_index("feature")
        for feature in settings.monitor_drift_features:
            value = by_feature["psi"].get(feature) if feature in by_feature.index else None
            if feature not in by_feature.index:
                part.notes.append(f"drift {target}: {feature} has no baseline in {name} v{version}")
            part.signals.append(Signal("feature_psi", _num(value), {"target": target, "feature": feature}))
        prediction_psi = by_feature["psi"].get(PREDICTION_FEATURE) if PREDICTION_FEATURE in by_feature.index else None
        part.signals.append(Signal("prediction_psi", _num(prediction_psi), {"target": target}))
        part.signals.append(Signal("drifting_features", float(scores["drifting"].sum()), {"target": target}))
    return part


def live_frame(
    predictions: pd.DataFrame, features: pd.DataFrame, baselines: Mapping[str, FeatureBaseline]
) -> pd.DataFrame:
    """One row per scored station and slot: the baselined feature columns and the predicted probability."""
    keys = predictions.loc[:, ["station_id", "feature_time", "probability"]].rename(
        columns={"feature_time": "slot", "probability": PREDICTION_FEATURE}
    )
    keys["station_id"] = keys["station_id"].astype(str)
    wanted = [n for n in baselines if n != PREDICTION_FEATURE and n in features.columns]
    table = features.loc[:, ["station_id", "slot", *wanted]].copy()
    table["station_id"] = table["station_id"].astype(str)
    merged = keys.merge(table, on=["station_id", "slot"], how="left")
    for name in baselines:
        if name not in merged.columns:
            merged[name] = np.nan  # a feature the live build lacks: all missing (shows as missing_rate 1)
    return merged


def _missing_drift_signals(part: Part, settings: Settings, *, targets: Sequence[str] = TARGETS) -> None:
    for target in targets:
        for feature in settings.monitor_drift_features:
            part.signals.append(Signal("feature_psi", None, {"target": target, "feature": feature}))
        part.signals.append(Signal("prediction_psi", None, {"target": target}))


# ---- model quality -----------------------------------------------------------------------------


def measure_model_quality(lake: Lake, *, settings: Settings, now: pd.Timestamp, baselines_of: BaselineReader) -> Part:
    """PR-AUC, F1, Brier and trigger rate over the 24 h of actuals ending at ``now``, per target and version."""
    part = Part()
    now = to_utc(now, what="monitor time")
    start = now - pd.Timedelta(hours=24)
    window = Window(start, now)
    quality = read_days(lake, QUALITY, city=settings.city, days=window.days())
    if len(quality):
        quality = quality[(quality["target_time"] > start) & (quality["target_time"] <= now)]
    served = (
        quality[(quality["alias"] == settings.serve_alias) & ~quality["shadow"].astype(bool)]
        if len(quality)
        else quality
    )
    for target in TARGETS:
        rows = quality[quality["target"] == target] if len(quality) else quality
        groups = rows.groupby(["alias", "shadow", "model_version"], dropna=False) if len(rows) else []
        for (alias, shadow, version), group in groups:
            label = f"{alias} (shadow)" if shadow else str(alias)
            for metric, value in quality_stats(group).items():
                part.metric(
                    "model_quality",
                    f"{metric}_24h",
                    value,
                    subject=label,
                    target=target,
                    alias=str(alias),
                    model_version=str(version),
                )
        mine = served[served["target"] == target] if len(served) else served
        stats = quality_stats(mine)
        for metric, value in stats.items():
            part.metric(
                "model_quality", f"{metric}_24h", value, subject="served", target=target, alias=settings.serve_alias
            )
        enough = stats["joined"] >= settings.monitor_quality_min_rows and stats["positives"] > 0
        if not enough:
            part.notes.append(
                f"model quality {target}: {int(stats['joined'])} joined, {int(stats['positives'])} positive in 24 h "
                f"(needs >= {settings.monitor_quality_min_rows} and a positive): PR-AUC/F1 not measured"
            )
        labels = {"target": target}
        part.signals.append(Signal("model_pr_auc_24h", stats["pr_auc"] if enough else None, labels))
        part.signals.append(Signal("model_f1_24h", stats["f1"] if enough else None, labels))
        part.signals.append(Signal("model_brier_24h", stats["brier"] if enough else None, labels))
        part.signals.append(
            Signal("model_trigger_rate_24h", stats["trigger_rate"] if stats["joined"] else None, labels)
        )
        brier_drift = trigger_change = None
        if enough and len(mine):
            newest = mine.sort_values("target_time").iloc[-1]
            prediction = baselines_of(str(newest["model_name"]), str(newest["model_version"]), target).get(
                PREDICTION_FEATURE
            )
            training = dict(prediction.stats) if prediction is not None else {}
            if training.get(TRAINING_BRIER) is not None:
                brier_drift = stats["brier"] - float(training[TRAINING_BRIER])
            if training.get(TRAINING_TRIGGER_RATE) is not None:
                trigger_change = stats["trigger_rate"] - float(training[TRAINING_TRIGGER_RATE])
            part.metric(
                "model_quality", "training_brier", training.get(TRAINING_BRIER), subject="served", target=target
            )
        part.metric("model_quality", "brier_drift_24h", brier_drift, subject="served", target=target)
        part.metric("model_quality", "trigger_rate_change_24h", trigger_change, subject="served", target=target)
        part.signals.append(Signal("model_brier_drift", brier_drift, labels))
    return part


def quality_stats(rows: pd.DataFrame) -> dict[str, float]:
    """Joined rows, positives, PR-AUC (average precision over 0.001 score bins, as the quality views),
    F1, Brier, trigger rate (share of positive decisions) and positive rate of quality rows."""
    joined = rows[rows["status"] == "joined"] if len(rows) else rows
    n = len(joined)
    out: dict[str, float] = {"predictions": float(len(rows)), "joined": float(n), "positives": 0.0}
    if not n:
        return {**out, **dict.fromkeys(("pr_auc", "f1", "brier", "trigger_rate", "positive_rate"), math.nan)}
    y = joined["actual_label"].astype(bool).to_numpy()
    p = joined["probability"].to_numpy(dtype=float)
    d = joined["decision"].astype(bool).to_numpy()
    tp, fp, fn = int((d & y).sum()), int((d & ~y).sum()), int((~d & y).sum())
    out.update(
        positives=float(y.sum()),
        pr_auc=binned_average_precision(p, y),
        f1=2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else math.nan,
        brier=float(np.mean((p - y) ** 2)),
        trigger_rate=float(d.mean()),
        positive_rate=float(y.mean()),
    )
    return out


def binned_average_precision(proba: np.ndarray, labels: np.ndarray, *, decimals: int = 3) -> float:
    """Average precision with scores rounded to ``decimals`` (ties in a bin share one threshold)."""
    if not labels.any():
        return math.nan
    frame = pd.DataFrame({"score": np.round(proba, decimals), "pos": labels.astype(int)})
    bins = frame.groupby("score")["pos"].agg(["sum", "count"]).sort_index(ascending=False)
    tp_at = bins["sum"].cumsum()
    n_at = bins["count"].cumsum()
    return float((bins["sum"] * tp_at / n_at).sum() / bins["sum"].sum())


# ---- system ------------------------------------------------------------------------------------


def measure_inference(lake: Lake, *, settings: Settings, window: Window) -> Part:
    """Served inference batches of the window: outcomes, success rate, duration, forecast call outcomes."""
    part = Part()
    batches = read_days(lake, INFERENCE_BATCHES, city=settings.city, days=window.days())
    if len(batches):
        batches = batches[
            (batches["feature_time"] > window.start)
            & (batches["feature_time"] <= window.end)
            & ~batches["shadow"].astype(bool)
        ]
    counts = batches["status"].value_counts() if len(batches) else pd.Series(dtype="int64")
    ok, failed, skipped = (int(counts.get(s, 0)) for s in ("ok", "failed", "skipped"))
    done = ok + failed
    rate = failed / done if done else None
    for name, value in (("batches_ok", ok), ("batches_failed", failed), ("batches_skipped", skipped)):
        part.metric("inference", name, value, alias=settings.serve_alias)
    part.metric("inference", "success_rate", ok / done if done else None, alias=settings.serve_alias)
    durations = batches.loc[batches["status"] == "ok", "duration_s"].dropna() if len(batches) else pd.Series([])
    part.metric(
        "inference",
        "duration_p95_s",
        float(durations.quantile(0.95)) if len(durations) else None,
        alias=settings.serve_alias,
    )
    if not done:
        part.notes.append("inference: no served batch ok or failed in the window: failure rate not measured")
    part.signals.append(Signal("inference_failure_rate", rate))
    # The forecast call of each served batch (null in records written before it was recorded).
    asked = batches["forecast_status"].dropna() if len(batches) and "forecast_status" in batches else pd.Series([])
    forecasts = asked.value_counts()
    f_ok, f_failed, f_skipped = (int(forecasts.get(s, 0)) for s in ("ok", "failed", "skipped"))
    for name, value in (("forecasts_ok", f_ok), ("forecasts_failed", f_failed), ("forecasts_skipped", f_skipped)):
        part.metric("inference", name, value, alias=settings.serve_alias)
    part.signals.append(Signal("forecast_failure_rate", f_failed / (f_ok + f_failed) if f_ok + f_failed else None))
    return part


def measure_jobs(lake: Lake, *, city: str, window: Window) -> Part:
    """Runs of each scheduled job in the window (from job_runs): success rate, duration, lag."""
    part = Part()
    runs = read_days(lake, JOB_RUNS, city=city, days=window.days())
    if len(runs):
        runs = runs[(runs["started_at"] > window.start) & (runs["started_at"] <= window.end)]
    if not len(runs):
        part.notes.append("jobs: no job_runs rows in the window")
        return part
    for job, group in runs.groupby("job"):
        counts = group["status"].value_counts()
        ok, failed = int(counts.get("ok", 0)), int(counts.get("failed", 0))
        done = ok + failed
        failure_rate = failed / done if done else None
        duration = float(group["duration_s"].dropna().quantile(0.95)) if group["duration_s"].notna().any() else None
        lag = float(group["lag_s"].dropna().max()) if group["lag_s"].notna().any() else None
        name = str(job)
        part.metric("jobs", "runs", len(group), subject=name)
        part.metric("jobs", "runs_failed", failed, subject=name)
        part.metric("jobs", "success_rate", ok / done if done else None, subject=name)
        part.metric("jobs", "duration_p95_s", duration, subject=name)
        part.metric("jobs", "lag_max_s", lag, subject=name)
        part.signals.append(Signal("job_failure_rate", failure_rate, {"job": name}))
        part.signals.append(Signal("job_duration_p95_s", duration, {"job": name}))
        part.signals.append(Signal("job_lag_s", lag, {"job": name}))
    return part


def endpoint_signals(window: EndpointWindow | None, *, reachable: bool, min_requests: int = 1) -> Part:
    """Latency and error-rate signals of the routes that answer users (operational routes left out).

    Latency quantiles of a route with fewer than ``min_requests`` requests in the window are not
    measured: with a handful of requests the P95 is the slowest one.
    """
    part = Part()
    part.signals.append(Signal("endpoint_up", 1.0 if reachable else 0.0))
    if window is None:
        return part
    for route in window.routes:
        if route.route in OPS_ROUTES or route.route == ALL_ROUTES:
            continue
        labels = {"route": route.route}
        enough = route.requests >= min_requests
        if not enough:
            part.notes.append(
                f"endpoint {route.route}: {route.requests} requests < monitor_latency_min_requests "
                f"({min_requests}): latency not measured"
            )
        part.signals.append(Signal("endpoint_p95_ms", route.p95_ms if enough else None, labels, observed_at=window.end))
        part.signals.append(Signal("endpoint_p50_ms", route.p50_ms if enough else None, labels, observed_at=window.end))
        part.signals.append(Signal("endpoint_error_rate", route.error_rate, labels, observed_at=window.end))
    return part


# ---- reading -----------------------------------------------------------------------------------


class BaselineReader:
    """Baselines of (model name, version, target) from the lake, read once per run."""

    def __init__(self, lake: Lake, *, city: str) -> None:
        self._lake = lake
        self._city = city
        self._cache: dict[tuple[str, str, str], dict[str, FeatureBaseline]] = {}

    def __call__(self, model_name: str, model_version: str, target: str) -> dict[str, FeatureBaseline]:
        from bikeshare.monitoring.store import read_baselines

        key = (model_name, str(model_version), target)
        if key not in self._cache:
            self._cache[key] = read_baselines(
                self._lake, city=self._city, model_name=model_name, model_version=str(model_version), target=target
            )
        return self._cache[key]


def read_days(lake: Lake, spec: TableSpec, *, city: str, days: Iterable[str]) -> pd.DataFrame:
    """Rows of a day-grain table's partitions (those that exist) as a frame with the spec's columns."""
    present = set(lake.partition_dirs(spec, city=city))
    wanted = [d for d in days if d in present]
    files = lake.files(spec, city=city, dts=wanted) if wanted else []
    con = _connect(lake)
    try:
        sql = lake.scan_sql(spec, city=city, dts=wanted) if files else empty_select_sql(spec)
        return con.execute(f"SELECT * EXCLUDE (city, dt) FROM ({sql})").df()
    finally:
        con.close()


def _connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if lake.is_remote:
        con.register_filesystem(lake.fs)
    return con


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number
