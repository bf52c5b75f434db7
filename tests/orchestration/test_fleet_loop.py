"""A fleet in one runner: each city's jobs on its own feed; a feed that times out holds up nobody else."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.fleet import load_fleet
from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import JOB_RUNS, STATION_STATUS
from bikeshare.orchestration.clocks import ReplayClock
from bikeshare.orchestration.jobs import LoopEndpoints, run_loop
from bikeshare.resources import Resources
from bikeshare.settings import Settings

START = pd.Timestamp("2023-03-08T12:00Z")
SPAN = pd.Timedelta(minutes=12)  # replayed at 60x: 12 real seconds


@pytest.fixture
def silent_feed() -> Iterator[str]:
    """A loopback server that accepts connections and never answers: every request times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/gbfs.json"
    closing.set()
    server.close()
    for conn in held:
        conn.close()


def test_a_dead_feed_fails_its_own_jobs_while_the_other_city_keeps_flowing(
    settings: Settings, lake: Lake, tmp_path: Path, silent_feed: str
) -> None:
    with ReplayServer(Recording.open(default_recording_path()), speed=60.0, start=START, port=0) as replay:
        fleet_file = tmp_path / "fleet.toml"
        fleet_file.write_text(
            "http_timeout_s = 2.0\nretry_attempts = 2\nretry_base_delay_s = 0.1\n\n"
            f'[[cities]]\nkey = "sf"\nfeed_url = "{replay.discovery_url}"\n\n'
            f'[[cities]]\nkey = "dead"\nfeed_url = "{silent_feed}"\ntimezone = "Europe/Oslo"\n'
        )
        fleet = load_fleet(fleet_file, settings)
        clock = ReplayClock(replay.url)
        report = run_loop(
            settings=settings,
            lake=lake,
            clock=clock,
            endpoints=LoopEndpoints(feed_url="unused in a fleet", endpoint_url="http://127.0.0.1:9"),
            stop=threading.Event(),
            names=["ingest"],
            until=START + SPAN,
            fleet=fleet.cities,
            registry=Resources.build(settings).registry,
        )
        clock.close()

    live = lake.read(JOB_RUNS, city="sf").to_pandas()
    dead = lake.read(JOB_RUNS, city="dead").to_pandas()
    # sf polled on its schedule (every poll_interval_s replayed) while the other feed hung 4 s (2 timeouts) a run
    expected = SPAN.total_seconds() / settings.poll_interval_s
    assert report.count("ingest@sf", "ok") == len(live) >= 0.75 * expected, report.summary()
    assert live["status"].eq("ok").all() and live["lag_s"].max() < 2 * settings.poll_interval_s
    snapshots = lake.read(STATION_STATUS, city="sf").column("last_updated").to_pandas().nunique()
    committed = live["details"].str.contains('"committed"').sum()
    assert snapshots == committed >= 2  # the recording publishes every ~10 minutes
    # the dead city: every run failed, recorded in its own partition, naming its feed
    assert len(dead) >= 1 and dead["status"].eq("failed").all() and report.count("ingest@dead", "ok") == 0
    assert dead["error"].str.contains(silent_feed.rsplit("/", 1)[0]).all(), dead["error"].tolist()
    assert lake.partitions(STATION_STATUS, city="dead") == []
