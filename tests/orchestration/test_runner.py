"""The loop runner on the wall clock with small jobs: isolation of failures, overruns, records, stopping."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from bikeshare.lake.store import Lake
from bikeshare.lake.tables import JOB_RUNS
from bikeshare.orchestration.clocks import WallClock
from bikeshare.orchestration.jobs import JOB_NAMES, check_jobs
from bikeshare.orchestration.records import JobOutcome, JobRun, JobRunRecorder, RunStatus
from bikeshare.orchestration.runner import Job, Runner
from bikeshare.orchestration.schedule import Every
from bikeshare.orchestration.signals import stop_on_signals
from bikeshare.settings import Settings

RUN_LINE = re.compile(r"^2023-03-08 \d\d:\d\d:\d\dZ (ingest|actuals) ")
TICK = 0.1  # seconds between two boundaries of the quick jobs


def job_runs(lake: Lake, city: str) -> pd.DataFrame:
    return lake.read(JOB_RUNS, city=city).to_pandas()


def job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("job-") and t.is_alive()]


def test_a_failing_job_is_recorded_and_never_stops_the_others(lake: Lake) -> None:
    calls: dict[str, int] = {"good": 0, "bad": 0}

    def good(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        calls["good"] += 1
        return JobOutcome(details={"n": calls["good"], "at": now})

    def bad(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        calls["bad"] += 1
        raise RuntimeError("boom: the stage broke\nsecond line")

    clock = WallClock(max_wait_s=0.05)
    recorder = JobRunRecorder(lake, city="sf", flush_s=3600)
    until = clock.now() + pd.Timedelta(seconds=1.2)
    runner = Runner(
        [Job("good", Every.seconds(TICK, at_start=True), good), Job("bad", Every.seconds(TICK, at_start=True), bad)],
        clock=clock,
        recorder=recorder,
        until=until,
    )
    report = runner.run()
    assert report.count("bad", RunStatus.FAILED) == calls["bad"] >= 5
    assert report.count("good", RunStatus.OK) == calls["good"] >= 5
    assert not job_threads()
    rows = job_runs(lake, "sf")
    assert len(rows) == calls["good"] + calls["bad"] == recorder.written
    failed = rows[rows["job"] == "bad"]
    assert set(failed["status"]) == {"failed"}
    assert set(failed["error"]) == {"RuntimeError: boom: the stage broke"}  # first line only
    ok = rows[rows["job"] == "good"]
    assert set(ok["status"]) == {"ok"} and ok["error"].isna().all()
    assert sorted(json.loads(d)["n"] for d in ok["details"]) == list(range(1, calls["good"] + 1))
    assert (rows["finished_at"] >= rows["started_at"]).all() and (rows["lag_s"] >= 0).all()
    assert (rows["started_at"] < until).all()
    # after the run at start, every run is scheduled on a boundary of its interval
    epoch_us = rows["scheduled_at"].astype("int64")
    on_grid = epoch_us % int(TICK * 1e6) == 0
    assert on_grid.sum() >= len(rows) - 2
    assert "bad: " in report.summary() and "failed" in report.summary()


def test_an_overrun_never_overlaps_and_coalesces_missed_boundaries(lake: Lake) -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def slow(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(3.5 * TICK)
        with lock:
            running -= 1
        return JobOutcome()

    clock = WallClock(max_wait_s=0.05)
    recorder = JobRunRecorder(lake, city="sf", flush_s=3600)
    runner = Runner(
        [Job("slow", Every.seconds(TICK), slow)],
        clock=clock,
        recorder=recorder,
        until=clock.now() + pd.Timedelta(seconds=1.5),
    )
    report = runner.run()
    runs = report.count("slow")
    assert most == 1
    assert 2 <= runs <= 6  # ~1.5 s / 0.35 s, not one run per 0.1 s boundary
    assert report.skipped_boundaries["slow"] >= runs - 1  # each overrun skipped at least 2 boundaries
    rows = job_runs(lake, "sf").sort_values("started_at")
    assert len(rows) == runs
    # each later run starts at once, on the latest boundary that passed while the previous one ran
    later = rows.iloc[1:]
    assert (later["lag_s"] < 5 * TICK).all()
    assert (later["scheduled_at"].to_numpy()[:-1] < later["scheduled_at"].to_numpy()[1:]).all()
    assert "boundaries skipped by overruns" in report.summary()


def test_a_stop_ends_every_thread_and_abandons_a_job_that_ignores_it(lake: Lake) -> None:
    started = threading.Event()
    ended_early = threading.Event()

    def polite(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        started.set()
        if stop.wait(30):  # a long job that watches the stop event
            ended_early.set()
        return JobOutcome(status=RunStatus.SKIPPED, message="stopped")

    release = threading.Event()

    def stubborn(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        release.wait(30)  # ignores the stop event
        return JobOutcome()

    stop = threading.Event()
    recorder = JobRunRecorder(lake, city="sf", flush_s=3600)
    runner = Runner(
        [
            Job("polite", Every.seconds(60, at_start=True), polite),
            Job("stubborn", Every.seconds(60, at_start=True), stubborn),
            Job("idle", Every(pd.Timedelta(days=1)), lambda now, stop: None),
        ],
        clock=WallClock(max_wait_s=0.05),
        recorder=recorder,
        stop=stop,
        stop_timeout_s=0.5,
    )
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    try:
        report = runner.run()
        took = time.monotonic() - t0
        assert started.is_set() and ended_early.is_set()
        assert report.abandoned == ["stubborn"]
        assert took < 5.0
        alive = {t.name for t in job_threads()}
        assert alive == {"job-stubborn"}  # the only one left, a daemon thread
        assert "abandoned at shutdown: stubborn" in report.summary()
        rows = job_runs(lake, "sf")
        assert list(rows["job"]) == ["polite"] and list(rows["status"]) == ["skipped"]
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while job_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not job_threads()


def test_sigterm_stops_the_runner_cleanly(lake: Lake) -> None:
    runs = 0

    def tick(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        nonlocal runs
        runs += 1
        return JobOutcome()

    stop = threading.Event()
    runner = Runner(
        [Job("tick", Every.seconds(TICK, at_start=True), tick)],
        clock=WallClock(max_wait_s=0.05),
        recorder=JobRunRecorder(lake, city="sf", flush_s=3600),
        stop=stop,
    )
    previous = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):  # the handler is in place before the signal is sent
        threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
        report = runner.run()
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers are given back
    assert stop.is_set()
    assert report.count("tick") == runs >= 2
    assert not job_threads()
    assert len(job_runs(lake, "sf")) == runs  # the buffered records were written at shutdown


def test_the_stop_handler_is_one_context_manager_usable_from_any_thread() -> None:
    previous = signal.getsignal(signal.SIGINT)
    with stop_on_signals() as stop:
        assert signal.getsignal(signal.SIGINT) is not previous
        os.kill(os.getpid(), signal.SIGINT)  # handled: sets stop instead of raising KeyboardInterrupt
        assert stop.wait(2)
    assert signal.getsignal(signal.SIGINT) is previous
    seen: list[bool] = []

    def elsewhere() -> None:  # signal handlers belong to the main thread: elsewhere the event is given as is
        given = threading.Event()
        with stop_on_signals(given) as stop:
            seen.append(stop is given and signal.getsignal(signal.SIGINT) is previous)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join(5)
    assert seen == [True]


def test_a_one_job_runner_runs_at_once_and_says_each_runs_message(lake: Lake) -> None:
    said: list[str] = []
    runs = 0

    def tick(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        nonlocal runs
        runs += 1
        return JobOutcome(message=f"tick {runs}")

    clock = WallClock(max_wait_s=0.05)
    hourly = Job("tick", Every.minutes(60), tick)  # at a boundary only: would not run within the test
    assert not hourly.every.at_start
    job = hourly.starting_at_once().announcing(said.append)
    assert job.every == Every.minutes(60, at_start=True) and job.name == "tick"
    report = Runner(
        [job], clock=clock, recorder=JobRunRecorder(lake, city="sf"), until=clock.now() + pd.Timedelta(seconds=0.5)
    ).run()
    assert report.count("tick") == runs == 1
    assert said == ["tick 1"]


def test_records_are_written_per_day_and_buffered_between_flushes(lake: Lake) -> None:
    recorder = JobRunRecorder(lake, city="sf", flush_s=3600)
    for started in ("2023-03-08T23:59:00Z", "2023-03-09T00:01:00Z", "2023-03-09T00:06:00Z"):
        ts = pd.Timestamp(started)
        recorder.add(
            JobRun.of(
                "infer",
                scheduled_at=ts - pd.Timedelta(seconds=5),
                started_at=ts,
                finished_at=ts + pd.Timedelta(seconds=2),
                duration_s=0.1,
                outcome=JobOutcome(details={"rows": 3}),
            )
        )
    assert lake.partitions(JOB_RUNS, city="sf") == []  # buffered until the flush
    assert recorder.flush() == 3
    assert recorder.flush() == 0
    assert lake.partitions(JOB_RUNS, city="sf") == ["2023-03-08", "2023-03-09"]
    rows = job_runs(lake, "sf")
    assert sorted(rows["lag_s"]) == [5.0, 5.0, 5.0]
    assert rows["run_id"].is_unique


def test_job_names_are_checked() -> None:
    assert check_jobs(["ingest", "infer"]) == ("ingest", "infer")
    with pytest.raises(ValueError, match="unknown job"):
        check_jobs(["ingest", "train"])
    with pytest.raises(ValueError, match="repeat"):
        check_jobs(["infer", "infer"])
    assert set(JOB_NAMES) == {"ingest", "infer", "actuals", "monitor", "retrain", "plan", "compact", "retention"}
    job = Job("a", Every.seconds(1), lambda now, stop: None)
    with pytest.raises(ValueError, match="repeat"):
        Runner([job, job], clock=WallClock(), recorder=None)  # type: ignore[arg-type]


def test_bikeshare_run_stops_cleanly_on_sigterm(settings: Settings, lake: Lake) -> None:
    """``bikeshare run`` in a child process: ingest over HTTP on a replay clock, SIGTERM, exit 0, records kept."""
    from bikeshare.gbfs.recording import Recording, default_recording_path
    from bikeshare.gbfs.replay import ReplayServer

    env = {
        **os.environ,
        "BIKESHARE_CITY": settings.city,
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
        "BIKESHARE_RUN_RECORD_FLUSH_S": "3600",  # only the shutdown writes the records
    }
    env.pop("BIKESHARE_CONFIG", None)
    start = pd.Timestamp("2023-03-08T12:00Z")
    with ReplayServer(Recording.open(default_recording_path()), speed=60.0, start=start, port=0) as replay:
        child = subprocess.Popen(
            [sys.executable, "-m", "bikeshare", "run", "--replay-clock", replay.url, "--jobs", "ingest,actuals"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert child.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
            if sum(bool(RUN_LINE.match(x)) for x in lines) >= 3:
                break
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=60)
    text = "".join(lines) + out
    assert child.returncode == 0, text
    assert "running ingest, actuals on the replay clock" in text
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("runner: 2023-03-08 12:"), summary
    rows = job_runs(lake, settings.city)
    assert {"ingest", "actuals"} <= set(rows["job"])
    assert rows.loc[rows["job"] == "ingest", "status"].eq("ok").all()
    printed = [m.group(1) for m in map(RUN_LINE.match, text.splitlines()) if m]
    assert sorted(rows["job"]) == sorted(printed)  # every run printed was recorded


def test_bikeshare_monitor_without_once_is_a_one_job_runner_stopped_by_sigterm(settings: Settings, lake: Lake) -> None:
    """``bikeshare monitor`` (no --once) in a child process on a paused replay clock: the runner's first
    run happens at once and prints the monitor's summary; SIGTERM stops it with exit 0 and its run recorded."""
    from bikeshare.gbfs.recording import Recording, default_recording_path
    from bikeshare.gbfs.replay import ReplayServer

    env = {
        **os.environ,
        "BIKESHARE_CITY": settings.city,
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
    }
    env.pop("BIKESHARE_CONFIG", None)
    start = pd.Timestamp("2023-03-08T12:00Z")
    with ReplayServer(Recording.open(default_recording_path()), start=start, paused=True, port=0) as replay:
        child = subprocess.Popen(
            [sys.executable, "-m", "bikeshare", "monitor", "--no-endpoint", "--replay-clock", replay.url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert child.stdout is not None
        lines: list[str] = []
        for line in child.stdout:
            lines.append(line)
            if line.startswith("monitor 2023-03-08T12:00Z"):  # the first run's summary
                child.send_signal(signal.SIGTERM)
                break
        out, _ = child.communicate(timeout=60)
    text = "".join(lines) + out
    assert child.returncode == 0, text
    assert f"monitoring {settings.lake_uri} every 60 min (Ctrl-C stops)" in text
    assert text.strip().splitlines()[-1] == "stopped after 1 runs", text
    rows = job_runs(lake, settings.city)
    assert rows["job"].tolist() == ["monitor"] and rows["status"].tolist() == ["ok"]
