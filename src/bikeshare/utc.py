"""The one rule for instants: every time the system stores or compares is a UTC ``pd.Timestamp``.

A value with a zone (an aware datetime, a Timestamp, an ISO string with ``Z`` or an offset) is
converted to UTC. A value without one is refused: its zone is unknown, and guessing UTC silently
shifts local times by hours. Parse user input with an explicit ``Z`` or offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd


def to_utc(value: pd.Timestamp | datetime | str | Any, *, what: str = "time") -> pd.Timestamp:
    """``value`` as a UTC Timestamp; a naive value raises ``ValueError`` naming ``what``."""
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"{what} {value!r} is not a time")
    if ts.tzinfo is None:
        raise ValueError(f"{what} {ts} has no timezone; pass a UTC instant (ISO with Z or an offset)")
    return ts.tz_convert("UTC")


def utc_now() -> pd.Timestamp:
    """The wall clock in UTC."""
    return pd.Timestamp.now(tz="UTC")
