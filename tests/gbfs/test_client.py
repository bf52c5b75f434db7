"""The GBFS client against real loopback servers: discovery, ttl, 304, retries, circuit breaker."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import orjson
import pandas as pd
import pytest

from bikeshare.gbfs.client import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    FeedUnavailable,
    GbfsClient,
    RetryPolicy,
    UnknownFeedError,
)
from bikeshare.gbfs.normalise import normalise_station_status
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.settings import Settings


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Harness:
    """A client wired to count its real HTTP requests and record its back-off sleeps."""

    def __init__(self, url: str, *, attempts: int = 4, threshold: int = 3, reset_s: float = 60.0, timeout: float = 2.0):
        self.requests: list[str] = []
        self.sleeps: list[float] = []
        self.clock = FakeClock()
        self.http = httpx.Client(timeout=timeout, event_hooks={"request": [lambda r: self.requests.append(r.url.path)]})
        self.breaker = CircuitBreaker(threshold, reset_s, clock=self.clock)
        self.client = GbfsClient(
            url,
            http=self.http,
            retry=RetryPolicy(attempts=attempts, base_delay_s=0.5, max_delay_s=4.0),
            breaker=self.breaker,
            sleep=self.sleeps.append,
            clock=self.clock,
            rng=random.Random(1),
        )

    def count(self, path: str) -> int:
        return sum(1 for p in self.requests if p == path)


@pytest.fixture
def harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(url: str, **kwargs: object) -> Harness:
        h = Harness(url, **kwargs)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield make
    for h in made:
        h.http.close()


@pytest.mark.parametrize(("version", "language"), [("1.1", "en"), ("2.3", "en"), ("3.0", None)])
def test_discovery_lists_the_feeds_of_each_version(
    version: str, language: str | None, replay: Callable[..., ReplayServer], harness: Callable[..., Harness]
) -> None:
    server = replay(version)
    index = harness(server.discovery_url).client.discover()
    assert index.version == version
    assert index.language == language
    expected = {"gbfs", "system_information", "station_information", "station_status"}
    if version != "1.1":
        expected.add("vehicle_types")
    assert set(index.feeds) == expected
    assert index.feeds["station_status"] == f"{server.url}/station_status.json"


def test_v3_fetch_normalises_with_vehicle_types(
    replay: Callable[..., ReplayServer], harness: Callable[..., Harness]
) -> None:
    server = replay("3.0")
    client = harness(server.discovery_url).client
    result = client.fetch("station_status")
    assert result.status_code == 200 and result.body is not None and result.attempts == 1
    frame = normalise_station_status(orjson.loads(result.body), vehicle_types=client.vehicle_types())
    recorded = server.recording.status_at(server.clock.now())
    assert frame["ebikes"].notna().all()
    assert frame["ebikes"].tolist() == recorded["ebikes"].tolist()
    with pytest.raises(UnknownFeedError, match="free_bike_status"):
        client.fetch("free_bike_status")
    assert harness(replay("1.1").discovery_url).client.vehicle_types() is None


def test_ttl_is_honoured_without_a_request(
    replay: Callable[..., ReplayServer], harness: Callable[..., Harness]
) -> None:
    server = replay("2.3", paused=False, speed=1.0)  # a running clock: ttl = seconds to the next snapshot, <= 60
    h = harness(server.discovery_url)
    first = h.client.fetch("station_status")
    assert first.ttl is not None and 0 < first.ttl <= 60
    second = h.client.fetch("station_status")
    assert second.from_ttl_cache and second.body == first.body and second.attempts == 0
    assert h.count("/station_status.json") == 1
    h.clock.t += first.ttl
    third = h.client.fetch("station_status")
    assert not third.from_ttl_cache and h.count("/station_status.json") == 2


def test_conditional_request_gets_304_until_the_snapshot_changes(
    replay: Callable[..., ReplayServer], harness: Callable[..., Harness]
) -> None:
    server = replay("2.3")  # paused: ttl 0, so every fetch asks the server
    h = harness(server.discovery_url)
    first = h.client.fetch("station_status")
    assert first.etag and first.last_modified and first.ttl == 0
    again = h.client.fetch("station_status")
    assert again.not_modified and again.status_code == 304 and again.body is None
    server.clock.advance(3600)
    changed = h.client.fetch("station_status")
    assert changed.status_code == 200 and changed.body != first.body
    assert orjson.loads(changed.body)["last_updated"] > orjson.loads(first.body)["last_updated"]


def test_a_304_does_not_renew_the_old_ttl(replay: Callable[..., ReplayServer], harness: Callable[..., Harness]) -> None:
    server = replay("2.3", paused=False, speed=1.0)
    h = harness(server.discovery_url)
    first = h.client.fetch("station_status")
    assert first.ttl is not None and first.ttl > 0
    h.clock.t += first.ttl
    revalidated = h.client.fetch("station_status")
    assert revalidated.not_modified and h.count("/station_status.json") == 2
    # the server may publish the next snapshot any moment now: the next fetch asks it again
    after = h.client.fetch("station_status")
    assert not after.from_ttl_cache and h.count("/station_status.json") == 3


def test_retries_5xx_with_jittered_backoff_then_recovers(
    replay: Callable[..., ReplayServer], harness: Callable[..., Harness]
) -> None:
    server = replay("2.3")
    h = harness(server.discovery_url, attempts=4)
    h.client.discover()
    server.inject("http_5xx", count=2)
    result = h.client.fetch("station_status")
    assert result.status_code == 200 and result.attempts == 3
    assert len(h.sleeps) == 2
    assert 0 <= h.sleeps[0] <= 0.5 and 0 <= h.sleeps[1] <= 1.0  # full jitter under base * 2**(k-1)
    assert h.breaker.state is BreakerState.CLOSED


def test_persistent_5xx_raises_feed_unavailable(
    replay: Callable[..., ReplayServer], harness: Callable[..., Harness]
) -> None:
    server = replay("2.3")
    h = harness(server.discovery_url, attempts=3)
    h.client.discover()
    server.inject("http_5xx", status=502)
    with pytest.raises(FeedUnavailable) as caught:
        h.client.fetch("station_status")
    message = str(caught.value)
    assert "station_status.json" in message and "HTTP 502" in message and "3 attempt" in message
    assert h.count("/station_status.json") == 3 and len(h.sleeps) == 2


def test_timeouts_are_retried(replay: Callable[..., ReplayServer], harness: Callable[..., Harness]) -> None:
    server = replay("2.3")
    h = harness(server.discovery_url, timeout=0.3)
    h.client.discover()
    server.inject("timeout", count=1, delay_s=2.0)
    result = h.client.fetch("station_status")
    assert result.status_code == 200 and result.attempts == 2


def test_connection_errors_are_retried_then_reported(harness: Callable[..., Harness], free_port: int) -> None:
    h = harness(f"http://127.0.0.1:{free_port}/gbfs.json", attempts=2)
    with pytest.raises(FeedUnavailable, match="connection error"):
        h.client.discover()
    assert len(h.sleeps) == 1


def test_malformed_body_is_returned_verbatim(
    replay: Callable[..., ReplayServer], harness: Callable[..., Harness]
) -> None:
    server = replay("2.3")
    h = harness(server.discovery_url)
    h.client.discover()
    server.inject("malformed_json", count=1)
    result = h.client.fetch("station_status")
    assert result.status_code == 200 and result.body is not None
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(result.body)
    assert result.etag is None and result.ttl is None
    good = h.client.fetch("station_status")  # not served from a cache of the broken body
    assert good.status_code == 200 and orjson.loads(good.body)["data"]["stations"]


def test_circuit_breaker_opens_half_opens_and_closes(
    replay: Callable[..., ReplayServer], harness: Callable[..., Harness]
) -> None:
    server = replay("2.3")
    h = harness(server.discovery_url, attempts=1, threshold=2, reset_s=30)
    h.client.discover()
    server.inject("http_5xx")
    for _ in range(2):
        with pytest.raises(FeedUnavailable):
            h.client.fetch("station_status")
    assert h.breaker.state is BreakerState.OPEN
    sent = len(h.requests)
    with pytest.raises(CircuitOpen, match="circuit open"):
        h.client.fetch("station_status")
    assert len(h.requests) == sent  # no request while open
    h.clock.t += 30
    assert h.breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(FeedUnavailable):  # the trial fails: open again at once
        h.client.fetch("station_status")
    assert h.breaker.state is BreakerState.OPEN and len(h.requests) == sent + 1
    server.clear_faults()
    h.clock.t += 30
    assert h.client.fetch("station_status").status_code == 200
    assert h.breaker.state is BreakerState.CLOSED and h.breaker.consecutive_failures == 0


class _Scripted(BaseHTTPRequestHandler):
    """Answers each path with the next (status, headers, body) of its script."""

    scripts: ClassVar[dict[str, list[tuple[int, dict[str, str], bytes]]]] = {}

    def do_GET(self) -> None:
        script = self.scripts.get(self.path, [])
        status, headers, body = script.pop(0) if len(script) > 1 else (script[0] if script else (404, {}, b"{}"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, dict[str, list[tuple[int, dict[str, str], bytes]]]]]:
    scripts: ClassVar[dict[str, list[tuple[int, dict[str, str], bytes]]]] = {}
    handler = type("Handler", (_Scripted,), {"scripts": scripts})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", scripts
    httpd.shutdown()
    httpd.server_close()


def test_client_errors_are_not_retried_but_429_is(
    scripted: tuple[str, dict[str, list[tuple[int, dict[str, str], bytes]]]], harness: Callable[..., Harness]
) -> None:
    base, scripts = scripted
    discovery = {
        "last_updated": 1677700000,
        "ttl": 0,
        "version": "2.3",
        "data": {
            "en": {"feeds": [{"name": "station_status", "url": "status.json"}, {"name": "gone", "url": "gone.json"}]}
        },
    }
    ok = {"last_updated": 1677700000, "ttl": 0, "version": "2.3", "data": {"stations": []}}
    scripts["/gbfs.json"] = [(200, {}, orjson.dumps(discovery))]
    scripts["/gone.json"] = [(404, {}, b"not here")]
    scripts["/status.json"] = [(429, {"Retry-After": "3"}, b""), (200, {}, orjson.dumps(ok))]
    h = harness(f"{base}/gbfs.json", attempts=4)
    assert h.client.discover().feeds["station_status"] == f"{base}/status.json"  # relative URLs resolved
    with pytest.raises(FeedUnavailable, match="HTTP 404") as caught:
        h.client.fetch("gone")
    assert caught.value.attempts == 1 and h.count("/gone.json") == 1
    result = h.client.fetch("station_status")
    assert result.status_code == 200 and result.attempts == 2
    assert h.sleeps[-1] == pytest.approx(3.0)  # Retry-After beats a shorter jittered delay


def test_from_settings_uses_the_settings(settings: Settings, replay: Callable[..., ReplayServer]) -> None:
    server = replay("3.0")
    tuned = settings.model_copy(update={"retry_attempts": 2, "breaker_failure_threshold": 5, "breaker_reset_s": 9.0})
    with GbfsClient.from_settings(tuned, discovery_url=server.discovery_url) as client:
        assert client.retry.attempts == 2 and client.breaker.failure_threshold == 5
        assert client.discover().version == "3.0"
        fetched = client.fetch("system_information")
        assert fetched.fetched_at <= pd.Timestamp.now(tz="UTC")
    with pytest.raises(ValueError, match="no feed URL"):
        GbfsClient.from_settings(settings.model_copy(update={"feed_url": None}))
