"""The monitor job: measure one window, store the results in the lake, evaluate and route the alerts.

:func:`run_monitor` is one run at ``now`` (the wall clock, or a replay clock in drills and in the
loop runner): it measures data quality, drift, model quality, inference batches, job runs and the
endpoint (:mod:`bikeshare.monitoring.signals`), writes ``drift_scores``, ``endpoint_metrics``,
``monitor_metrics`` and one ``monitoring_runs`` row, and runs the alert cycle with the signals. A
part that fails is noted and its signals are left out (the rules then see "no news" for them); the
other parts and the alert cycle still run.

Times of the alert log: ``fired_at`` is ``now``; ``routed_at`` is ``now`` plus the real seconds from
the alert evaluation to the delivery, so ``time_to_route_s`` is the real routing delay also on a
replay clock (the time spent measuring before the evaluation is the run's ``duration_s``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from bikeshare.enums import TARGET_NAMES
from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import ENDPOINT_METRICS, MONITOR_METRICS, MONITORING_RUNS, Grain
from bikeshare.monitoring.alerts import Signal
from bikeshare.monitoring.cycle import CycleResult, run_alert_cycle
from bikeshare.monitoring.drift import DEFAULT_PSI_WARN
from bikeshare.monitoring.endpoint_metrics import (
    EndpointWindow,
    HttpMetricsSource,
    MetricsSource,
    Scrape,
    ScrapeError,
    parse_scrape,
    window_between,
)
from bikeshare.monitoring.rules import RuleSet, load_rules
from bikeshare.monitoring.signals import (
    BaselineReader,
    DriftPart,
    DriftResult,
    Part,
    Window,
    endpoint_signals,
    measure_data_quality,
    measure_drift,
    measure_inference,
    measure_jobs,
    measure_model_quality,
    read_days,
    served_predictions,
)
from bikeshare.monitoring.sinks import Sink, sinks_from_settings
from bikeshare.monitoring.store import AlertStore, write_drift_scores
from bikeshare.settings import Settings
from bikeshare.utc import to_utc

log = logging.getLogger(__name__)

# How far back a run looks for the previous scrape of the same endpoint worker.
SCRAPE_LOOKBACK_DAYS = 7


@dataclass(frozen=True)
class MonitorResult:
    """What one monitor run measured, stored and raised."""

    run_id: str
    evaluated_at: pd.Timestamp
    window: Window
    signals: tuple[Signal, ...]
    drift: tuple[DriftResult, ...]
    endpoint: EndpointWindow | None
    metrics: pd.DataFrame  # monitor_metrics rows of this run
    cycle: CycleResult
    notes: tuple[str, ...]
    duration_s: float
    status: str  # ok | partial
    paths: dict[str, list[str]] = field(default_factory=dict)

    def signal(self, name: str, **labels: str) -> Signal | None:
        """The first signal called ``name`` whose labels include ``labels``."""
        for signal in self.signals:
            if signal.name == name and all(signal.labels.get(k) == v for k, v in labels.items()):
                return signal
        return None

    def metric(self, family: str, metric: str, **where: str) -> float | None:
        """One value of this run's ``monitor_metrics`` rows (None when absent or not measured)."""
        rows = self.metrics[(self.metrics["family"] == family) & (self.metrics["metric"] == metric)]
        for key, value in where.items():
            rows = rows[rows[key] == value]
        if rows.empty or pd.isna(rows["value"].iloc[0]):
            return None
        return float(rows["value"].iloc[0])

    def summary(self) -> str:
        """A few human lines: window, signals, alerts, the headline figures and the notes."""
        measured = sum(1 for s in self.signals if s.value is not None)
        routes_ok = sum(1 for r in self.cycle.routes if r.ok)
        lines = [
            f"monitor {self.evaluated_at:%Y-%m-%dT%H:%M}Z, window {_minutes(self.window)} min ({self.status}, "
            f"{self.duration_s:.1f} s): {measured}/{len(self.signals)} signals measured; "
            f"alert events {len(self.cycle.events)} ({len(self.cycle.fired)} fired); "
            f"routes {routes_ok} ok, {len(self.cycle.failed_routes)} failed"
        ]
        delay = self.signal("data_delay_s", feed="station_status")
        passing = self.signal("ingest_validation_pass_rate", feed="station_status")
        lines.append(
            f"  data: delay max {_fmt(delay.value if delay else None, 's')}, validation pass "
            f"{_fmt(passing.value if passing else None, '%')}, masked stations "
            f"{_fmt(self.metric('data_quality', 'masked_stations'), '')}"
        )
        for result in self.drift:
            scores = result.scores.dropna(subset=["psi"]).sort_values("psi", ascending=False)
            worst = scores.iloc[0] if len(scores) else None
            prediction = self.signal("prediction_psi", target=result.target)
            lines.append(
                f"  drift {result.target} ({result.model_name} v{result.model_version}, {result.live_rows} rows): "
                + (f"max PSI {worst['psi']:.3f} ({worst['feature']}), " if worst is not None else "")
                + f"prediction PSI {_fmt(prediction.value if prediction else None, '')}, "
                f"{int(result.scores['drifting'].sum())} features over the warning"
            )
        for target in TARGET_NAMES:
            pr_auc = self.signal("model_pr_auc_24h", target=target)
            f1 = self.signal("model_f1_24h", target=target)
            joined = self.metric("model_quality", "joined_24h", target=target, subject="served")
            lines.append(
                f"  quality {target} 24 h: PR-AUC {_fmt(pr_auc.value if pr_auc else None, '')}, "
                f"F1 {_fmt(f1.value if f1 else None, '')} ({_fmt(joined, '')} joined)"
            )
        failure = self.signal("inference_failure_rate")
        forecast_failed = self.metric("inference", "forecasts_failed")
        lines.append(
            f"  inference failure rate {_fmt(failure.value if failure else None, '%')}, "
            f"forecast calls failed {_fmt(forecast_failed, '')}"
        )
        if self.endpoint is not None:
            for route in self.endpoint.routes:
                lines.append(
                    f"  endpoint {route.route}: {route.requests} requests, p50 {_fmt(route.p50_ms, 'ms')}, "
                    f"p95 {_fmt(route.p95_ms, 'ms')}, 5xx {route.errors}"
                )
        for event in self.cycle.events:
            lines.append(f"  alert {event.event}: {event.message}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def run_monitor(
    *,
    lake: Lake,
    settings: Settings,
    now: pd.Timestamp | datetime,
    endpoint_metrics_source: MetricsSource | None = None,
    sinks: Sequence[Sink] | None = None,
    rules: RuleSet | None = None,
    fault_started_at: pd.Timestamp | datetime | None = None,
    window_min: int | None = None,
) -> MonitorResult:
    """Measure the window ending at ``now``, store the results, and run the alert cycle.

    ``endpoint_metrics_source`` returns the endpoint's Prometheus text (see
    :class:`~bikeshare.monitoring.endpoint_metrics.HttpMetricsSource`); None skips the endpoint.
    ``sinks`` default to :func:`~bikeshare.monitoring.sinks.sinks_from_settings`, ``rules`` to
    ``alert_rules_path`` (else the built-in rules). ``fault_started_at`` is for drills: alerts that
    fire record their time to detect.
    """
    started_wall = datetime.now(UTC)
    started = time.monotonic()
    now_ts = to_utc(now, what="monitor time")
    minutes = window_min or settings.monitor_window_min or settings.monitor_interval_min
    window = Window(now_ts - pd.Timedelta(minutes=minutes), now_ts)
    city = settings.city
    run_id = f"{now_ts:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    rules = rules if rules is not None else load_rules(settings.alert_rules_path)
    baselines = BaselineReader(lake, city=city)
    notes: list[str] = []
    failed: list[str] = []
    parts: list[Part] = []

    def attempt(name: str, measure: Callable[[], Part]) -> Part | None:
        try:
            part = measure()
        except Exception as exc:  # one broken part must not hide the others (or the alerts)
            log.exception("monitor part %s failed", name)
            failed.append(name)
            notes.append(f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
            return None
        parts.append(part)
        notes.extend(part.notes)
        return part

    attempt("data quality", lambda: measure_data_quality(lake, city=city, window=window))
    drift = attempt(
        "drift",
        lambda: measure_drift(
            lake,
            settings=settings,
            window=window,
            predictions=served_predictions(lake, settings=settings, window=window),
            baselines_of=baselines,
            psi_warn=_psi_warning(rules),
        ),
    )
    attempt("model quality", lambda: measure_model_quality(lake, settings=settings, now=now_ts, baselines_of=baselines))
    attempt("inference", lambda: measure_inference(lake, settings=settings, window=window))
    attempt("jobs", lambda: measure_jobs(lake, city=city, window=window))

    scrape: Scrape | None = None
    endpoint: EndpointWindow | None = None
    source_name = _source_name(endpoint_metrics_source)
    if endpoint_metrics_source is not None:
        try:
            scrape = parse_scrape(endpoint_metrics_source(), observed_at=now_ts.to_pydatetime())
        except ScrapeError as exc:
            notes.append(f"endpoint: {exc}")
            attempt("endpoint", lambda: endpoint_signals(None, reachable=False))
        else:
            previous = previous_scrape(lake, city=city, endpoint=source_name, worker=scrape.worker, before=now_ts)
            endpoint = window_between(previous, scrape)
            if endpoint.start is None:
                notes.append("endpoint: no earlier scrape of this worker: the window is its whole life")
            elif endpoint.restarted:
                notes.append("endpoint: counters went back (restart): the window starts at the restart")
            attempt(
                "endpoint",
                lambda: endpoint_signals(endpoint, reachable=True, min_requests=settings.monitor_latency_min_requests),
            )

    signals = [s for part in parts for s in part.signals]
    metrics = _metrics_frame(parts, run_id=run_id, window=window)
    paths: dict[str, list[str]] = {"drift_scores": [], "endpoint_metrics": [], "monitor_metrics": []}
    drift_results = tuple(drift.results) if isinstance(drift, DriftPart) else ()
    for result in drift_results:
        path = write_drift_scores(
            lake,
            result.scores,
            city=city,
            evaluated_at=now_ts.to_pydatetime(),
            window_start=window.start.to_pydatetime(),
            window_end=window.end.to_pydatetime(),
            model_name=result.model_name,
            model_version=result.model_version,
            target=result.target,
        )
        paths["drift_scores"].extend([path] if path else [])
    day = partition_value(now_ts, Grain.DAY)
    if endpoint is not None and endpoint.routes:
        path = lake.write(ENDPOINT_METRICS, _endpoint_frame(endpoint, now_ts), city=city, dt=day, name=run_id)
        paths["endpoint_metrics"].extend([path] if path else [])
    if len(metrics):
        path = lake.write(MONITOR_METRICS, metrics, city=city, dt=day, name=run_id)
        paths["monitor_metrics"].extend([path] if path else [])

    evaluated = time.monotonic()

    def route_clock() -> datetime:
        elapsed = pd.Timedelta(microseconds=round((time.monotonic() - evaluated) * 1e6))
        return (now_ts + elapsed).to_pydatetime()

    fault = to_utc(fault_started_at, what="fault_started_at").to_pydatetime() if fault_started_at is not None else None
    cycle = run_alert_cycle(
        store=AlertStore(lake, city=city),
        rules=rules,
        signals=signals,
        sinks=list(sinks) if sinks is not None else sinks_from_settings(settings),
        now=now_ts.to_pydatetime(),
        fault_started_at=fault,
        clock=route_clock,
        runbook_url=settings.alert_runbook_url,
    )
    duration = time.monotonic() - started
    status = "partial" if failed else "ok"
    run_row = {
        "run_id": run_id,
        "evaluated_at": now_ts,
        "window_start": window.start,
        "window_end": window.end,
        "started_at": started_wall,
        "duration_s": duration,
        "status": status,
        "signals": json.dumps([_signal_doc(s) for s in signals], sort_keys=True),
        "signals_measured": sum(1 for s in signals if s.value is not None),
        "signals_missing": sum(1 for s in signals if s.value is None),
        "alerts_fired": len(cycle.fired),
        "alerts_resolved": sum(1 for e in cycle.events if e.event == "resolved"),
        "routes_ok": sum(1 for r in cycle.routes if r.ok),
        "routes_failed": len(cycle.failed_routes),
        "notes": json.dumps(notes),
        "endpoint": source_name if endpoint_metrics_source is not None else None,
        "endpoint_scrape": json.dumps(scrape.to_dict(), sort_keys=True) if scrape is not None else None,
        "fault_started_at": to_utc(fault_started_at, what="fault_started_at") if fault_started_at is not None else None,
    }
    path = lake.write(MONITORING_RUNS, pd.DataFrame([run_row]), city=city, dt=day, name=run_id)
    paths["monitoring_runs"] = [path] if path else []
    return MonitorResult(
        run_id=run_id,
        evaluated_at=now_ts,
        window=window,
        signals=tuple(signals),
        drift=drift_results,
        endpoint=endpoint,
        metrics=metrics,
        cycle=cycle,
        notes=tuple(notes),
        duration_s=duration,
        status=status,
        paths=paths,
    )


def endpoint_source(settings: Settings, url: str | None = None) -> HttpMetricsSource:
    """The /metrics source of the endpoint the settings name (monitor_endpoint_url, else endpoint_url)."""
    return HttpMetricsSource(
        url=url or settings.monitor_endpoint_url or settings.resolved_endpoint_url,
        api_key=settings.serve_api_key,
        timeout_s=settings.monitor_scrape_timeout_s,
    )


def previous_scrape(lake: Lake, *, city: str, endpoint: str, worker: str, before: pd.Timestamp) -> Scrape | None:
    """The newest stored scrape of ``endpoint``'s ``worker`` taken before ``before`` (None: none kept)."""
    before = to_utc(before)
    first = before.floor("D") - pd.Timedelta(days=SCRAPE_LOOKBACK_DAYS)
    days = [partition_value(d, Grain.DAY) for d in pd.date_range(first, before, freq="D")]
    runs = read_days(lake, MONITORING_RUNS, city=city, days=days)
    if not len(runs):
        return None
    runs = runs[(runs["endpoint"] == endpoint) & runs["endpoint_scrape"].notna() & (runs["evaluated_at"] < before)]
    for text in runs.sort_values("evaluated_at", ascending=False)["endpoint_scrape"]:
        try:
            scrape = Scrape.from_dict(json.loads(text))
        except ValueError as exc:
            log.warning("skipping a stored endpoint scrape: %s", exc)
            continue
        if scrape.worker == worker:
            return scrape
    return None


# ---- internals ----------------------------------------------------------------------------------


def _psi_warning(rules: RuleSet) -> float:
    for rule in rules.rules:
        if rule.signal == "feature_psi" and rule.warning is not None:
            return float(rule.warning)
    return DEFAULT_PSI_WARN


def _source_name(source: MetricsSource | None) -> str:
    if source is None:
        return ""
    url = getattr(source, "url", None)
    return str(url) if url else getattr(source, "__name__", type(source).__name__)


def _metrics_frame(parts: Sequence[Part], *, run_id: str, window: Window) -> pd.DataFrame:
    rows = [row for part in parts for row in part.metrics]
    frame = pd.DataFrame(
        rows, columns=["family", "metric", "subject", "target", "alias", "model_version", "value"]
    ).astype({"value": "float64"})
    frame.insert(0, "run_id", run_id)
    frame.insert(1, "evaluated_at", window.end)
    frame.insert(2, "window_start", window.start)
    frame.insert(3, "window_end", window.end)
    return frame


def _endpoint_frame(endpoint: EndpointWindow, now: pd.Timestamp) -> pd.DataFrame:
    versions = json.dumps(dict(endpoint.model_versions), sort_keys=True)
    return pd.DataFrame(
        [
            {
                "observed_at": now,
                "window_start": pd.Timestamp(endpoint.start) if endpoint.start else None,
                "window_end": now,
                "route": r.route,
                "requests": r.requests,
                "errors": r.errors,
                "error_rate": r.error_rate,
                "p50_ms": r.p50_ms,
                "p95_ms": r.p95_ms,
                "p99_ms": r.p99_ms,
                "model_versions": versions,
            }
            for r in endpoint.routes
        ]
    )


def _signal_doc(signal: Signal) -> dict[str, Any]:
    return {
        "name": signal.name,
        "value": signal.value,
        "labels": dict(signal.labels),
        "observed_at": signal.observed_at.isoformat() if signal.observed_at else None,
    }


def _minutes(window: Window) -> int:
    return int((window.end - window.start).total_seconds() // 60)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.1f} %"
    if unit == "s":
        return f"{value:.0f} s"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:.3g}"
