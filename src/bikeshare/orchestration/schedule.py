"""When a job runs: at every boundary of its interval on the job clock (pure functions of times).

Boundaries are multiples of the interval since the Unix epoch (UTC), so an hourly job runs at :00
and a daily one at midnight UTC, whatever the start time. A job may also run once at start.
A run that overruns its interval does not queue the boundaries it missed: the next run is the
latest boundary already passed (run late, with its lag recorded), else the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

_EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class Every:
    """A job's schedule: every ``interval``, optionally also at once when the runner starts."""

    interval: pd.Timedelta
    at_start: bool = False

    def __post_init__(self) -> None:
        if self.interval <= pd.Timedelta(0):
            raise ValueError(f"a schedule interval must be positive, got {self.interval}")

    @classmethod
    def minutes(cls, value: float, *, at_start: bool = False) -> Every:
        return cls(pd.Timedelta(minutes=value), at_start)

    @classmethod
    def seconds(cls, value: float, *, at_start: bool = False) -> Every:
        return cls(pd.Timedelta(seconds=value), at_start)

    def describe(self) -> str:
        seconds = self.interval.total_seconds()
        for unit, size in (("h", 3600), ("min", 60)):
            if seconds >= size and seconds % size == 0:
                return f"every {seconds / size:g} {unit}"
        return f"every {seconds:g} s"


def boundary_at_or_before(ts: pd.Timestamp, interval: pd.Timedelta) -> pd.Timestamp:
    """The latest interval boundary <= ``ts``."""
    return _EPOCH + ((ts - _EPOCH) // interval) * interval


def first_due(now: pd.Timestamp, every: Every) -> pd.Timestamp:
    """When a job first runs once the runner starts at ``now``."""
    if every.at_start:
        return now
    floor = boundary_at_or_before(now, every.interval)
    return floor if floor == now else floor + every.interval


def next_due(scheduled: pd.Timestamp, finished: pd.Timestamp, every: Every) -> tuple[pd.Timestamp, int]:
    """The run after the one scheduled at ``scheduled`` that ended at ``finished``, and how many boundaries
    were skipped (passed while it ran and not caught up)."""
    floor = boundary_at_or_before(finished, every.interval)
    after_scheduled = boundary_at_or_before(scheduled, every.interval) + every.interval
    if floor >= after_scheduled:  # at least one boundary passed while the job ran: run at once, late
        skipped = int((floor - after_scheduled) // every.interval)
        return floor, skipped
    return after_scheduled, 0
