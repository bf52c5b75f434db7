"""Run a job at every N-minute boundary of a clock (real or replayed) until asked to stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pandas as pd

from bikeshare.utc import parse_utc, utc_now

log = logging.getLogger(__name__)


def run_periodically(
    job: Callable[[pd.Timestamp], None],
    *,
    interval_min: int,
    clock: Callable[[], pd.Timestamp],
    stop: threading.Event,
    max_runs: int | None = None,
    poll_s: float = 1.0,
    name: str = "job",
) -> int:
    """Call ``job(now)`` at once, then each time ``clock`` enters a new ``interval_min`` period.

    The clock is read again at least every ``poll_s`` real seconds, so a replay clock running
    faster than real time (or jumping) is followed. An exception in one run is logged and the loop
    goes on. Returns the number of runs; setting ``stop`` ends the loop within ``poll_s``.
    """
    if interval_min < 1:
        raise ValueError(f"interval_min must be >= 1, got {interval_min}")
    period = pd.Timedelta(minutes=interval_min)
    runs = 0
    last: pd.Timestamp | None = None
    while not stop.is_set():
        now = clock()
        current = now.floor(period)
        if last is None or current > last:
            try:
                job(now)
            except Exception:
                log.exception("%s run at %s failed; the loop goes on", name, now)
            last = current
            runs += 1
            if max_runs is not None and runs >= max_runs:
                break
            continue
        remaining = (current + period - now).total_seconds()
        stop.wait(max(0.01, min(poll_s, remaining)))
    return runs


def job_clock(*, replay_url: str | None, at: str | None, once: bool) -> Callable[[], pd.Timestamp]:
    """The clock of a job: a fixed ``at`` (one run only), a replay server's virtual clock, or the wall clock."""
    from bikeshare.ingest.clock import ReplayFollower

    if at is not None:
        if not once:
            raise ValueError("--at needs --once: a fixed time cannot drive a loop")
        when = parse_utc(at, what="--at")  # typed by a person: without Z or an offset it is UTC
        return lambda: when
    if replay_url is not None:
        return ReplayFollower(replay_url.rstrip("/"))
    return utc_now


def run_until_signal(loop: Callable[[threading.Event], int]) -> int:
    """Run ``loop(stop)`` with SIGINT/SIGTERM setting ``stop`` (the previous handlers come back after)."""
    import signal

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return int(loop(stop))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
