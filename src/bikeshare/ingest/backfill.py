"""Backfill: write a whole recording through the same contract and layout as the poller.

Snapshots are validated a chunk at a time (the contract is vectorised over snapshots) and the
partitions are written by a small thread pool. Every snapshot already in the lake is skipped, so
a re-run (or a run after a crash) only writes what is missing. The ingest_log rows of a chunk are
written as soon as its partitions are, and a re-run logs, as committed, the partitions a killed
run wrote but could not log; so the log always adds up to the lake.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bikeshare.contracts.rules import BatchVerdict, ContractRules, RejectCode, rejection_json
from bikeshare.contracts.validate import check_information_versions, check_station_status
from bikeshare.gbfs.recording import Recording
from bikeshare.ingest.poller import Outcome
from bikeshare.ingest.sink import (
    INFORMATION_HASHED,
    InformationVersion,
    IngestSink,
    information_content_hash,
    quarantine_batch_id,
    stamp,
    status_batch_id,
    system_content_hash,
)
from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import INGEST_LOG, STATION_STATUS, Grain
from bikeshare.settings import Settings
from bikeshare.utc import utc_now

STATUS_FEED = "station_status"
INFORMATION_FEED = "station_information"


@dataclass
class BackfillReport:
    """What a backfill did (the same counts are in ``ingest_log``)."""

    snapshots: int = 0
    committed: int = 0
    duplicates: int = 0
    recovered: int = 0  # written by an earlier run that was stopped before it logged them
    quarantined: int = 0
    rows_written: int = 0
    rows_masked: int = 0
    information_versions_written: int = 0
    information_quarantined: int = 0
    stale_tmp_removed: int = 0
    masked_by_reason: Counter[str] = field(default_factory=Counter)
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)
    time_check: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.masked_by_reason.items())) or "none"
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(self.quarantined_by_reason.items()))
        text = (
            f"{self.snapshots} snapshots: {self.committed} written, {self.duplicates} already there, "
            f"{self.quarantined} quarantined{f' ({rejected})' if rejected else ''}; "
            f"{self.rows_written} rows ({self.rows_masked} masked: {reasons}); "
            f"{self.information_versions_written} station_information versions written "
            f"({self.information_quarantined} quarantined); {self.seconds:.1f}s"
        )
        if self.recovered:
            text += f"; {self.recovered} written by an interrupted run, logged now"
        if self.stale_tmp_removed:
            text += f"; {self.stale_tmp_removed} stale .tmp files removed"
        if self.time_check:
            text += f"; {self.time_check}"
        return text


def backfill(
    *,
    recording: Recording,
    lake: Lake,
    settings: Settings,
    workers: int | None = None,
    chunk_snapshots: int = 288,
    clock: Callable[[], pd.Timestamp] = utc_now,
    progress: Callable[[BackfillReport], None] | None = None,
    stale_tmp_s: float = 60.0,
) -> BackfillReport:
    """Write every snapshot of ``recording`` into the lake, validated; return the counts.

    Snapshot times are judged against the fetch time recorded with each snapshot, not against
    today, so an old recording backfills. ``*.tmp`` files at least ``stale_tmp_s`` old (left by a
    killed writer; a live write renames its file within milliseconds) are removed first.
    """
    started = time.perf_counter()
    city = settings.city
    sink = IngestSink(lake, city)
    rules = ContractRules.from_settings(settings)
    source = f"recording:{recording.path.name}"
    report = BackfillReport(
        time_check=(
            f"snapshot times judged against the recorded fetch times (implausible_time when more than "
            f"{rules.max_snapshot_age_s:g}s before or {rules.snapshot_future_skew_s:g}s after)"
        )
    )
    report.stale_tmp_removed = sink.remove_stale_tmp(older_than_s=stale_tmp_s)

    _backfill_system(recording=recording, sink=sink, clock=clock)
    versions = _backfill_information(recording=recording, sink=sink, rules=rules, source=source, report=report)
    information = (
        pd.concat([v.frame.assign(valid_from=v.valid_from) for v in versions], ignore_index=True) if versions else None
    )

    existing = sink.existing_status()
    logged = CommittedLog(sink)
    run = f"backfill-{stamp(clock())}-{uuid.uuid4().hex[:8]}"
    threads = workers if workers is not None else settings.backfill_workers
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="backfill") as pool:
        for number, chunk in enumerate(_chunks(recording, chunk_snapshots)):
            log_rows = _backfill_chunk(
                chunk,
                sink=sink,
                pool=pool,
                existing=existing,
                logged=logged,
                information=information,
                rules=rules,
                source=source,
                clock=clock,
                report=report,
            )
            sink.write_log(log_rows, name=f"{run}-{number:05d}")
            if progress is not None:
                report.seconds = time.perf_counter() - started
                progress(report)
    report.seconds = time.perf_counter() - started
    return report


def _backfill_chunk(
    chunk: list[tuple[pd.Timestamp, pd.DataFrame]],
    *,
    sink: IngestSink,
    pool: ThreadPoolExecutor,
    existing: set[tuple[str, str]],
    logged: CommittedLog,
    information: pd.DataFrame | None,
    rules: ContractRules,
    source: str,
    clock: Callable[[], pd.Timestamp],
    report: BackfillReport,
) -> list[dict[str, Any]]:
    """Judge and write one chunk of snapshots; return its ingest_log rows (once its writes are done)."""
    log_rows: list[dict[str, Any]] = []
    fresh: list[pd.DataFrame] = []
    unlogged: set[pd.Timestamp] = set()  # in the lake, but no committed log row: a killed run wrote it
    for published, rows in chunk:
        report.snapshots += 1
        if sink.status_location(published) in existing:
            if logged.has(published, fetched_at=pd.Timestamp(rows["fetched_at"].iloc[0])):
                report.duplicates += 1
                log_rows.append(_log_row(published, rows, Outcome.DUPLICATE, source=source, clock=clock))
                continue
            unlogged.add(published)
        fresh.append(rows)
    if not fresh:
        return log_rows
    frame = pd.concat(fresh, ignore_index=True)
    check = check_station_status(
        frame.drop(columns="fetched_at"), information=information, rules=rules, fetched_at=frame["fetched_at"]
    )
    table = pa.Table.from_pandas(check.frame.assign(fetched_at=frame["fetched_at"]), preserve_index=False)
    pending: list[tuple[dict[str, Any], Future[str | None]]] = []
    for published, start, stop in _snapshot_bounds(check.frame["last_updated"]):
        verdict = check.verdicts[published]
        rows = frame.iloc[start:stop]
        row = _log_row(published, rows, Outcome.COMMITTED, source=source, clock=clock)
        row.update(
            rows_written=verdict.rows_in,
            rows_masked=verdict.rows_masked,
            row_pass_rate=verdict.row_pass_rate,
            masked_by_reason=_json(verdict.masked_by_reason),
        )
        if published in unlogged:
            dt, name = sink.status_location(published)
            row.update(
                committed_at=clock(),
                path=sink.lake.file_path(STATION_STATUS, city=sink.city, dt=dt, name=name),
                reason="written by an earlier backfill that stopped before logging it; logged by this run",
            )
            report.recovered += 1
            log_rows.append(row)
            continue
        if not verdict.accepted:
            log_rows.append(_quarantine(published, rows, verdict, sink=sink, source=source, clock=clock))
            report.quarantined += 1
            report.quarantined_by_reason[str(verdict.reason_code)] += 1
            continue
        part = table.slice(start, stop - start).append_column(
            "batch_id", pa.array([status_batch_id(published)] * (stop - start), pa.string())
        )
        pending.append((row, pool.submit(sink.write_status, part, published)))
        report.masked_by_reason.update(verdict.masked_by_reason)
    for row, future in pending:
        path = future.result()
        row["committed_at"] = clock()
        if path is None:  # written by a concurrent run since the listing
            row.update(outcome=Outcome.DUPLICATE, rows_written=0, rows_masked=0)
            report.duplicates += 1
        else:
            row["path"] = path
            report.committed += 1
            report.rows_written += int(row["rows_written"])
            report.rows_masked += int(row["rows_masked"])
        log_rows.append(row)
    return log_rows


def _quarantine(
    published: pd.Timestamp,
    rows: pd.DataFrame,
    verdict: BatchVerdict,
    *,
    sink: IngestSink,
    source: str,
    clock: Callable[[], pd.Timestamp],
) -> dict[str, Any]:
    """Quarantine one recorded snapshot (its rows as JSON Lines); return its log row."""
    payload = rows.to_json(orient="records", date_format="iso", lines=True).encode()
    batch_id = quarantine_batch_id(STATUS_FEED, published, payload)
    sink.quarantine(
        payload=payload,
        batch_id=batch_id,
        feed=STATUS_FEED,
        source=source,
        fetched_at=rows["fetched_at"].iloc[0],
        published_at=published,
        reason_code=str(verdict.reason_code),
        reason=rejection_json(verdict.rejections, feed=STATUS_FEED, payload="recording rows"),
        by_fetch_day=verdict.reason_code == RejectCode.IMPLAUSIBLE_TIME,
    )
    row = _log_row(published, rows, Outcome.QUARANTINED, source=source, clock=clock)
    row.update(batch_id=batch_id, reason=f"{verdict.reason_code}: {verdict.rejections[0].message}")
    return row


class CommittedLog:
    """Which station_status snapshots ``ingest_log`` already records as committed.

    Reads only the log partitions (days) of the snapshots asked about, each once.
    """

    def __init__(self, sink: IngestSink) -> None:
        self._sink = sink
        self._days: dict[str, set[str]] = {}

    def has(self, published: pd.Timestamp, *, fetched_at: pd.Timestamp) -> bool:
        """True when a committed row for this snapshot is in the log partition of its fetch or feed day."""
        batch_id = status_batch_id(published)
        days = {partition_value(fetched_at, Grain.DAY), partition_value(published, Grain.DAY)}
        return any(batch_id in self._committed(day) for day in days)

    def _committed(self, day: str) -> set[str]:
        if day not in self._days:
            table = self._sink.lake.read(INGEST_LOG, city=self._sink.city, dts=[day])
            self._days[day] = {
                row["batch_id"]
                for row in table.select(["batch_id", "feed", "outcome"]).to_pylist()
                if row["outcome"] == Outcome.COMMITTED and row["feed"] == STATUS_FEED
            }
        return self._days[day]


def _chunks(recording: Recording, size: int) -> Iterator[list[tuple[pd.Timestamp, pd.DataFrame]]]:
    chunk: list[tuple[pd.Timestamp, pd.DataFrame]] = []
    for published, rows in recording.iter_status(chunk=size):
        chunk.append((published, rows))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _snapshot_bounds(last_updated: pd.Series) -> Iterator[tuple[pd.Timestamp, int, int]]:
    """(last_updated, first row, end row) of each run of equal last_updated values."""
    values = last_updated.dt.tz_localize(None).to_numpy()
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        yield pd.Timestamp(last_updated.iloc[start]), int(start), int(end)


def _log_row(
    published: pd.Timestamp, rows: pd.DataFrame, outcome: str, *, source: str, clock: Callable[[], pd.Timestamp]
) -> dict[str, Any]:
    return {
        "batch_id": status_batch_id(published),
        "feed": STATUS_FEED,
        "source": source,
        "gbfs_version": None,
        "fetched_at": pd.Timestamp(rows["fetched_at"].iloc[0]),
        "published_at": published,
        "committed_at": clock() if outcome != Outcome.COMMITTED else None,
        "ingest_latency_s": None,  # a backfill replays the past: feed-to-lake latency does not apply
        "outcome": outcome,
        "reason": "a snapshot with this last_updated is already in the lake" if outcome == Outcome.DUPLICATE else None,
        "rows_in": len(rows),
        "rows_written": 0,
        "rows_masked": 0,
        "row_pass_rate": None,
        "masked_by_reason": "{}",
        "path": None,
        "converted_by_field": None,  # a recording holds rows normalised at import: conversions are not known
    }


def _json(counts: dict[str, int]) -> str:
    return json.dumps(counts, sort_keys=True)


def _backfill_system(*, recording: Recording, sink: IngestSink, clock: Callable[[], pd.Timestamp]) -> None:
    system = recording.system_information
    if not system.get("last_updated"):
        return
    system["last_updated"] = pd.Timestamp(system["last_updated"]).tz_convert("UTC")
    if sink.current_system_hash() != system_content_hash(system):
        sink.write_system(system, fetched_at=system["last_updated"])


def _backfill_information(
    *, recording: Recording, sink: IngestSink, rules: ContractRules, source: str, report: BackfillReport
) -> list[InformationVersion]:
    """Validate and write every station_information version; return the accepted ones in order."""
    existing = sink.information_versions()
    accepted: list[InformationVersion] = []
    versions = recording.information_versions()
    if not versions:
        return accepted
    fetched = {valid_from: _first_fetched(rows, valid_from) for valid_from, rows in versions}
    recorded = dict(versions)
    frame = pd.concat([rows for _, rows in versions], ignore_index=True)
    for check in check_information_versions(frame.drop(columns=["fetched_at"], errors="ignore"), rules=rules):
        valid_from = check.verdict.published_at
        fetched_at = fetched.get(valid_from, valid_from)
        if not check.verdict.accepted:
            payload = recorded[valid_from].to_json(orient="records", date_format="iso", lines=True).encode()
            sink.quarantine(
                payload=payload,
                batch_id=quarantine_batch_id(INFORMATION_FEED, valid_from, payload),
                feed=INFORMATION_FEED,
                source=source,
                fetched_at=fetched_at,
                published_at=valid_from,
                reason_code=str(check.verdict.rejections[0].code),
                reason=rejection_json(check.verdict.rejections, feed=INFORMATION_FEED, payload="recording rows"),
            )
            report.information_quarantined += 1
            continue
        content_hash = information_content_hash(check.frame)
        if accepted and accepted[-1].content_hash == content_hash:
            continue
        version = InformationVersion(
            frame=check.frame.loc[:, list(INFORMATION_HASHED)], content_hash=content_hash, valid_from=valid_from
        )
        accepted.append(version)
        if sink.information_location(version) not in existing:
            sink.write_information(version, fetched_at=fetched_at, batch_id=f"{INFORMATION_FEED}-{stamp(valid_from)}")
            report.information_versions_written += 1
    return accepted


def _first_fetched(rows: pd.DataFrame, default: pd.Timestamp) -> pd.Timestamp:
    if "fetched_at" in rows.columns and len(rows):
        return pd.Timestamp(rows["fetched_at"].iloc[0])
    return default
