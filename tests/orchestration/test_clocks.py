"""Job clocks: the wall clock, and a replay server's virtual clock read over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.orchestration.clocks import ReplayClock, ReplayReading, WallClock

START = pd.Timestamp("2023-03-08T12:00Z")


@pytest.fixture(scope="module")
def recording() -> Recording:
    return Recording.open(default_recording_path())


@pytest.fixture
def server(recording: Recording) -> Iterator[ReplayServer]:
    with ReplayServer(recording, speed=600.0, start=START, paused=True, port=0) as replay:
        yield replay


def test_wall_clock_waits_and_returns_early_on_stop() -> None:
    clock = WallClock(max_wait_s=0.05)
    stop = threading.Event()
    t0 = time.monotonic()
    assert clock.wait_until(clock.now() + pd.Timedelta(seconds=0.2), stop)
    assert 0.15 <= time.monotonic() - t0 < 2.0
    assert clock.now().tzname() == "UTC"
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    assert not clock.wait_until(clock.now() + pd.Timedelta(hours=1), stop)
    assert time.monotonic() - t0 < 2.0


def test_replay_clock_follows_the_server_pause_and_speed(server: ReplayServer) -> None:
    clock = ReplayClock(server.url, resync_s=0.05)
    try:
        assert clock.now() == START  # paused: virtual time stands still
        assert clock.speed == 600.0
        assert not clock.ended()
        server.clock.pause(False)
        stop = threading.Event()
        t0 = time.monotonic()
        # 10 virtual minutes at 600x: about one real second
        assert clock.wait_until(START + pd.Timedelta(minutes=10), stop)
        waited = time.monotonic() - t0
        assert 0.5 < waited < 5.0
        assert clock.now() >= START + pd.Timedelta(minutes=10)
        # a new speed on the server is followed within resync_s
        server.clock.set_speed(6000.0)
        time.sleep(0.1)
        t0 = time.monotonic()
        assert clock.wait_until(clock.now() + pd.Timedelta(minutes=10), stop)
        assert time.monotonic() - t0 < 1.0
        # a pause holds a waiter until the stop event
        server.clock.pause(True)
        time.sleep(0.1)
        frozen = clock.now()
        threading.Timer(0.3, stop.set).start()
        assert not clock.wait_until(frozen + pd.Timedelta(seconds=1), stop)
        assert clock.now() == frozen
    finally:
        clock.close()


def test_replay_clock_ended_at_the_recordings_last_snapshot(server: ReplayServer, recording: Recording) -> None:
    server.clock.set(recording.end)
    clock = ReplayClock(server.url)
    try:
        assert clock.ended()
    finally:
        clock.close()


def test_replay_clock_keeps_the_last_reading_when_the_server_goes(recording: Recording) -> None:
    replay = ReplayServer(recording, speed=60.0, start=START, port=0).start()
    clock = ReplayClock(replay.url, resync_s=0.01, timeout_s=1.0)
    url = replay.url
    try:
        before = clock.now()
        replay.stop()
        time.sleep(0.05)
        after = clock.now()  # extrapolated from the last good reading, logged
        assert after > before
    finally:
        clock.close()
    unreachable = ReplayClock(url, timeout_s=1.0)
    try:
        with pytest.raises(RuntimeError, match="cannot be read"):
            unreachable.now()
    finally:
        unreachable.close()


def test_a_reading_extrapolates_virtual_time() -> None:
    reading = ReplayReading(virtual=START, speed=120.0, paused=False, ended=False, end=START, read_at=100.0)
    assert reading.extrapolate(101.5) == START + pd.Timedelta(seconds=180)
    paused = ReplayReading(virtual=START, speed=120.0, paused=True, ended=False, end=START, read_at=100.0)
    assert paused.extrapolate(500.0) == START
