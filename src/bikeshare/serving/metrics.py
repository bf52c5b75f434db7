"""Prometheus metrics of one endpoint process, in a registry owned by its app (no global state).

Per route: a latency histogram, request counts by status, and error counts (4xx/5xx). Per alias
and target: the loaded model version and the seconds since it was loaded, read from the model
provider at scrape time. With several workers each process keeps its own counters; a scrape sees
the worker that answered it (``bikeshare_worker_pid`` says which).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bikeshare.serving.models import ProviderState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _ModelCollector(Collector):
    """Model gauges computed from the provider's current state at each scrape."""

    def __init__(self, state: Callable[[], ProviderState]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        now = time.time()
        version = GaugeMetricFamily(
            "bikeshare_model_version",
            "Registered version of the loaded model (NaN when it is not a number).",
            labels=["alias", "target", "name"],
        )
        age = GaugeMetricFamily(
            "bikeshare_model_seconds_since_load", "Seconds since the model was loaded.", labels=["alias", "target"]
        )
        for (alias, target), model in sorted(state.models.items()):
            number = float(model.version) if model.version.isdigit() else float("nan")
            version.add_metric([alias, target, model.name], number)
            age.add_metric([alias, target], now - model.loaded_at)
        yield version
        yield age
        loaded = GaugeMetricFamily(
            "bikeshare_alias_servable", "1 when both targets of the alias are loaded.", labels=["alias"]
        )
        for alias in ("production", "staging"):
            loaded.add_metric([alias], 1.0 if alias in state.sets else 0.0)
        yield loaded
        if state.registry_reachable is not None:
            yield GaugeMetricFamily(
                "bikeshare_registry_up",
                "1 when the last poll of the model registry succeeded.",
                value=1.0 if state.registry_reachable else 0.0,
            )
        yield GaugeMetricFamily("bikeshare_model_swaps", "Models loaded or swapped since start.", value=state.swaps)
        yield GaugeMetricFamily("bikeshare_worker_pid", "Process id of the worker that answered.", value=os.getpid())


class ServingMetrics:
    """The endpoint's metrics; ``observe`` is called once per request by the middleware."""

    def __init__(self, state: Callable[[], ProviderState]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "bikeshare_http_request_duration_seconds",
            "Request latency in the endpoint, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "bikeshare_http_requests", "Requests by route and status.", ["route", "status"], registry=self.registry
        )
        self.errors = Counter(
            "bikeshare_http_errors",
            "Requests answered 4xx or 5xx, by route.",
            ["route", "status"],
            registry=self.registry,
        )
        self.scored = Counter(
            "bikeshare_scored_rows",
            "Feature rows scored, by the alias that answered.",
            ["alias"],
            registry=self.registry,
        )
        self.answered = Counter(
            "bikeshare_invocations", "Scoring requests, by the alias that answered.", ["alias"], registry=self.registry
        )
        self.registry.register(_ModelCollector(state))
        self._latency_children: dict[str, Histogram] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        child = self._latency_children.get(route)
        if child is None:
            child = self._latency_children[route] = self.latency.labels(route)
        child.observe(seconds)
        code = str(status)
        self.requests.labels(route, code).inc()
        if status >= 400:
            self.errors.labels(route, code).inc()

    def scored_rows(self, alias: str, rows: int) -> None:
        self.answered.labels(alias).inc()
        self.scored.labels(alias).inc(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)
