"""Endpoint latency and errors per monitoring window, from the endpoint's own Prometheus ``/metrics``.

The endpoint exposes cumulative counters: a latency histogram per route
(``bikeshare_http_request_duration_seconds``) and requests per route and status
(``bikeshare_http_requests_total``). One scrape is a :class:`Scrape`; the window between two scrapes
of the same process is the difference of their counters (:func:`window_between`), and window
quantiles are read from the bucket differences by linear interpolation inside the bucket that holds
the rank, as Prometheus' ``histogram_quantile`` does. A counter that went down, or a series whose
``_created`` time changed, means the process restarted: the window then starts at the restart.

Errors are 5xx answers (the endpoint's fault); 4xx answers are the client's and are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from bikeshare.monitoring.alerts import as_utc

LATENCY_METRIC = "bikeshare_http_request_duration_seconds"
REQUESTS_METRIC = "bikeshare_http_requests"
MODEL_VERSION_METRIC = "bikeshare_model_version"
WORKER_PID_METRIC = "bikeshare_worker_pid"
# Operational routes: measured and stored, but the latency SLO is about the routes that answer users.
OPS_ROUTES = frozenset({"/metrics", "/ping", "/healthz", "/docs", "/openapi.json", "other"})
ALL_ROUTES = "all"  # the aggregate row: every route but /metrics (the scrapes themselves)

MetricsSource = Callable[[], str]


class ScrapeError(RuntimeError):
    """The endpoint's /metrics could not be read or parsed."""


@dataclass(frozen=True)
class Scrape:
    """Cumulative counters of one endpoint process at one instant."""

    observed_at: datetime
    worker: str  # process id of the worker that answered ("" when not exposed)
    # route -> [(upper bound in seconds, cumulative count)], ascending, +inf last
    buckets: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    latency_sum_s: Mapping[str, float] = field(default_factory=dict)
    created: Mapping[str, float] = field(default_factory=dict)  # route -> histogram series creation time
    requests: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # route -> status -> count
    model_versions: Mapping[str, str] = field(default_factory=dict)  # "alias/target" -> version

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (kept in the monitoring_runs table for the next run)."""
        return {
            "observed_at": self.observed_at.isoformat(),
            "worker": self.worker,
            "buckets": {r: [[_json_bound(le), c] for le, c in b] for r, b in self.buckets.items()},
            "latency_sum_s": dict(self.latency_sum_s),
            "created": dict(self.created),
            "requests": {r: dict(s) for r, s in self.requests.items()},
            "model_versions": dict(self.model_versions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scrape:
        """Inverse of :meth:`to_dict`; ValueError names what is malformed."""
        try:
            return cls(
                observed_at=as_utc(datetime.fromisoformat(str(data["observed_at"])), what="scrape observed_at"),
                worker=str(data.get("worker", "")),
                buckets={
                    str(r): tuple((_parse_bound(le), float(c)) for le, c in b) for r, b in dict(data["buckets"]).items()
                },
                latency_sum_s={str(k): float(v) for k, v in dict(data.get("latency_sum_s", {})).items()},
                created={str(k): float(v) for k, v in dict(data.get("created", {})).items()},
                requests={
                    str(r): {str(s): float(n) for s, n in dict(v).items()}
                    for r, v in dict(data.get("requests", {})).items()
                },
                model_versions={str(k): str(v) for k, v in dict(data.get("model_versions", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"stored endpoint scrape is malformed: {exc!r}") from exc


@dataclass(frozen=True)
class RouteWindow:
    """Requests, 5xx errors and latency quantiles of one route over a window (``route='all'``: summed)."""

    route: str
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class EndpointWindow:
    """What changed between two scrapes of one endpoint process."""

    start: datetime | None  # None: since the process started (no earlier scrape of it)
    end: datetime
    routes: tuple[RouteWindow, ...]
    restarted: bool
    model_versions: Mapping[str, str]

    def route(self, name: str) -> RouteWindow | None:
        return next((r for r in self.routes if r.route == name), None)


def parse_scrape(text: str, *, observed_at: datetime) -> Scrape:
    """Read the endpoint's Prometheus text exposition into a :class:`Scrape`."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    created: dict[str, float] = {}
    requests: dict[str, dict[str, float]] = {}
    versions: dict[str, str] = {}
    worker = ""
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ScrapeError(f"/metrics is not Prometheus text: {exc}") from exc
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if sample.name == f"{LATENCY_METRIC}_bucket":
                buckets.setdefault(labels["route"], {})[_parse_bound(labels["le"])] = float(sample.value)
            elif sample.name == f"{LATENCY_METRIC}_sum":
                sums[labels["route"]] = float(sample.value)
            elif sample.name == f"{LATENCY_METRIC}_created":
                created[labels["route"]] = float(sample.value)
            elif sample.name == f"{REQUESTS_METRIC}_total":
                requests.setdefault(labels["route"], {})[labels["status"]] = float(sample.value)
            elif sample.name == MODEL_VERSION_METRIC and not math.isnan(sample.value):
                versions[f"{labels['alias']}/{labels['target']}"] = str(int(sample.value))
            elif sample.name == WORKER_PID_METRIC:
                worker = str(int(sample.value))
    if not buckets and not requests:
        raise ScrapeError(f"/metrics has no {LATENCY_METRIC} or {REQUESTS_METRIC} series: not the bikeshare endpoint?")
    return Scrape(
        observed_at=as_utc(observed_at, what="observed_at"),
        worker=worker,
        buckets={r: tuple(sorted(b.items())) for r, b in buckets.items()},
        latency_sum_s=sums,
        created=created,
        requests=requests,
        model_versions=versions,
    )


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...] | list[tuple[float, float]]) -> float | None:
    """Quantile ``q`` (0..1) of cumulative ``(upper_bound, count)`` buckets; None when they are empty.

    Linear inside the bucket holding the rank (from 0 for the first bucket); a rank in the +Inf
    bucket answers the largest finite bound, as Prometheus does.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = (bound if not math.isinf(bound) else lower_bound), count
    return lower_bound


def window_between(previous: Scrape | None, current: Scrape) -> EndpointWindow:
    """Counters of ``current`` minus those of ``previous`` (same process), per route and in total."""
    restarted = previous is not None and _restarted(previous, current)
    base = None if previous is None or restarted else previous
    routes: list[RouteWindow] = []
    total_buckets: dict[float, float] = {}
    total_requests = total_errors = 0
    for route in sorted(set(current.buckets) | set(current.requests)):
        delta = _bucket_delta(base.buckets.get(route, ()) if base else (), current.buckets.get(route, ()))
        statuses = _status_delta(base.requests.get(route, {}) if base else {}, current.requests.get(route, {}))
        count = round(sum(statuses.values())) if statuses else round(delta[-1][1] if delta else 0.0)
        errors = round(sum(n for s, n in statuses.items() if s.startswith("5")))
        if count <= 0:
            continue
        routes.append(_route_window(route, count, errors, delta))
        if route != "/metrics":
            total_requests += count
            total_errors += errors
            for bound, n in delta:
                total_buckets[bound] = total_buckets.get(bound, 0.0) + n
    if total_requests:
        routes.append(_route_window(ALL_ROUTES, total_requests, total_errors, tuple(sorted(total_buckets.items()))))
    return EndpointWindow(
        start=base.observed_at if base else None,
        end=current.observed_at,
        routes=tuple(routes),
        restarted=restarted,
        model_versions=dict(current.model_versions),
    )


@dataclass(frozen=True)
class HttpMetricsSource:
    """Reads ``<url>/metrics`` (with the endpoint's API key when it has one)."""

    url: str
    api_key: str | None = None
    timeout_s: float = 5.0

    def __call__(self) -> str:
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        target = f"{self.url.rstrip('/')}/metrics"
        try:
            response = httpx.get(target, headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise ScrapeError(f"GET {target} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise ScrapeError(f"GET {target} answered HTTP {response.status_code}: {response.text[:200]}")
        return response.text


# ---- internals ----------------------------------------------------------------------------------


def _route_window(route: str, count: int, errors: int, delta: tuple[tuple[float, float], ...]) -> RouteWindow:
    def ms(q: float) -> float | None:
        value = histogram_quantile(q, delta) if delta else None
        return None if value is None else value * 1000.0

    return RouteWindow(route=route, requests=count, errors=errors, p50_ms=ms(0.5), p95_ms=ms(0.95), p99_ms=ms(0.99))


def _restarted(previous: Scrape, current: Scrape) -> bool:
    for route, stamp in current.created.items():
        if route in previous.created and abs(previous.created[route] - stamp) > 1e-3:
            return True
    for route, buckets in previous.buckets.items():
        now = dict(current.buckets.get(route, ()))
        if any(now.get(bound, 0.0) < count for bound, count in buckets):
            return True
    for route, statuses in previous.requests.items():
        now = current.requests.get(route, {})
        if any(now.get(status, 0.0) < count for status, count in statuses.items()):
            return True
    return False


def _bucket_delta(
    before: tuple[tuple[float, float], ...], after: tuple[tuple[float, float], ...]
) -> tuple[tuple[float, float], ...]:
    old = dict(before)
    return tuple((bound, max(count - old.get(bound, 0.0), 0.0)) for bound, count in after)


def _status_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {s: max(n - before.get(s, 0.0), 0.0) for s, n in after.items()}


def _parse_bound(value: str | float) -> float:
    if isinstance(value, str) and value.strip().lower() in ("+inf", "inf"):
        return math.inf
    return float(value)


def _json_bound(value: float) -> str | float:
    return "+Inf" if math.isinf(value) else value
