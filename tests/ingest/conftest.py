"""Ingest fixtures: the shipped recording, a paused replay server, a static feed, clients with instant back-off."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from bikeshare.gbfs.client import CircuitBreaker, GbfsClient, RetryPolicy
from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.orchestration.clocks import ReplayClock


class FakeMonotonic:
    """A monotonic clock the test moves by hand (for the circuit breaker's reset)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def recording() -> Recording:
    return Recording.open(default_recording_path())


@pytest.fixture
def replay_factory(recording: Recording) -> Iterator[Callable[..., ReplayServer]]:
    """Start paused replay servers (stopped at teardown)."""
    servers: list[ReplayServer] = []

    def start(gbfs_version: str = "2.3", at: int = 100) -> ReplayServer:
        server = ReplayServer(
            recording, gbfs_version=gbfs_version, speed=1.0, start=recording.snapshot_times()[at], paused=True
        )
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def replay(replay_factory: Callable[..., ReplayServer]) -> ReplayServer:
    return replay_factory()


@pytest.fixture
def breaker_clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def make_client(breaker_clock: FakeMonotonic) -> Callable[..., GbfsClient]:
    """Real HTTP clients whose back-off sleeps are skipped (the waits are the client's own tests).

    A replay serves 2023 snapshots: its clients take fetch times from its virtual clock, as
    ``bikeshare ingest --replay-clock`` does, so that the snapshot-time check sees a fresh snapshot.
    """

    def make(url: str, *, attempts: int = 3, threshold: int = 3, follow_replay: bool = True) -> GbfsClient:
        """``follow_replay``: fetch times from the replay server's virtual clock (``url`` is a replay)."""
        return GbfsClient(
            url,
            http=httpx.Client(timeout=5.0),
            retry=RetryPolicy(attempts=attempts, base_delay_s=0.01, max_delay_s=0.05),
            breaker=CircuitBreaker(threshold, 60.0, clock=breaker_clock),
            sleep=lambda _s: None,
            utc_now=ReplayClock(url.rsplit("/", 1)[0], resync_s=0).now if follow_replay else None,
            owns_http=True,
        )

    return make


class StaticFeed:
    """A GBFS 2.3 feed on loopback that serves the documents a test puts in ``docs`` (feed -> JSON)."""

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/").removesuffix(".json")
                if name == "gbfs":
                    listed = [{"name": n, "url": f"{feed.url}/{n}.json"} for n in feed.docs]
                    doc: Any = {"last_updated": 0, "ttl": 0, "version": "2.3", "data": {"en": {"feeds": listed}}}
                elif name in feed.docs:
                    doc = feed.docs[name]
                else:
                    self.send_error(404)
                    return
                body = json.dumps(doc).encode()  # json, not orjson: integers beyond 64 bits too
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/gbfs.json"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def feed_station(i: int, last_reported: Any, **overrides: Any) -> dict[str, Any]:
    """One clean GBFS 2.3 station_status entry of station ``s<i>``; ``overrides`` replace fields."""
    station: dict[str, Any] = {
        "station_id": f"s{i}",
        "num_bikes_available": 5,
        "num_docks_available": 5,
        "num_bikes_disabled": 0,
        "num_docks_disabled": 0,
        "is_installed": True,
        "is_renting": True,
        "is_returning": True,
        "last_reported": last_reported,
    }
    station.update(overrides)
    return station


def status_doc(last_updated: int, stations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"last_updated": last_updated, "ttl": 0, "version": "2.3", "data": {"stations": stations}}


def information_doc(last_updated: int, n: int) -> dict[str, Any]:
    stations = [{"station_id": f"s{i}", "name": f"S {i}", "capacity": 10, "lat": 37.7, "lon": -122.4} for i in range(n)]
    return {"last_updated": last_updated, "ttl": 0, "version": "2.3", "data": {"stations": stations}}


@pytest.fixture
def static_feed() -> Iterator[StaticFeed]:
    feed = StaticFeed()
    yield feed
    feed.stop()
