"""Monitoring data in the lake: the append-only alert log, feature baselines and drift scores.

Alert events are only ever appended (one Parquet file per append and day); the current state of
each alert is the ``alerts`` view over ``alert_events``. Baselines and drift scores are tables the
monitor job writes and the dashboard reads (``feature_baselines``, ``drift_scores``,
``drift_latest``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import ALERT_EVENTS, DRIFT_SCORES, FEATURE_BASELINES
from bikeshare.monitoring.alerts import Alert, AlertEvent, acknowledge
from bikeshare.monitoring.baseline import FeatureBaseline
from bikeshare.monitoring.drift import DRIFT_COLUMNS
from bikeshare.utc import to_utc, utc_now

_EVENT_FIELDS = tuple(f.name for f in fields(AlertEvent))
_ALERT_FIELDS = tuple(f.name for f in fields(Alert))


class AlertNotFoundError(LookupError):
    """No alert with that id in this city's alert store."""


@dataclass(frozen=True)
class AlertStore:
    """Append-only alert events of one city in the lake, and the alert state derived from them."""

    lake: Lake
    city: str

    def append(self, events: Sequence[AlertEvent], *, recorded_at: datetime | None = None) -> list[str]:
        """Append events (one new file per UTC day they fall on); return the written paths."""
        if not events:
            return []
        recorded = utc_now() if recorded_at is None else to_utc(recorded_at, what="recorded_at")
        rows = [_event_row(event, seq=i, recorded_at=recorded) for i, event in enumerate(events)]
        frame = pd.DataFrame(rows)
        paths = []
        batch = uuid.uuid4().hex[:12]
        for dt, part in frame.groupby(frame["event_at"].map(lambda ts: partition_value(ts, ALERT_EVENTS.grain))):
            name = f"{recorded:%Y%m%dT%H%M%S%f}-{batch}"
            path = self.lake.write(ALERT_EVENTS, part, city=self.city, dt=str(dt), name=name)
            if path is None:  # pragma: no cover - the name is unique per append
                raise RuntimeError(f"alert event file {name} already exists")
            paths.append(path)
        return paths

    def events(self, *, alert_id: str | None = None) -> list[AlertEvent]:
        """Every stored event of this city (or of one alert), oldest first."""
        where, params = "city = ?", [self.city]
        if alert_id is not None:
            where, params = where + " AND alert_id = ?", [*params, alert_id]
        rows = self._query(f"SELECT * FROM alert_events WHERE {where} ORDER BY event_at, recorded_at, seq", params)
        return [_event_from_row(row) for row in rows]

    def alerts(self, *, include_resolved: bool = False) -> list[Alert]:
        """Current alert states from the ``alerts`` view, newest first."""
        where = "city = ?" + ("" if include_resolved else " AND status <> 'resolved'")
        rows = self._query(
            f"SELECT * FROM alerts WHERE {where} ORDER BY coalesce(fired_at, started_at) DESC, alert_id", [self.city]
        )
        return [_alert_from_row(row) for row in rows]

    def open_alerts(self) -> list[Alert]:
        """Alerts that are pending, firing or acknowledged: the engine's ``open_alerts`` input."""
        return self.alerts(include_resolved=False)

    def get(self, alert_id: str) -> Alert:
        """One alert's current state; AlertNotFoundError when the id is unknown."""
        rows = self._query("SELECT * FROM alerts WHERE city = ? AND alert_id = ?", [self.city, alert_id])
        if not rows:
            raise AlertNotFoundError(f"no alert {alert_id!r} in city {self.city!r} (see `bikeshare alerts list --all`)")
        return _alert_from_row(rows[0])

    def _query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        con = self.lake.connect()
        try:
            return con.sql(sql, params=params).to_arrow_table().to_pylist()
        finally:
            con.close()


def ack_alert(*, store: AlertStore, alert_id: str, by: str, at: datetime | None = None) -> AlertEvent:
    """Acknowledge a firing alert: store and return the ``acknowledged`` event (with its MTTA)."""
    alert = store.get(alert_id)
    event = acknowledge(alert, by=by, at=at or datetime.now(UTC))
    store.append([event])
    return event


# ---- baselines and drift -------------------------------------------------------------------------


def write_baselines(
    lake: Lake,
    baselines: Mapping[str, FeatureBaseline],
    *,
    city: str,
    model_name: str,
    model_version: str,
    target: str,
    created_at: datetime,
) -> str | None:
    """Store a model version's baselines (one row per feature); None if they were already stored."""
    created = to_utc(created_at, what="created_at")
    frame = pd.DataFrame(
        [
            {
                "model_name": model_name,
                "model_version": str(model_version),
                "target": target,
                "feature": b.name,
                "kind": b.kind,
                "rows": b.rows,
                "missing": b.missing,
                "created_at": created,
                "baseline": json.dumps(b.to_dict(), allow_nan=False),
            }
            for b in baselines.values()
        ]
    )
    if frame.empty:
        raise ValueError("no baselines to store")
    name = _safe_name(f"{model_name}-v{model_version}-{target}")
    dt = partition_value(created, FEATURE_BASELINES.grain)
    return lake.write(FEATURE_BASELINES, frame, city=city, dt=dt, name=name)


def read_baselines(
    lake: Lake, *, city: str, model_name: str, model_version: str, target: str
) -> dict[str, FeatureBaseline]:
    """The stored baselines of one model version and target (empty when none were stored)."""
    con = lake.connect()
    try:
        rows = con.execute(
            "SELECT baseline FROM feature_baselines WHERE city = ? AND model_name = ? AND model_version = ? "
            "AND target = ? QUALIFY row_number() OVER (PARTITION BY feature ORDER BY created_at DESC) = 1",
            [city, model_name, str(model_version), target],
        ).fetchall()
    finally:
        con.close()
    out = {}
    for (payload,) in rows:
        baseline = FeatureBaseline.from_dict(json.loads(payload))
        out[baseline.name] = baseline
    return out


def write_drift_scores(
    lake: Lake,
    scores: pd.DataFrame,
    *,
    city: str,
    evaluated_at: datetime,
    window_start: datetime,
    window_end: datetime,
    model_name: str,
    model_version: str,
    target: str,
) -> str | None:
    """Store one :func:`~bikeshare.monitoring.drift.drift_table` result with its context."""
    missing = [c for c in DRIFT_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"drift scores lack columns {missing}")
    evaluated = to_utc(evaluated_at, what="evaluated_at")
    frame = scores.loc[:, list(DRIFT_COLUMNS)].copy()
    frame["evaluated_at"] = evaluated
    frame["window_start"] = to_utc(window_start, what="window_start")
    frame["window_end"] = to_utc(window_end, what="window_end")
    frame["model_name"] = model_name
    frame["model_version"] = str(model_version)
    frame["target"] = target
    name = _safe_name(f"{evaluated:%Y%m%dT%H%M%S}-{model_name}-v{model_version}-{target}")
    return lake.write(DRIFT_SCORES, frame, city=city, dt=partition_value(evaluated, DRIFT_SCORES.grain), name=name)


# ---- row conversion ------------------------------------------------------------------------------


def _event_row(event: AlertEvent, *, seq: int, recorded_at: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(event, name) for name in _EVENT_FIELDS}
    row["event_at"] = to_utc(row.pop("at"), what="event time")
    row["labels"] = json.dumps(dict(event.labels), sort_keys=True)
    row["details"] = json.dumps(dict(event.details), sort_keys=True, default=str)
    row["seq"] = seq
    row["recorded_at"] = recorded_at
    for key in ("observed_at", "started_at", "fired_at", "fault_started_at", "routed_at"):
        if row[key] is not None:
            row[key] = to_utc(row[key], what=key)
    return row


def _event_from_row(row: Mapping[str, Any]) -> AlertEvent:
    values = {name: row.get(name) for name in _EVENT_FIELDS if name != "at"}
    values["labels"] = json.loads(row["labels"] or "{}")
    values["details"] = json.loads(row["details"] or "{}")
    values["unit"] = row["unit"] or ""
    values["message"] = row["message"] or ""
    values["runbook"] = row["runbook"] or ""
    values["signal"] = row["signal"] or ""
    values["evaluations"] = int(row["evaluations"] or 0)
    return AlertEvent(at=row["event_at"], **values)


def _alert_from_row(row: Mapping[str, Any]) -> Alert:
    values = {name: row.get(name) for name in _ALERT_FIELDS}
    values["labels"] = json.loads(row["labels"] or "{}")
    for key in ("signal", "unit", "message", "runbook"):
        values[key] = row[key] or ""
    values["evaluations"] = int(row["evaluations"] or 0)
    return Alert(**values)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def alert_frame(alerts: Sequence[Alert]) -> pd.DataFrame:
    """Alerts as a table for the CLI and the dashboard."""
    columns = [
        "alert_id",
        "status",
        "severity",
        "rule",
        "labels",
        "value",
        "fired_at",
        "acknowledged_by",
        "mtta_s",
        "message",
    ]
    rows = [
        {
            **{c: getattr(a, c) for c in columns if c != "labels"},
            "labels": ",".join(f"{k}={v}" for k, v in sorted(a.labels.items())),
        }
        for a in alerts
    ]
    return pd.DataFrame(rows, columns=columns)
