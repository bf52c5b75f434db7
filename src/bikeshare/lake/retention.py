"""Retention: delete the partitions of each lake table older than its ``retention_days``.

A partition's age is its UTC day (``dt``'s date; a compacted day counts as its day). A day is kept,
whatever its age, when a training window passed in (a production model's, read from the registry
by the job wiring, so this module does not import MLflow) overlaps it, and for the slowly changing
dimensions (``*_versions``) the newest expired day is kept, as it holds the version still valid at
the cut-off. Tables not named in the settings are kept forever (audit, feature baselines).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from bikeshare.lake.store import Lake, parse_partition_value, partition_value
from bikeshare.lake.tables import ALL_TABLES, Grain, TableSpec
from bikeshare.utc import to_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingWindow:
    """The data window a model version was trained on (UTC instants, inclusive)."""

    start: pd.Timestamp
    end: pd.Timestamp
    label: str = ""  # e.g. ``bikeshare-sf-bikes v3``

    def covers(self, day: str) -> bool:
        """Whether the UTC day ``YYYY-MM-DD`` overlaps the window."""
        first = parse_partition_value(day)
        return first <= to_utc(self.end, what="window end") and to_utc(
            self.start, what="window start"
        ) < first + pd.Timedelta(days=1)


@dataclass
class TableRetention:
    """What retention did (or would do) to one table of one city."""

    table: str
    keep_days: int
    cutoff: str  # days before this one are past their age
    removed: list[str] = field(default_factory=list)
    kept_for_training: list[str] = field(default_factory=list)
    kept_current_version: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "keep_days": self.keep_days,
            "cutoff": self.cutoff,
            "removed": self.removed,
            "kept_for_training": self.kept_for_training,
            "kept_current_version": self.kept_current_version,
        }


@dataclass
class RetentionReport:
    city: str
    now: str
    dry_run: bool
    tables: list[TableRetention] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return sum(len(t.removed) for t in self.tables)

    def to_dict(self) -> dict[str, object]:
        return {
            "city": self.city,
            "now": self.now,
            "dry_run": self.dry_run,
            "tables": [t.to_dict() for t in self.tables],
        }

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = []
        for t in self.tables:
            if t.removed or t.kept_for_training:
                text = f"{t.table} {verb} {len(t.removed)} day(s) before {t.cutoff}"
                if t.kept_for_training:
                    text += f", kept {len(t.kept_for_training)} for a training window"
                parts.append(text)
        return f"retention {self.city}: " + ("; ".join(parts) if parts else "nothing past its age")


def apply_retention(
    lake: Lake,
    *,
    city: str,
    retention_days: Mapping[str, int],
    now: pd.Timestamp,
    windows: Iterable[TrainingWindow] = (),
    dry_run: bool = False,
) -> RetentionReport:
    """Delete (or, with ``dry_run``, list) every partition of ``city`` past its table's age."""
    now = to_utc(now, what="retention time")
    windows = list(windows)
    report = RetentionReport(city=city, now=now.isoformat(), dry_run=dry_run)
    for spec in ALL_TABLES:
        if spec.name in retention_days:
            report.tables.append(
                _table(lake, spec, city=city, days=retention_days[spec.name], now=now, windows=windows, dry_run=dry_run)
            )
    for table in report.tables:
        if table.removed:
            log.info(
                "retention %s %s: %s %s", city, table.table, "would remove" if dry_run else "removed", table.removed
            )
    log.info(report.summary())
    return report


def _table(
    lake: Lake,
    spec: TableSpec,
    *,
    city: str,
    days: int,
    now: pd.Timestamp,
    windows: list[TrainingWindow],
    dry_run: bool,
) -> TableRetention:
    cutoff = partition_value(now.floor("D") - pd.Timedelta(days=days), Grain.DAY)
    done = TableRetention(table=spec.name, keep_days=days, cutoff=cutoff)
    stored = sorted({dt[:10] for dt in lake.partition_dirs(spec, city=city)})
    expired = [day for day in stored if day < cutoff]
    if expired and "valid_from" in spec.schema.names:  # a slowly changing dimension: its version at the cut-off
        done.kept_current_version.append(expired.pop())
    for day in expired:
        holders = [w for w in windows if w.covers(day)]
        if holders:
            done.kept_for_training.append(day)
            continue
        if not dry_run:
            lake.drop_day(spec, city=city, day=day)
        done.removed.append(day)
    return done
