"""Endpoint metrics: window quantiles from histogram bucket deltas, checked against hand-computed cases
and against the endpoint's real Prometheus exposition."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from bikeshare.monitoring.endpoint_metrics import (
    ALL_ROUTES,
    Scrape,
    ScrapeError,
    histogram_quantile,
    parse_scrape,
    window_between,
)
from bikeshare.monitoring.signals import endpoint_signals
from bikeshare.serving.metrics import ServingMetrics
from bikeshare.serving.models import ProviderState

T0 = datetime(2023, 3, 9, 20, 0, tzinfo=UTC)


def test_histogram_quantile_interpolates_inside_the_bucket_holding_the_rank() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (math.inf, 40.0)]
    # rank 20 lies in (0.1, 0.5] holding ranks 10..30: 0.1 + 0.4 * (20 - 10) / 20
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)
    # rank 4 lies in the first bucket, interpolated from 0
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)
    # rank 38 lies in +Inf: the largest finite bound
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.5)
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        histogram_quantile(1.5, buckets)


def metrics_text(latencies: dict[str, list[float]], statuses: dict[str, list[int]] | None = None) -> str:
    """The real endpoint metrics registry after observing these requests."""
    metrics = ServingMetrics(lambda: ProviderState(source="folder", location="/nowhere"))
    for route, seconds in latencies.items():
        codes = (statuses or {}).get(route, [200] * len(seconds))
        for value, code in zip(seconds, codes, strict=True):
            metrics.observe(route, code, value)
    return metrics.render().decode()


def test_window_between_two_scrapes_counts_only_the_requests_in_between() -> None:
    metrics = ServingMetrics(lambda: ProviderState(source="folder", location="/nowhere"))
    for value in (0.004, 0.004, 0.004):
        metrics.observe("/invocations", 200, value)
    first = parse_scrape(metrics.render().decode(), observed_at=T0)
    # in the window: 18 fast answers (4 ms) and 2 slow ones (0.4 s), one of them a 503
    for value in [0.004] * 18:
        metrics.observe("/invocations", 200, value)
    metrics.observe("/invocations", 200, 0.4)
    metrics.observe("/invocations", 503, 0.4)
    metrics.observe("/metrics", 200, 0.001)
    second = parse_scrape(metrics.render().decode(), observed_at=T0 + timedelta(minutes=15))
    window = window_between(first, second)
    assert window.start == T0 and not window.restarted
    route = window.route("/invocations")
    assert route is not None
    assert (route.requests, route.errors) == (20, 1)
    assert route.error_rate == pytest.approx(0.05)
    # 18 of 20 in (0.003, 0.005]: the median rank 10 -> 0.003 + 0.002 * 10 / 18
    assert route.p50_ms == pytest.approx((0.003 + 0.002 * 10 / 18) * 1000)
    # rank 19 lies in (0.25, 0.5] holding ranks 18..20: 0.25 + 0.25 * (19 - 18) / 2
    assert route.p95_ms == pytest.approx(375.0)
    total = window.route(ALL_ROUTES)
    assert total is not None and total.requests == 20  # the scrapes themselves are left out of 'all'


def test_a_restart_starts_the_window_at_the_restart() -> None:
    before = parse_scrape(metrics_text({"/invocations": [0.004] * 50}), observed_at=T0)
    after = parse_scrape(metrics_text({"/invocations": [0.2] * 5}), observed_at=T0 + timedelta(hours=1))
    window = window_between(before, after)
    route = window.route("/invocations")
    assert window.restarted and window.start is None
    assert route is not None and route.requests == 5


def test_scrape_state_round_trips_and_bad_text_is_refused() -> None:
    scrape = parse_scrape(metrics_text({"/invocations": [0.01, 0.02]}), observed_at=T0)
    again = Scrape.from_dict(scrape.to_dict())
    assert again == scrape
    with pytest.raises(ScrapeError, match="not the bikeshare endpoint"):
        parse_scrape("# nothing here\n", observed_at=T0)
    with pytest.raises(ValueError, match="malformed"):
        Scrape.from_dict({"observed_at": "yesterday"})


def test_latency_signals_need_enough_requests_and_leave_operational_routes_out() -> None:
    text = metrics_text({"/invocations": [0.4] * 3, "/ping": [0.9] * 30, "/v1/risk": [0.002] * 25})
    window = window_between(None, parse_scrape(text, observed_at=T0))  # no earlier scrape: since start
    part = endpoint_signals(window, reachable=True, min_requests=20)
    p95 = {s.labels.get("route"): s.value for s in part.signals if s.name == "endpoint_p95_ms"}
    assert set(p95) == {"/invocations", "/v1/risk"}  # /ping is operational; 'all' is not a signal
    assert p95["/invocations"] is None  # 3 requests < 20: not measured
    assert p95["/v1/risk"] is not None and p95["/v1/risk"] < 3.0
    assert any("latency not measured" in note for note in part.notes)
