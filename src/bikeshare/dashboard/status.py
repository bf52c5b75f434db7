"""Pure rules of the trust signals: which clock the pages measure age against, the green/amber/red of
the data age (docs/ops_sla.md, the ``data_delay`` rule), of each job (two and four intervals) and of
the firing alerts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlparse

import pandas as pd

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})  # noqa: S104 (a name, not a bind)
JOB_AMBER_INTERVALS = 2
JOB_RED_INTERVALS = 4
# The data_delay rule of docs/ops_sla.md; the page reads the rules in force (see data_age_thresholds).
DATA_AGE_WARNING_S = 180.0
DATA_AGE_CRITICAL_S = 300.0


class Level(StrEnum):
    """Colour of a trust signal."""

    GREEN = "green"
    AMBER = "amber"
    RED = "red"


LEVEL_RANK = {Level.GREEN: 0, Level.AMBER: 1, Level.RED: 2}
LEVEL_COLOURS = {Level.GREEN: "#1a7f37", Level.AMBER: "#b35900", Level.RED: "#c62828"}
LEVEL_BACKGROUNDS = {Level.GREEN: "#e6f4ea", Level.AMBER: "#fff4e5", Level.RED: "#fdecea"}


def worst(levels: list[Level]) -> Level:
    """The most severe of ``levels`` (green when there is none)."""
    return max(levels, key=LEVEL_RANK.__getitem__, default=Level.GREEN)


def is_replay_source(source: str | None) -> bool:
    """True when an ingest source is not a live feed: a recording, a backfill, a replay server on loopback."""
    if not source:
        return True
    parsed = urlparse(source)
    if parsed.scheme not in ("http", "https"):
        return True
    return (parsed.hostname or "") in LOOPBACK_HOSTS


@dataclass(frozen=True)
class Clock:
    """The instant ages are measured from: wall time for a live lake, the lake's own newest activity
    (newest fetch or job run) for a replayed one."""

    now: pd.Timestamp
    replay: bool
    wall: pd.Timestamp

    @classmethod
    def of(cls, *, wall: pd.Timestamp, lake_now: pd.Timestamp | None, source: str | None, mode: str) -> Clock:
        """``mode``: ``auto`` (replayed when the newest ingest source is not a live feed), ``wall`` or ``lake``."""
        replay = mode == "lake" or (mode == "auto" and is_replay_source(source))
        if replay and lake_now is not None and not pd.isna(lake_now):
            return cls(now=pd.Timestamp(lake_now), replay=True, wall=wall)
        return cls(now=wall, replay=False, wall=wall)


def data_age_level(age_s: float | None, *, warning_s: float, critical_s: float) -> Level:
    """Red when there is no data or it is older than ``critical_s``, amber past ``warning_s``."""
    if age_s is None or pd.isna(age_s) or age_s > critical_s:
        return Level.RED
    return Level.AMBER if age_s > warning_s else Level.GREEN


def job_level(age_s: float | None, interval_s: float | None) -> Level:
    """A job whose last run is older than two of its intervals is amber, past four red."""
    if age_s is None or pd.isna(age_s):
        return Level.RED
    if not interval_s:
        return Level.GREEN
    if age_s > JOB_RED_INTERVALS * interval_s:
        return Level.RED
    return Level.AMBER if age_s > JOB_AMBER_INTERVALS * interval_s else Level.GREEN


def alerts_level(alerts: pd.DataFrame) -> Level:
    """Red while a critical alert fires, amber while a warning fires (acknowledged ones do not count)."""
    if alerts.empty:
        return Level.GREEN
    firing = alerts[alerts["status"] == "firing"]
    if (firing["severity"] == "critical").any():
        return Level.RED
    return Level.AMBER if not firing.empty else Level.GREEN


def job_staleness(last_runs: pd.DataFrame, intervals_s: dict[str, float], now: pd.Timestamp) -> pd.DataFrame:
    """Per job of ``last_runs`` (job, started_at, status, ...): its age at ``now``, interval and level.

    A job that ran and failed last is at least amber.
    """
    if last_runs.empty:
        return last_runs.assign(age_s=pd.Series(dtype=float), interval_s=pd.Series(dtype=float), level=None)
    started = pd.to_datetime(last_runs["started_at"], utc=True)
    ages = (now - started).dt.total_seconds()
    out = last_runs.assign(age_s=ages, interval_s=last_runs["job"].map(intervals_s))
    levels = []
    for age, interval, status in zip(out["age_s"], out["interval_s"], out["status"], strict=True):
        level = job_level(age, None if pd.isna(interval) else float(interval))
        if status == "failed":
            level = worst([level, Level.AMBER])
        levels.append(level)
    return out.assign(level=levels)


def humanise(seconds: float | None) -> str:
    """A duration as the two largest units, e.g. ``3 d 4 h`` or ``42 s``."""
    if seconds is None or pd.isna(seconds):
        return "-"
    value = round(seconds)
    sign = "-" if value < 0 else ""
    value = abs(value)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if value >= size or (unit == "s" and not parts):
            parts.append(f"{value // size} {unit}")
            value %= size
        if len(parts) == 2:
            break
    return sign + " ".join(parts)
