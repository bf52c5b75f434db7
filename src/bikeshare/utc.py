"""The one rule for instants: every time the system stores or compares is a UTC ``pd.Timestamp``.

A value with a zone (an aware datetime, a Timestamp, an ISO string with ``Z`` or an offset) is
converted to UTC. A value without one is refused: its zone is unknown, and guessing UTC silently
shifts local times by hours. Parse user input with an explicit ``Z`` or offset.

Text a person types (a CLI ``--at``, a setting such as ``demo_live_start``) is the one exception,
taken at the boundary by :func:`parse_utc`: there a date-time without a zone is read as UTC, as the
option's help says. Code past the boundary passes instants to :func:`to_utc`.
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


def parse_utc(text: str, *, what: str = "time") -> pd.Timestamp:
    """User input (ISO date or date-time) as a UTC Timestamp; without ``Z`` or an offset it is UTC."""
    try:
        ts = pd.Timestamp(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: not a time: {text!r} is not an ISO date or date-time ({exc})") from exc
    if ts is pd.NaT:
        raise ValueError(f"{what}: not a time: {text!r} is not an ISO date or date-time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
