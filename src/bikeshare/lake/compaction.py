"""Compaction: each closed UTC day of a minute-grain table becomes one file per table, city and day.

The ingest and the batch jobs write one Parquet file per snapshot or slot (``dt=YYYY-MM-DD-HH-mm``);
a month of station_status alone is ~43,000 files. :func:`compact` rewrites the days before ``before``
into ``day=YYYY-MM-DD/part.parquet`` (rows sorted by station then ``dt``, bounded row groups with
statistics, so DuckDB prunes by station and time), then removes the minute files it folded in.

Crash-safe and idempotent, in this order for each day:

1. read the day's minute files not yet in its compacted file (and the compacted file, if any);
2. commit the day file in one atomic write; its footer lists the ``(dt, name)`` of every minute
   file it holds. From this instant the readers of :class:`~bikeshare.lake.store.Lake` take those
   minutes from it and skip the minute files, so no row is counted twice;
3. remove those minute files, once the day file is ``remove_after_s`` old (real seconds; the
   job passes ``compaction_remove_after_s``): a reader that listed the minute files just before the
   commit (a feature build, a retrain) still finds them, and a later run removes them. A crash here
   leaves some beside the day file (skipped by readers); the next run removes them. A minute file
   written later for a compacted day (a late backfill) is folded in by the next run. A run with
   nothing to fold in or remove does nothing.

Day-grain tables (ingest_log, quarantine, features, audit, monitoring, ...) are already one folder
per day and are not touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from bikeshare.lake.store import Lake, conform
from bikeshare.lake.tables import ALL_TABLES, Grain, TableSpec

log = logging.getLogger(__name__)

MINUTE_TABLES: tuple[TableSpec, ...] = tuple(spec for spec in ALL_TABLES if spec.grain is Grain.MINUTE)
"""Every minute-grain table: what :func:`compact` rewrites by default."""

Step = Callable[[str], None]
"""Called with the name of each step a day passes (``read``, ``committed``, ``removing``, ``removed``)."""


@dataclass
class TableCompaction:
    """What one table's compaction did for one city."""

    table: str
    days: list[str] = field(default_factory=list)  # days whose file was (re)written
    files_folded: int = 0  # minute files newly written into a day file
    files_removed: int = 0  # minute files deleted (folded now or by an earlier run)
    files_pending: int = 0  # folded minute files left until their day file is remove_after_s old
    rows: int = 0  # rows of the day files written

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "days": self.days,
            "files_folded": self.files_folded,
            "files_removed": self.files_removed,
            "files_pending": self.files_pending,
            "rows": self.rows,
        }


@dataclass
class CompactionReport:
    """One run of :func:`compact` for one city."""

    city: str
    before: str
    tables: list[TableCompaction] = field(default_factory=list)

    @property
    def days_compacted(self) -> int:
        return sum(len(t.days) for t in self.tables)

    @property
    def files_removed(self) -> int:
        return sum(t.files_removed for t in self.tables)

    def to_dict(self) -> dict[str, object]:
        return {"city": self.city, "before": self.before, "tables": [t.to_dict() for t in self.tables]}

    def summary(self) -> str:
        done = [t for t in self.tables if t.days or t.files_removed or t.files_pending]
        if not done:
            return f"compaction {self.city} before {self.before}: nothing to do"
        parts = [
            f"{t.table} {len(t.days)} day(s), {t.files_folded} files folded, {t.files_removed} removed"
            + (f", {t.files_pending} left for readers" if t.files_pending else "")
            for t in done
        ]
        return f"compaction {self.city} before {self.before}: " + "; ".join(parts)


def table_named(name: str) -> TableSpec:
    """The minute-grain table called ``name``."""
    for spec in MINUTE_TABLES:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in MINUTE_TABLES)
    raise ValueError(f"{name!r} is not a minute-grain table (compactable: {known})")


def compact(
    lake: Lake,
    *,
    city: str,
    before: str,
    tables: Iterable[TableSpec] = MINUTE_TABLES,
    remove_after_s: float = 0.0,
    step: Step | None = None,
) -> CompactionReport:
    """Compact every day earlier than ``before`` (``YYYY-MM-DD``, UTC) of ``tables`` for ``city``.

    Folded minute files are removed once their day file is ``remove_after_s`` real seconds old.
    """
    report = CompactionReport(city=city, before=before)
    for spec in tables:
        if spec.grain is not Grain.MINUTE:
            raise ValueError(f"{spec.name} is day grain: nothing to compact")
        report.tables.append(
            _compact_table(lake, spec, city=city, before=before, remove_after_s=remove_after_s, step=step or _no_step)
        )
    log.info(report.summary())
    return report


def _compact_table(
    lake: Lake, spec: TableSpec, *, city: str, before: str, remove_after_s: float, step: Step
) -> TableCompaction:
    done = TableCompaction(table=spec.name)
    by_day: dict[str, dict[str, list[str]]] = {}
    for dt, names in lake.minute_files(spec, city=city).items():
        if dt[:10] < before:
            by_day.setdefault(dt[:10], {})[dt] = names
    for day, minutes in sorted(by_day.items()):
        held = lake.compacted_entries(spec, city=city, day=day)
        new = {(dt, name) for dt, names in minutes.items() for name in names} - held
        if new:
            step("read")
            table = _day_rows(lake, spec, city=city, day=day, new=sorted(new), has_day=bool(held))
            lake.write_compacted(spec, table, city=city, day=day, entries=held | new)
            step("committed")
            done.days.append(day)
            done.files_folded += len(new)
            done.rows += table.num_rows
        ordered = sorted(minutes.items())
        if remove_after_s > 0 and _age_s(lake, lake.compacted_path(spec, city=city, day=day)) < remove_after_s:
            done.files_pending += sum(len(names) for _, names in ordered)
            continue
        for index, (dt, names) in enumerate(ordered):
            done.files_removed += lake.remove_minute_files(spec, city=city, dt=dt, names=names)
            if index == len(ordered) // 2:
                step("removing")
        step("removed")
    return done


def _day_rows(
    lake: Lake, spec: TableSpec, *, city: str, day: str, new: list[tuple[str, str]], has_day: bool
) -> pa.Table:
    """The rows a day file holds after folding in the minute files ``new``, each with its minute ``dt``."""
    parts = [lake.read_compacted(spec, city=city, day=day)] if has_day else []
    for dt, name in new:
        with lake.fs.open(lake.file_path(spec, city=city, dt=dt, name=name), "rb") as handle:
            rows = conform(pq.read_table(handle), spec.schema)
        parts.append(rows.append_column("dt", pa.array([dt] * rows.num_rows, pa.string())))
    return pa.concat_tables(parts)


def _age_s(lake: Lake, path: str) -> float:
    """Real seconds since ``path`` was written (local mtime or S3 LastModified)."""
    info = lake.fs.info(path)
    written = info.get("mtime") or info.get("LastModified")
    stamp = written.timestamp() if isinstance(written, datetime) else float(written or 0)
    return time.time() - stamp


def _no_step(name: str) -> None:
    """The default :data:`Step`: nothing."""
