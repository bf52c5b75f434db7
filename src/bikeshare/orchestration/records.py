"""Job run records: one row per run in the lake's ``job_runs`` table, written in small batches."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import JOB_RUNS, Grain

log = logging.getLogger(__name__)


class RunStatus:
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class JobOutcome:
    """What a job returns: its status and a JSON-able summary."""

    status: str = RunStatus.OK
    details: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    message: str = ""


@dataclass(frozen=True)
class JobRun:
    """One run of one job: a row of ``job_runs``. Times are on the job clock (real or replayed)."""

    run_id: str
    job: str
    scheduled_at: pd.Timestamp
    started_at: pd.Timestamp
    finished_at: pd.Timestamp
    duration_s: float  # wall seconds
    lag_s: float  # started_at - scheduled_at
    status: str
    error: str | None
    details: str  # JSON
    city: str | None = None  # the city partition it is written to (None: the recorder's city)

    @classmethod
    def of(
        cls,
        job: str,
        *,
        city: str | None = None,
        scheduled_at: pd.Timestamp,
        started_at: pd.Timestamp,
        finished_at: pd.Timestamp,
        duration_s: float,
        outcome: JobOutcome,
    ) -> JobRun:
        return cls(
            run_id=f"{job}-{started_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
            job=job,
            scheduled_at=scheduled_at,
            started_at=started_at,
            finished_at=finished_at,
            duration_s=duration_s,
            lag_s=max((started_at - scheduled_at).total_seconds(), 0.0),
            status=outcome.status,
            error=outcome.error,
            details=json.dumps(dict(outcome.details), sort_keys=True, default=str),
            city=city,
        )


class JobRunRecorder:
    """Buffers :class:`JobRun` rows and writes them as one file per day every ``flush_s`` real seconds.

    Thread-safe; :meth:`flush` writes what is buffered now (the runner flushes before the monitor
    reads ``job_runs`` and at shutdown). A failed write keeps the rows for the next flush.
    """

    def __init__(self, lake: Lake, *, city: str, flush_s: float = 10.0) -> None:
        self.lake = lake
        self.city = city
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._rows: list[JobRun] = []
        self._last_flush = time.monotonic()
        self.written = 0

    def add(self, run: JobRun) -> None:
        with self._lock:
            self._rows.append(run)
            due = time.monotonic() - self._last_flush >= self.flush_s
        if due:
            self.flush()

    def flush(self) -> int:
        """Write the buffered rows; returns how many were written."""
        with self._lock:
            rows, self._rows = self._rows, []
            self._last_flush = time.monotonic()
        if not rows:
            return 0
        by_part: dict[tuple[str, str], list[JobRun]] = {}
        for run in rows:
            key = (run.city or self.city, partition_value(run.started_at, Grain.DAY))
            by_part.setdefault(key, []).append(run)
        written = 0
        for city, day in sorted(by_part):
            part = by_part[(city, day)]
            name = f"{min(r.started_at for r in part):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
            frame = pd.DataFrame([asdict(r) for r in part]).drop(columns="city")  # the partition carries it
            try:
                self.lake.write(JOB_RUNS, frame, city=city, dt=day, name=name)
            except Exception:
                log.exception(
                    "writing %d job_runs rows of %s/%s failed; they are kept for the next flush", len(part), city, day
                )
                with self._lock:
                    self._rows = [*part, *self._rows]
                continue
            written += len(part)
        self.written += written
        return written
