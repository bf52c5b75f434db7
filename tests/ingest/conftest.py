"""Ingest fixtures: the shipped recording, a paused replay server, clients with instant back-off."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from bikeshare.gbfs.client import CircuitBreaker, GbfsClient, RetryPolicy
from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.gbfs.replay import ReplayServer


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
    """Real HTTP clients whose back-off sleeps are skipped (the waits are the client's own tests)."""

    def make(url: str, *, attempts: int = 3, threshold: int = 3) -> GbfsClient:
        return GbfsClient(
            url,
            http=httpx.Client(timeout=5.0),
            retry=RetryPolicy(attempts=attempts, base_delay_s=0.01, max_delay_s=0.05),
            breaker=CircuitBreaker(threshold, 60.0, clock=breaker_clock),
            sleep=lambda _s: None,
            owns_http=True,
        )

    return make
