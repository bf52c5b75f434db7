"""Clocks for the ingest: the wall clock, or the virtual clock of a replay server being followed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pandas as pd

from bikeshare.gbfs.replay import read_replay_clock
from bikeshare.utc import utc_now

__all__ = ["ReplayFollower", "utc_now"]  # utc_now re-exported for the CLI, which imports it from here

log = logging.getLogger(__name__)


@dataclass
class ReplayFollower:
    """Virtual UTC now of a replay server (``GET /_replay/clock``), so that fetched/committed times
    and ingest latency are in the recording's time. When the server cannot be read, the last
    reading is returned (the wall clock before any reading), never an error."""

    base_url: str
    read: Callable[[str], pd.Timestamp] = read_replay_clock
    last: pd.Timestamp | None = field(default=None, init=False)

    def __call__(self) -> pd.Timestamp:
        try:
            self.last = self.read(self.base_url)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("replay clock at %s unreadable (%s); using the last reading", self.base_url, exc)
            return self.last if self.last is not None else utc_now()
        return self.last
