"""Acceptance: replay server -> ingest -> lake -> `bikeshare sql`, with faults."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.gbfs.client import BreakerState, GbfsClient
from bikeshare.gbfs.recording import Recording
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.ingest.poller import IngestState, Outcome, ingest_once
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import JOB_RUNS, QUARANTINE, STATION_STATUS
from bikeshare.orchestration.clocks import WallClock
from bikeshare.orchestration.jobs import RunClock, ingest_job, schedules
from bikeshare.orchestration.records import JobRun, JobRunRecorder, RunStatus
from bikeshare.orchestration.runner import Job, Runner
from bikeshare.settings import Settings

from .conftest import FakeMonotonic


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "BIKESHARE_WEATHER_ENABLED": "false",
        "BIKESHARE_RETRY_BASE_DELAY_S": "0",
    }


def test_cli_ingest_once_writes_a_partition_that_sql_counts(
    tmp_path: Path, replay: ReplayServer, recording: Recording
) -> None:
    runner = CliRunner()
    env = cli_env(tmp_path)
    # The replay serves 2023: its virtual clock is the fetch time, or the snapshot is implausibly old.
    result = runner.invoke(app, ["ingest", "--feed", replay.discovery_url, "--once", "--replay-clock"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("committed")

    served = recording.status_at(replay.clock.now())
    lake = Lake.open(env["BIKESHARE_LAKE_URI"])
    assert len(lake.partitions(STATION_STATUS, city="sf")) == 1

    counted = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM station_status", "--format", "json"], env=env)
    assert counted.exit_code == 0, counted.output
    assert json.loads(counted.output) == [{"n": len(served)}]
    log = runner.invoke(
        app, ["sql", "SELECT outcome, rows_written, ingest_latency_s FROM ingest_log", "--format", "json"], env=env
    )
    [row] = json.loads(log.output)
    assert row["outcome"] == "committed" and row["rows_written"] == len(served)
    info = runner.invoke(
        app, ["sql", "SELECT count(*) AS n FROM station_information_current", "--format", "json"], env=env
    )
    assert json.loads(info.output)[0]["n"] == len(recording.information_at(replay.clock.now()))


def test_cli_ingest_once_exits_non_zero_when_the_feed_is_down(tmp_path: Path, free_port: int) -> None:
    result = CliRunner().invoke(
        app, ["ingest", "--feed", f"http://127.0.0.1:{free_port}/gbfs.json", "--once"], env=cli_env(tmp_path)
    )
    assert result.exit_code == 1
    assert result.output.startswith("fetch_failed")


def test_the_same_snapshot_fetched_twice_gives_one_partition(
    settings: Settings, lake: Lake, replay: ReplayServer, make_client: Callable[..., GbfsClient]
) -> None:
    with make_client(replay.discovery_url) as client:
        state = IngestState()
        first = ingest_once(client=client, lake=lake, settings=settings, state=state)
        again = ingest_once(client=client, lake=lake, settings=settings, state=state)
    with make_client(replay.discovery_url) as fresh_client:  # no ETag: a full body that must be deduped
        fresh = ingest_once(client=fresh_client, lake=lake, settings=settings)
    assert [first.outcome, again.outcome, fresh.outcome] == [Outcome.COMMITTED, Outcome.UNCHANGED, Outcome.DUPLICATE]
    assert len(lake.files(STATION_STATUS, city="sf")) == 1
    con = lake.connect()
    assert con.sql("SELECT count(DISTINCT batch_id) FROM station_status").fetchall() == [(1,)]
    outcomes = sorted(r[0] for r in con.sql("SELECT outcome FROM ingest_log").fetchall())
    assert outcomes == ["committed", "duplicate", "unchanged"]

    replay.clock.advance(3600)  # a new snapshot: a second partition
    with make_client(replay.discovery_url) as client:
        assert ingest_once(client=client, lake=lake, settings=settings).outcome == Outcome.COMMITTED
    assert len(lake.files(STATION_STATUS, city="sf")) == 2


def _normalised_rows(lake: Lake) -> pd.DataFrame:
    frame = lake.read(STATION_STATUS, city="sf").to_pandas()
    return frame.drop(columns=["fetched_at"]).sort_values("station_id", ignore_index=True)


def test_v11_v23_v30_renderings_ingest_to_identical_rows(
    tmp_path: Path, replay_factory: Callable[..., ReplayServer], make_client: Callable[..., GbfsClient]
) -> None:
    frames = {}
    information = {}
    for version in ("1.1", "2.3", "3.0"):
        settings = Settings(lake_uri=str(tmp_path / version), state_dir=tmp_path / "state", weather_enabled=False)
        lake = Lake.open(settings.lake_uri)
        server = replay_factory(gbfs_version=version, at=200)
        with make_client(server.discovery_url) as client:
            outcome = ingest_once(client=client, lake=lake, settings=settings)
        assert outcome.outcome == Outcome.COMMITTED, outcome.reason
        assert outcome.gbfs_version == version
        frames[version] = _normalised_rows(lake)
        information[version] = (
            lake.connect().sql("SELECT * EXCLUDE (fetched_at) FROM station_information ORDER BY station_id").df()
        )
    assert len(frames["1.1"]) > 400
    assert frames["1.1"]["ebikes"].notna().all()  # e-bikes survive every rendering
    assert len(information["1.1"]) > 400
    pd.testing.assert_frame_equal(frames["1.1"], frames["2.3"])
    pd.testing.assert_frame_equal(frames["1.1"], frames["3.0"])
    pd.testing.assert_frame_equal(information["1.1"], information["2.3"])
    pd.testing.assert_frame_equal(information["1.1"], information["3.0"])


def _quarantined(lake: Lake) -> pd.DataFrame:
    return lake.connect().sql("SELECT * FROM quarantine").df()


def test_a_malformed_document_is_quarantined_with_its_payload(
    settings: Settings, lake: Lake, replay: ReplayServer, make_client: Callable[..., GbfsClient]
) -> None:
    replay.inject("malformed_json", count=1)
    with make_client(replay.discovery_url) as client:
        outcome = ingest_once(client=client, lake=lake, settings=settings)
    assert outcome.outcome == Outcome.QUARANTINED
    assert lake.partitions(STATION_STATUS, city="sf") == []
    [row] = _quarantined(lake).to_dict("records")
    assert row["reason_code"] == "malformed_json"
    assert json.loads(row["reason"])["rejections"][0]["code"] == "malformed_json"
    payload = gzip.decompress(lake.read_bytes(row["payload_path"]))
    full = orjson.dumps(replay.document("station_status"))
    assert payload == full[: len(full) // 2]  # the bytes as served, truncated by the fault
    [log_row] = lake.connect().sql("SELECT outcome, reason FROM ingest_log").fetchall()
    assert log_row[0] == "quarantined" and log_row[1].startswith("malformed_json")


def test_ten_percent_missing_bikes_is_quarantined_with_its_reason(
    settings: Settings, lake: Lake, replay: ReplayServer, make_client: Callable[..., GbfsClient]
) -> None:
    replay.inject("missing_bikes", count=1, fraction=0.1)
    with make_client(replay.discovery_url) as client:
        outcome = ingest_once(client=client, lake=lake, settings=settings)
    assert outcome.outcome == Outcome.QUARANTINED
    assert lake.partitions(STATION_STATUS, city="sf") == []
    [row] = _quarantined(lake).to_dict("records")
    assert row["reason_code"] == "missing_required"
    [rejection] = json.loads(row["reason"])["rejections"]
    assert rejection["field"] == "bikes"
    assert rejection["share"] == pytest.approx(0.1, abs=0.01)
    assert rejection["threshold"] == settings.contract_max_missing_frac
    assert len(rejection["examples"]) == 5
    doc = json.loads(gzip.decompress(lake.read_bytes(row["payload_path"])))
    stations = doc["data"]["stations"]
    missing = [s["station_id"] for s in stations if "num_bikes_available" not in s]
    assert set(rejection["examples"]) <= set(missing)
    assert row["payload_path"].endswith(".json.gz") and "/quarantine/city=sf/dt=" in row["payload_path"]

    # The fault is gone: the next fetch of the same snapshot is written.
    with make_client(replay.discovery_url) as client:
        assert ingest_once(client=client, lake=lake, settings=settings).outcome == Outcome.COMMITTED
    assert len(lake.files(QUARANTINE, city="sf")) == 1


def test_out_of_range_station_and_stale_last_updated_are_quarantined(
    settings: Settings, lake: Lake, replay: ReplayServer, make_client: Callable[..., GbfsClient]
) -> None:
    replay.inject("out_of_range_station", count=1)
    replay.inject("stale_last_updated", count=1, age_s=7200)
    with make_client(replay.discovery_url) as client:
        first = ingest_once(client=client, lake=lake, settings=settings)
    codes = set(_quarantined(lake)["reason_code"])
    assert first.outcome == Outcome.QUARANTINED
    assert codes == {"negative_count"}
    reason = json.loads(_quarantined(lake)["reason"].iloc[0])
    assert {r["code"] for r in reason["rejections"]} >= {"negative_count", "future_last_reported"}


def test_a_5xx_burst_is_retried_and_a_dead_feed_opens_then_recovers(
    settings: Settings,
    lake: Lake,
    replay: ReplayServer,
    make_client: Callable[..., GbfsClient],
    breaker_clock: FakeMonotonic,
) -> None:
    with make_client(replay.discovery_url, attempts=3, threshold=2) as client:
        client.discover()
        replay.inject("http_5xx", count=2)  # two failed attempts, the third answers
        assert ingest_once(client=client, lake=lake, settings=settings).outcome == Outcome.COMMITTED

        replay.inject("http_5xx", status=502)  # dead until cleared
        replay.clock.advance(3600)
        failed = [ingest_once(client=client, lake=lake, settings=settings) for _ in range(3)]
        assert [o.outcome for o in failed] == [Outcome.FETCH_FAILED] * 3
        assert "FeedUnavailable" in (failed[0].reason or "") and "502" in (failed[0].reason or "")
        assert "CircuitOpen" in (failed[2].reason or "")
        assert client.breaker.state is BreakerState.OPEN

        replay.clear_faults()
        breaker_clock.now += 61  # the breaker's reset time passes: the next batch is the trial
        recovered = ingest_once(client=client, lake=lake, settings=settings)
        assert recovered.outcome == Outcome.COMMITTED, recovered.reason
        assert client.breaker.state is BreakerState.CLOSED
    con = lake.connect()
    outcomes = con.sql("SELECT outcome, count(*) FROM ingest_log GROUP BY 1 ORDER BY 1").fetchall()
    assert outcomes == [("committed", 2), ("fetch_failed", 3)]


def test_the_ingest_job_keeps_running_through_a_dead_feed_and_stops_on_request(
    lake: Lake, replay: ReplayServer, tmp_path: Path, make_client: Callable[..., GbfsClient]
) -> None:
    """The loop of `bikeshare ingest` is the runner with the ingest job: failed batches are recorded
    as failed runs, the schedule goes on, and no batch starts once stop is set."""
    settings = Settings(lake_uri=lake.root, state_dir=tmp_path / "state", poll_interval_s=0.01, weather_enabled=False)
    replay.inject("http_5xx", count=4)
    outcomes: list[str] = []
    stop = threading.Event()

    def seen(run: JobRun) -> None:
        outcomes.append(json.loads(run.details)["outcome"])
        if outcomes[-1] == Outcome.COMMITTED:
            stop.set()

    run_clock = RunClock(WallClock(max_wait_s=0.01))
    with make_client(replay.discovery_url, attempts=2, threshold=5) as client:
        job = Job("ingest", schedules(settings)["ingest"], ingest_job(settings=settings, lake=lake, client=client,
                                                                      run_clock=run_clock))  # fmt: skip
        runner = Runner([job], clock=run_clock.clock, recorder=JobRunRecorder(lake, city="sf"), stop=stop, on_run=seen)
        report = runner.run()
    assert outcomes == [Outcome.FETCH_FAILED, Outcome.FETCH_FAILED, Outcome.COMMITTED]
    assert report.count("ingest") == 3 and report.count("ingest", RunStatus.FAILED) == 2
    rows = lake.read(JOB_RUNS, city="sf").to_pandas()
    assert sorted(rows["status"]) == ["failed", "failed", "ok"]


def test_cli_poller_follows_the_replay_clock_and_stops_cleanly_on_sigterm(tmp_path: Path, recording: Recording) -> None:
    env = {**os.environ, **cli_env(tmp_path), "BIKESHARE_POLL_INTERVAL_S": "0.5"}
    start = recording.snapshot_times()[50]
    with ReplayServer(recording, gbfs_version="3.0", speed=1.0, start=start) as server:
        command = [str(Path(sys.executable).with_name("bikeshare")), "ingest", "--feed", server.discovery_url]
        proc = subprocess.Popen(
            [*command, "--replay-clock"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("committed"):
                proc.send_signal(signal.SIGTERM)
                break
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + out
    assert out.strip().splitlines()[-1].startswith("stopped after")
    [(latency, fetched)] = (
        Lake.open(env["BIKESHARE_LAKE_URI"])
        .connect()
        .sql("SELECT ingest_latency_s, fetched_at FROM ingest_log WHERE outcome = 'committed'")
        .fetchall()
    )
    # Measured in the replay's time: seconds, not the years between 2023 and today.
    assert 0 <= latency < 60
    assert pd.Timestamp(fetched) - start < pd.Timedelta(minutes=1)


def test_a_broken_information_document_is_quarantined_and_status_still_lands(
    settings: Settings, lake: Lake, replay: ReplayServer, make_client: Callable[..., GbfsClient]
) -> None:
    replay.inject("malformed_json", count=1, feeds=["station_information"])
    with make_client(replay.discovery_url) as client:
        first = ingest_once(client=client, lake=lake, settings=settings)
        assert first.outcome == Outcome.COMMITTED
        assert "station_information quarantined (malformed_json)" in (first.reason or "")
        assert "no station_information known" in (first.reason or "")
        con = lake.connect()
        assert con.sql("SELECT feed, reason_code FROM quarantine").fetchall() == [
            ("station_information", "malformed_json")
        ]
        assert con.sql("SELECT count(*) FROM station_status WHERE masked").fetchall()[0][0] < first.rows_in
        assert con.sql("SELECT count(*) FROM station_information_versions").fetchall() == [(0,)]

        replay.clock.advance(3600)  # the next batch gets a good document: a first version
        second = ingest_once(client=client, lake=lake, settings=settings)
    assert second.outcome == Outcome.COMMITTED
    assert "station_information: new version" in (second.reason or "")
    assert lake.connect().sql("SELECT count(DISTINCT valid_from) FROM station_information").fetchall() == [(1,)]


def test_station_information_versions_are_written_only_when_the_content_changes(
    settings: Settings, lake: Lake, recording: Recording, replay: ReplayServer, make_client: Callable[..., GbfsClient]
) -> None:
    times = recording.snapshot_times()
    versions_recorded = recording.information_versions()
    # A version change with two snapshots after it (under the new version) and one before it.
    for i in range(1, len(versions_recorded) - 1):
        second_from, third_from = versions_recorded[i][0], versions_recorded[i + 1][0]
        after = times[(times >= second_from) & (times < third_from)][:2]
        if len(after) == 2:
            break
    before = times[times < second_from][-1]
    first_from, first = versions_recorded[i - 1]
    assert first_from <= before
    for at in [before, *after]:
        replay.clock.set(at)
        with make_client(replay.discovery_url) as client:  # a fresh process each time: state from the lake
            assert ingest_once(client=client, lake=lake, settings=settings).outcome == Outcome.COMMITTED
    con = lake.connect()
    versions = con.sql("SELECT valid_from, count(*) FROM station_information GROUP BY 1 ORDER BY 1").fetchall()
    assert [pd.Timestamp(v) for v, _ in versions] == [first_from, second_from]
    assert versions[0][1] == len(first)
    assert con.sql("SELECT count(*) FROM station_information WHERE valid_to IS NULL").fetchall()[0][0] == versions[1][1]
