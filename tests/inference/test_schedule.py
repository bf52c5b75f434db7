"""The jobs' clocks and the one-job runner on a replayed clock: one run per period, a failed run
recorded without stopping the schedule, stop honoured, a fixed time only for one run."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.lake.store import Lake
from bikeshare.orchestration.clocks import FixedClock, ReplayClock, WallClock, job_clock
from bikeshare.orchestration.records import JobOutcome, JobRunRecorder, RunStatus
from bikeshare.orchestration.runner import Job, Runner
from bikeshare.orchestration.schedule import Every

START = pd.Timestamp("2023-03-07T16:58Z")


def test_one_run_per_period_of_the_replayed_clock_and_a_failed_run_does_not_stop_the_schedule(lake: Lake) -> None:
    seen: list[pd.Timestamp] = []

    def job(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        seen.append(now)
        if len(seen) == 2:
            raise RuntimeError("a broken run")
        return JobOutcome()

    recording = Recording.open(default_recording_path())
    with ReplayServer(recording, speed=600.0, start=START, paused=True, port=0) as server:  # 10 minutes a second
        clock = ReplayClock(server.url, resync_s=0.05)
        try:
            runner = Runner(
                [Job("job", Every.minutes(5), job).starting_at_once()],
                clock=clock,
                recorder=JobRunRecorder(lake, city="sf", flush_s=3600),
                until=START + pd.Timedelta(minutes=13),
            )
            server.clock.pause(False)
            report = runner.run()
        finally:
            clock.close()
    # 16:58 runs at once; then each 5-minute boundary of virtual time, until 17:11.
    assert [t.strftime("%H:%M") for t in seen] == ["16:58", "17:00", "17:05", "17:10"]
    assert report.count("job") == 4 and report.count("job", RunStatus.FAILED) == 1


def test_stop_ends_the_one_job_runner_promptly(lake: Lake) -> None:
    stop = threading.Event()
    calls: list[pd.Timestamp] = []
    recording = Recording.open(default_recording_path())
    with ReplayServer(recording, speed=1.0, start=START, paused=True, port=0) as server:
        clock = ReplayClock(server.url, resync_s=0.05)
        job = Job("job", Every.minutes(5, at_start=True), lambda now, _stop: calls.append(now))
        runner = Runner([job], clock=clock, recorder=JobRunRecorder(lake, city="sf", flush_s=3600), stop=stop)
        worker = threading.Thread(target=runner.run)
        worker.start()
        time.sleep(0.3)
        stop.set()
        worker.join(timeout=2)
        clock.close()
    assert not worker.is_alive() and calls == [START]


def test_a_fixed_clock_only_drives_one_run() -> None:
    fixed = job_clock(replay_url=None, at="2023-03-07T16:22", once=True)
    assert isinstance(fixed, FixedClock) and fixed.now() == pd.Timestamp("2023-03-07T16:22Z")
    assert fixed.wait_until(pd.Timestamp("2023-03-07T16:00Z"), threading.Event())
    stopped = threading.Event()
    stopped.set()
    assert not fixed.wait_until(pd.Timestamp("2023-03-07T17:00Z"), stopped)  # time never comes: only a stop ends it
    with pytest.raises(ValueError, match="--at needs --once"):
        job_clock(replay_url=None, at="2023-03-07T16:22Z", once=False)
    with pytest.raises(ValueError, match="not a time"):
        job_clock(replay_url=None, at="yesterday-ish", once=True)
    assert isinstance(job_clock(replay_url=None, at=None, once=False), WallClock)
    replay = job_clock(replay_url="http://127.0.0.1:9/", at=None, once=False)
    assert isinstance(replay, ReplayClock) and replay.base_url == "http://127.0.0.1:9"
    replay.close()
