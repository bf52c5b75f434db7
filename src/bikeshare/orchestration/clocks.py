"""Clocks the runner schedules on: the wall clock, or the virtual clock of a replay server.

A clock tells the time (UTC) and waits until a time on its own scale. The replay clock follows a
replay server's ``/_replay/clock`` (virtual now, speed, paused): waiting ``v`` virtual seconds
takes ``v / speed`` real seconds, re-read at least every ``resync_s`` real seconds so that a pause,
a jump or a new speed is followed. Every wait returns early when ``stop`` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import httpx
import pandas as pd

from bikeshare.utc import parse_utc

log = logging.getLogger(__name__)


class JobClock(Protocol):
    """What the runner needs from a clock."""

    name: str

    def now(self) -> pd.Timestamp:
        """The current time on this clock (UTC)."""
        ...

    def wait_until(self, when: pd.Timestamp, stop: threading.Event) -> bool:
        """Block until ``when`` on this clock; False when ``stop`` was set first."""
        ...


class WallClock:
    """Real time."""

    name = "wall"

    def __init__(self, *, max_wait_s: float = 1.0) -> None:
        self.max_wait_s = max_wait_s

    def now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC").floor("us")

    def wait_until(self, when: pd.Timestamp, stop: threading.Event) -> bool:
        while not stop.is_set():
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                return True
            stop.wait(min(remaining, self.max_wait_s))
        return False


@dataclass(frozen=True)
class ReplayReading:
    """One answer of ``GET /_replay/clock``, with the monotonic time it was read at."""

    virtual: pd.Timestamp
    speed: float
    paused: bool
    ended: bool
    end: pd.Timestamp
    read_at: float

    def extrapolate(self, at: float) -> pd.Timestamp:
        """Virtual time at monotonic ``at``, assuming speed and pause did not change."""
        if self.paused:
            return self.virtual
        # microseconds: the lake stores timestamp[us]
        return self.virtual + pd.Timedelta(microseconds=round((at - self.read_at) * self.speed * 1e6))


class ReplayClock:
    """The virtual clock of a replay server at ``base_url`` (read over HTTP, extrapolated between reads).

    A failed read keeps the last reading (logged), so a short outage of the server does not stop
    the jobs; before any successful read, :meth:`now` raises.
    """

    name = "replay"

    def __init__(self, base_url: str, *, resync_s: float = 0.5, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.resync_s = resync_s
        self._http = httpx.Client(timeout=timeout_s)
        self._lock = threading.Lock()
        self._reading: ReplayReading | None = None

    def close(self) -> None:
        self._http.close()

    def read(self) -> ReplayReading:
        """Read the server's clock now (raises on failure)."""
        response = self._http.get(f"{self.base_url}/_replay/clock")
        response.raise_for_status()
        doc = response.json()
        reading = ReplayReading(
            virtual=pd.Timestamp(doc["now"]).tz_convert("UTC").floor("us"),
            speed=float(doc["speed"]),
            paused=bool(doc["paused"]),
            ended=bool(doc["ended"]),
            end=pd.Timestamp(doc["end"]).tz_convert("UTC"),
            read_at=time.monotonic(),
        )
        with self._lock:
            self._reading = reading
        return reading

    def reading(self) -> ReplayReading:
        """A reading at most ``resync_s`` old (the last good one when the server does not answer)."""
        with self._lock:
            current = self._reading
        if current is not None and time.monotonic() - current.read_at < self.resync_s:
            return current
        try:
            return self.read()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            if current is None:
                raise RuntimeError(f"the replay clock at {self.base_url} cannot be read: {exc}") from exc
            log.warning("replay clock at %s unreadable (%s); extrapolating the last reading", self.base_url, exc)
            return current

    def now(self) -> pd.Timestamp:
        return self.reading().extrapolate(time.monotonic())

    @property
    def speed(self) -> float:
        return self.reading().speed

    def ended(self) -> bool:
        """True once virtual time reached the recording's last snapshot."""
        reading = self.reading()
        return reading.ended or reading.extrapolate(time.monotonic()) >= reading.end

    def wait_until(self, when: pd.Timestamp, stop: threading.Event) -> bool:
        while not stop.is_set():
            reading = self.reading()
            remaining_virtual = (when - reading.extrapolate(time.monotonic())).total_seconds()
            if remaining_virtual <= 0:
                return True
            real = self.resync_s if reading.paused else remaining_virtual / reading.speed
            stop.wait(max(0.001, min(real, self.resync_s)))
        return False


class FixedClock:
    """A clock stopped at ``at``: one run "as of" a chosen time (``--at`` with ``--once``)."""

    name = "fixed"

    def __init__(self, at: pd.Timestamp) -> None:
        self.at = at

    def now(self) -> pd.Timestamp:
        return self.at

    def wait_until(self, when: pd.Timestamp, stop: threading.Event) -> bool:
        if when <= self.at:
            return not stop.is_set()
        stop.wait()  # time never moves on: only a stop ends the wait
        return False


def job_clock(*, replay_url: str | None, at: str | None, once: bool) -> JobClock:
    """The clock of a job: a fixed ``at`` (one run only), a replay server's virtual clock, or the wall clock."""
    if at is not None:
        if not once:
            raise ValueError("--at needs --once: a fixed time cannot drive a loop")
        return FixedClock(parse_utc(at, what="--at"))  # typed by a person: without Z or an offset it is UTC
    if replay_url is not None:
        return ReplayClock(replay_url)
    return WallClock()
