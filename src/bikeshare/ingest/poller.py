"""One ingest batch (:func:`ingest_once`); the loop around it is the runner's ingest job (orchestration/jobs.py).

A batch: fetch station_status -> parse -> (duplicate? stop) -> refresh station_information,
system_information and vehicle_types -> normalise -> contract -> write the partition or quarantine
the payload -> one ingest_log row. Feed failures become a ``fetch_failed`` log row, never an
exception, so the poller keeps running and the client's circuit breaker decides when to try again.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd

from bikeshare.contracts.rules import BatchVerdict, ContractRules, RejectCode, Rejection, rejection_json
from bikeshare.contracts.validate import (
    ContractSchemaError,
    StatusCheck,
    check_station_information,
    check_station_status,
    empty_verdict,
    snapshot_time_rejection,
)
from bikeshare.gbfs.client import GbfsClient, GbfsError
from bikeshare.gbfs.normalise import (
    FeedFormatError,
    Normalised,
    detect_version,
    feed_last_updated,
    normalise_system_information,
    normalise_vehicle_types,
    read_station_information,
    read_station_status,
)
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
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings
from bikeshare.utc import utc_now

log = logging.getLogger(__name__)

STATUS_FEED = "station_status"


class Outcome:
    """Values of ``ingest_log.outcome``."""

    COMMITTED = "committed"
    DUPLICATE = "duplicate"
    UNCHANGED = "unchanged"
    QUARANTINED = "quarantined"
    FETCH_FAILED = "fetch_failed"


@dataclass
class IngestState:
    """What a poller remembers between batches; a fresh state reloads it from the lake."""

    information: InformationVersion | None = None
    system_hash: str | None = None
    vehicle_types: dict[str, str] | None = None
    last_published: pd.Timestamp | None = None
    loaded: bool = False

    def load(self, sink: IngestSink) -> None:
        """Read the dimensions in force from the lake (once per state)."""
        if not self.loaded:
            self.information = sink.current_information()
            self.system_hash = sink.current_system_hash()
            self.loaded = True


@dataclass(frozen=True)
class IngestOutcome:
    """What one batch did; also the row written to ``ingest_log``."""

    outcome: str
    batch_id: str
    fetched_at: pd.Timestamp
    published_at: pd.Timestamp | None = None
    committed_at: pd.Timestamp | None = None
    gbfs_version: str | None = None
    rows_in: int = 0
    rows_written: int = 0
    rows_masked: int = 0
    row_pass_rate: float | None = None
    masked_by_reason: dict[str, int] = field(default_factory=dict)
    converted_by_field: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    path: str | None = None
    ttl_s: float | None = None

    @property
    def ingest_latency_s(self) -> float | None:
        """Seconds from the feed's last_updated to the commit of the partition."""
        if self.published_at is None or self.committed_at is None:
            return None
        return (self.committed_at - self.published_at).total_seconds()

    def summary(self) -> str:
        """One human line: outcome, snapshot time, rows, reason."""
        parts = [self.outcome, self.batch_id]
        if self.outcome == Outcome.COMMITTED:
            parts.append(f"{self.rows_written} rows ({self.rows_masked} masked)")
            if self.ingest_latency_s is not None:
                parts.append(f"latency {self.ingest_latency_s:.1f}s")
        if self.reason:
            parts.append(self.reason)
        return " | ".join(parts)

    def log_row(self, *, feed: str, source: str) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "feed": feed,
            "source": source,
            "gbfs_version": self.gbfs_version,
            "fetched_at": self.fetched_at,
            "published_at": self.published_at,
            "committed_at": self.committed_at,
            "ingest_latency_s": self.ingest_latency_s,
            "outcome": self.outcome,
            "reason": self.reason,
            "rows_in": self.rows_in,
            "rows_written": self.rows_written,
            "rows_masked": self.rows_masked,
            "row_pass_rate": self.row_pass_rate,
            "masked_by_reason": json.dumps(self.masked_by_reason, sort_keys=True),
            "path": self.path,
            "converted_by_field": json.dumps(self.converted_by_field, sort_keys=True),
        }


def ingest_once(
    *,
    client: GbfsClient,
    lake: Lake,
    settings: Settings,
    clock: Callable[[], pd.Timestamp] = utc_now,
    state: IngestState | None = None,
) -> IngestOutcome:
    """Run one batch against the feed and record it in ``ingest_log``; never raises for feed faults."""
    sink = IngestSink(lake, settings.city)
    state = state if state is not None else IngestState()
    rules = ContractRules.from_settings(settings)
    source = client.discovery_url
    try:
        result = client.fetch(STATUS_FEED)
    except (GbfsError, FeedFormatError) as exc:
        now = clock()
        outcome = IngestOutcome(
            outcome=Outcome.FETCH_FAILED,
            batch_id=f"fetch-{stamp(now)}",
            fetched_at=now,
            reason=f"{type(exc).__name__}: {exc}",
        )
    else:
        ttl = float(result.ttl) if result.ttl is not None else None
        if result.body is None or result.not_modified or result.from_ttl_cache:
            outcome = IngestOutcome(
                outcome=Outcome.UNCHANGED,
                batch_id=f"unchanged-{stamp(result.fetched_at)}",
                fetched_at=result.fetched_at,
                published_at=state.last_published,
                reason="not modified (HTTP 304)" if result.not_modified else "within the feed's ttl",
                ttl_s=ttl,
            )
        else:
            outcome = _process_status(
                payload=result.body,
                fetched_at=result.fetched_at,
                sink=sink,
                rules=rules,
                state=state,
                clock=clock,
                source=source,
                ttl=ttl,
                refresh=lambda: refresh_dimensions(client=client, sink=sink, rules=rules, state=state),
            )
    return _record(outcome, sink=sink, state=state, source=source)


def ingest_status_payload(
    *,
    payload: bytes,
    fetched_at: pd.Timestamp,
    lake: Lake,
    settings: Settings,
    state: IngestState | None = None,
    clock: Callable[[], pd.Timestamp] = utc_now,
    source: str = "payload",
) -> IngestOutcome:
    """Ingest one station_status document already in hand (the batch after the fetch).

    The station_information in force is the lake's current version (or ``state.information``);
    nothing is fetched. Used by drills and tests; :func:`ingest_once` runs the same steps.
    """
    sink = IngestSink(lake, settings.city)
    state = state if state is not None else IngestState()
    outcome = _process_status(
        payload=payload,
        fetched_at=fetched_at,
        sink=sink,
        rules=ContractRules.from_settings(settings),
        state=state,
        clock=clock,
        source=source,
        ttl=None,
        refresh=list,
    )
    return _record(outcome, sink=sink, state=state, source=source)


def _record(outcome: IngestOutcome, *, sink: IngestSink, state: IngestState, source: str) -> IngestOutcome:
    """Write the batch's ingest_log row and remember what was committed."""
    sink.write_log([outcome.log_row(feed=STATUS_FEED, source=source)], name=_log_name(outcome))
    if outcome.outcome == Outcome.COMMITTED and outcome.published_at is not None:
        state.last_published = outcome.published_at
    return outcome


def _log_name(outcome: IngestOutcome) -> str:
    return f"{stamp(outcome.fetched_at)}-{uuid.uuid4().hex[:8]}"


def _process_status(
    *,
    payload: bytes,
    fetched_at: pd.Timestamp,
    sink: IngestSink,
    rules: ContractRules,
    state: IngestState,
    clock: Callable[[], pd.Timestamp],
    source: str,
    ttl: float | None,
    refresh: Callable[[], list[str]],
) -> IngestOutcome:
    """Parse -> snapshot time -> duplicate check -> dimensions -> normalise -> contract -> partition or quarantine.

    An unexpected error after the payload is read is a rejected batch too (``ingest_error``,
    payload quarantined), so that every batch leaves a log row and the poller goes on.
    """

    def quarantined(
        code: RejectCode, rejections: list[Rejection], published: pd.Timestamp | None, **extra: Any
    ) -> IngestOutcome:
        batch_id = quarantine_batch_id(STATUS_FEED, published, payload)
        reason = rejection_json(rejections, feed=STATUS_FEED, **extra)
        path = sink.quarantine(
            payload=payload,
            batch_id=batch_id,
            feed=STATUS_FEED,
            source=source,
            fetched_at=fetched_at,
            published_at=published,
            reason_code=str(code),
            reason=reason,
            by_fetch_day=code is RejectCode.IMPLAUSIBLE_TIME,
        )
        return IngestOutcome(
            outcome=Outcome.QUARANTINED,
            batch_id=batch_id,
            fetched_at=fetched_at,
            published_at=published,
            committed_at=clock(),
            gbfs_version=extra.get("gbfs_version"),
            rows_in=int(extra.get("rows_in", 0)),
            reason=f"{code}: {rejections[0].message}",
            path=path,
            ttl_s=ttl,
        )

    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return quarantined(
            RejectCode.MALFORMED_JSON,
            [Rejection(code=RejectCode.MALFORMED_JSON, message=f"body is not JSON: {exc}")],
            None,
        )
    try:
        version = detect_version(doc)
        published = feed_last_updated(doc)
    except FeedFormatError as exc:
        return quarantined(RejectCode.FEED_FORMAT, [Rejection(code=RejectCode.FEED_FORMAT, message=str(exc))], None)
    implausible = snapshot_time_rejection(published, fetched_at, rules)
    if implausible is not None:
        return quarantined(RejectCode.IMPLAUSIBLE_TIME, [implausible], published, gbfs_version=version)

    batch_id = status_batch_id(published)
    if published == state.last_published or sink.has_status(published):
        return IngestOutcome(
            outcome=Outcome.DUPLICATE,
            batch_id=batch_id,
            fetched_at=fetched_at,
            published_at=published,
            gbfs_version=version,
            reason="a snapshot with this last_updated is already in the lake",
            ttl_s=ttl,
        )

    state.load(sink)
    notes = refresh()
    information = state.information.frame if state.information is not None else None
    try:
        judged = _judge_status(doc, published, information=information, rules=rules, state=state)
    except Exception as exc:  # any defect of one payload must not stop the ingest
        log.exception("station_status batch %s failed unexpectedly", batch_id)
        message = f"normalise/contract failed unexpectedly: {type(exc).__name__}: {exc}"
        judged = [Rejection(code=RejectCode.INGEST_ERROR, message=message)], 0
    if isinstance(judged, tuple):
        rejections, rows_in = judged
        return quarantined(RejectCode(rejections[0].code), rejections, published, gbfs_version=version, rows_in=rows_in)
    read, check, verdict = judged.read, judged.check, judged.verdict
    rows = check.frame.assign(fetched_at=fetched_at, batch_id=batch_id)
    path = sink.write_status(rows, published)  # a lake that cannot be written is not the payload's fault
    committed_at = clock()
    if information is None:
        notes.append("no station_information known: unknown-station and capacity rules skipped")
    return IngestOutcome(
        outcome=Outcome.COMMITTED if path else Outcome.DUPLICATE,
        batch_id=batch_id,
        fetched_at=fetched_at,
        published_at=published,
        committed_at=committed_at if path else None,
        gbfs_version=version,
        rows_in=verdict.rows_in,
        rows_written=len(rows) if path else 0,
        rows_masked=verdict.rows_masked if path else 0,
        row_pass_rate=verdict.row_pass_rate,
        masked_by_reason=verdict.masked_by_reason,
        converted_by_field=read.converted,
        reason="; ".join(notes) or None,
        path=path,
        ttl_s=ttl,
    )


@dataclass(frozen=True)
class _Judged:
    read: Normalised
    check: StatusCheck
    verdict: BatchVerdict


def _judge_status(
    doc: dict,
    published: pd.Timestamp,
    *,
    information: pd.DataFrame | None,
    rules: ContractRules,
    state: IngestState,
) -> _Judged | tuple[list[Rejection], int]:
    """Normalise and judge one document: the accepted snapshot, or (rejections, rows_in)."""
    try:
        read = read_station_status(doc, vehicle_types=state.vehicle_types)
    except FeedFormatError as exc:
        return [Rejection(code=RejectCode.FEED_FORMAT, message=str(exc))], 0
    try:
        check = check_station_status(read.frame, information=information, rules=rules, wrong_type=read.wrong_type)
    except ContractSchemaError as exc:
        return [Rejection(code=RejectCode.SCHEMA, message=str(exc))], len(read.frame)
    verdict = check.verdicts.get(published) or empty_verdict(published)
    if not verdict.accepted:
        return verdict.rejections, verdict.rows_in
    return _Judged(read=read, check=check, verdict=verdict)


def refresh_dimensions(*, client: GbfsClient, sink: IngestSink, rules: ContractRules, state: IngestState) -> list[str]:
    """Fetch vehicle_types, system_information and station_information; write versions that changed.

    A failure here never stops the status batch: it goes on with the versions in force and the
    returned notes say what happened (they end up in the log row's ``reason``).
    """
    notes: list[str] = []
    listed = client.index.feeds if client.index is not None else {}
    steps: list[tuple[str, Callable[[], None]]] = []
    if "vehicle_types" in listed:
        steps.append(("vehicle_types", lambda: _refresh_vehicle_types(client=client, state=state, notes=notes)))
    if "system_information" in listed:
        steps.append(
            ("system_information", lambda: _refresh_system(client=client, sink=sink, state=state, notes=notes))
        )
    if "station_information" in listed:
        steps.append(
            (
                "station_information",
                lambda: _refresh_information(client=client, sink=sink, rules=rules, state=state, notes=notes),
            )
        )
    for feed, step in steps:
        try:
            step()
        except Exception as exc:  # a dimension feed must never stop the status batch
            log.exception("refreshing %s failed unexpectedly", feed)
            notes.append(f"{feed}: failed unexpectedly ({type(exc).__name__}: {exc}); using the version in force")
    return notes


def _refresh_vehicle_types(*, client: GbfsClient, state: IngestState, notes: list[str]) -> None:
    fetched = _fetch_doc(client, "vehicle_types", notes, force=state.vehicle_types is None)
    if fetched is not None:
        try:
            state.vehicle_types = normalise_vehicle_types(fetched[0])
        except FeedFormatError as exc:
            notes.append(f"vehicle_types: {exc}")


def _fetch_doc(
    client: GbfsClient, feed: str, notes: list[str], *, force: bool = False
) -> tuple[dict, pd.Timestamp] | None:
    """A freshly fetched document and its fetch time, or None when unchanged or unavailable (noted)."""
    try:
        result = client.fetch(feed)
    except (GbfsError, FeedFormatError) as exc:
        notes.append(f"{feed}: {type(exc).__name__}: {exc}")
        return None
    if result.body is None or ((result.not_modified or result.from_ttl_cache) and not force):
        return None
    try:
        doc = orjson.loads(result.body)
    except orjson.JSONDecodeError as exc:
        notes.append(f"{feed}: body is not JSON ({exc})")
        return None
    if not isinstance(doc, dict):
        notes.append(f"{feed}: body is not a JSON object")
        return None
    return doc, result.fetched_at


def _refresh_system(*, client: GbfsClient, sink: IngestSink, state: IngestState, notes: list[str]) -> None:
    fetched = _fetch_doc(client, "system_information", notes, force=state.system_hash is None)
    if fetched is None:
        return
    doc, fetched_at = fetched
    try:
        system = normalise_system_information(doc)
    except FeedFormatError as exc:
        notes.append(f"system_information: {exc}")
        return
    content_hash = system_content_hash(system)
    if content_hash != state.system_hash:
        sink.write_system(system, fetched_at=fetched_at)
        state.system_hash = content_hash


def _refresh_information(
    *, client: GbfsClient, sink: IngestSink, rules: ContractRules, state: IngestState, notes: list[str]
) -> None:
    feed = "station_information"
    try:
        result = client.fetch(feed)
    except (GbfsError, FeedFormatError) as exc:
        notes.append(f"{feed}: {type(exc).__name__}: {exc}; using the version in force")
        return
    unchanged = result.not_modified or result.from_ttl_cache
    if result.body is None or (unchanged and state.information is not None):
        return
    payload = result.body
    published: pd.Timestamp | None = None
    rejections: list[Rejection] = []
    version = None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        rejections = [Rejection(code=RejectCode.MALFORMED_JSON, message=f"body is not JSON: {exc}")]
    else:
        try:
            version = detect_version(doc)
            published = feed_last_updated(doc)
            language = client.index.language if client.index is not None else None
            read = read_station_information(doc, language=language)
            check = check_station_information(read.frame, rules=rules, wrong_type=read.wrong_type)
        except (FeedFormatError, ContractSchemaError) as exc:
            code = RejectCode.SCHEMA if isinstance(exc, ContractSchemaError) else RejectCode.FEED_FORMAT
            rejections = [Rejection(code=code, message=str(exc))]
        else:
            rejections = check.verdict.rejections
    if rejections:
        batch_id = quarantine_batch_id(feed, published, payload)
        sink.quarantine(
            payload=payload,
            batch_id=batch_id,
            feed=feed,
            source=client.discovery_url,
            fetched_at=result.fetched_at,
            published_at=published,
            reason_code=str(rejections[0].code),
            reason=rejection_json(rejections, feed=feed, gbfs_version=version),
        )
        notes.append(f"{feed} quarantined ({rejections[0].code}): using the version in force")
        return
    content_hash = information_content_hash(check.frame)
    if state.information is not None and content_hash == state.information.content_hash:
        return
    assert published is not None
    info = InformationVersion(
        frame=check.frame.loc[:, list(INFORMATION_HASHED)], content_hash=content_hash, valid_from=published
    )
    sink.write_information(info, fetched_at=result.fetched_at, batch_id=f"{feed}-{stamp(published)}")
    state.information = info
    notes.append(f"{feed}: new version valid from {published.isoformat()}")
