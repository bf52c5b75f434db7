"""The periodic runner on a virtual clock: one run per period, errors survived, stop honoured."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from bikeshare.gbfs.replay import ReplayClock
from bikeshare.inference.schedule import job_clock, run_periodically

START = pd.Timestamp("2023-03-07T16:58Z")


class SteppingClock:
    """A clock that moves one virtual minute every time it is read."""

    def __init__(self, start: pd.Timestamp) -> None:
        self.now = start - pd.Timedelta(minutes=1)

    def __call__(self) -> pd.Timestamp:
        self.now += pd.Timedelta(minutes=1)
        return self.now


def test_one_run_per_period_of_the_clock_and_errors_do_not_stop_the_loop() -> None:
    seen: list[pd.Timestamp] = []

    def job(now: pd.Timestamp) -> None:
        seen.append(now)
        if len(seen) == 2:
            raise RuntimeError("a broken run")

    runs = run_periodically(
        job, interval_min=5, clock=SteppingClock(START), stop=threading.Event(), max_runs=4, poll_s=0.001
    )

    assert runs == 4
    # 16:58 runs at once; then the first reading in each new 5-minute period.
    assert [t.strftime("%H:%M") for t in seen] == ["16:58", "17:00", "17:05", "17:10"]


def test_stop_ends_the_loop_promptly() -> None:
    stop = threading.Event()
    clock = ReplayClock(START, paused=True)
    calls: list[pd.Timestamp] = []
    worker = threading.Thread(
        target=run_periodically,
        args=(calls.append,),
        kwargs={"interval_min": 5, "clock": clock.now, "stop": stop, "poll_s": 0.05},
    )
    worker.start()
    time.sleep(0.2)
    stop.set()
    worker.join(timeout=2)
    assert not worker.is_alive() and len(calls) == 1


def test_a_fixed_clock_only_drives_one_run() -> None:
    assert job_clock(replay_url=None, at="2023-03-07T16:22", once=True)() == pd.Timestamp("2023-03-07T16:22Z")
    with pytest.raises(ValueError, match="--at needs --once"):
        job_clock(replay_url=None, at="2023-03-07T16:22Z", once=False)
    with pytest.raises(ValueError, match="not a time"):
        job_clock(replay_url=None, at="yesterday-ish", once=True)
