"""The alert engine: signals + rules + open alerts -> lifecycle events.

Lifecycle: (pending ->) firing -> acknowledged -> resolved. An alert is identified by its rule and
its identity labels (the *fingerprint*); while one is open, the same condition gives no new alert.
A move from warning to critical is an ``escalated`` event of the same alert (``deescalated`` the
other way). A threshold rule whose signal is missing this cycle (no signal, or value None/NaN)
neither fires nor resolves: the open alert stays as it is, because silence is not health. The
dead-feed rule (kind ``absence``) is the exception: it is defined on silence.

:func:`evaluate` is pure; storing the events and routing them to sinks is the caller's job
(:func:`bikeshare.monitoring.cycle.run_alert_cycle` does both).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from bikeshare.monitoring.rules import SEVERITY_RANK, AlertRule, RuleSet, Severity
from bikeshare.utc import to_utc

EventKind = Literal["pending", "fired", "escalated", "deescalated", "acknowledged", "resolved", "routed"]
Status = Literal["pending", "firing", "acknowledged", "resolved"]

EVENT_KINDS: tuple[str, ...] = (
    "pending",
    "fired",
    "escalated",
    "deescalated",
    "acknowledged",
    "resolved",
    "routed",
)
OPEN_STATUSES: tuple[str, ...] = ("pending", "firing", "acknowledged")
# Lifecycle events that are sent to the sinks (a resolve only if the alert had fired).
ROUTED_EVENTS: tuple[str, ...] = ("fired", "escalated", "resolved")
# Events produced by evaluating signals (they carry the current severity and value).
EVALUATION_EVENTS: tuple[str, ...] = ("pending", "fired", "escalated", "deescalated", "resolved")


class AlertStateError(ValueError):
    """An operation that the alert's current state does not allow (e.g. acking a resolved alert)."""


def as_utc(value: datetime, *, what: str = "time") -> datetime:
    """:func:`bikeshare.utc.to_utc` (naive refused) as the ``datetime`` the alert model holds."""
    return to_utc(value, what=what).to_pydatetime()


# A URL in free text: scheme, authority (host, port, maybe user:password@), then path, query, fragment.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#'\"<>]+[^\s'\"<>)]*")


def redact_url(url: str) -> str:
    """A sink URL as it may be shown: scheme and host only (``https://hooks.example.com/…``).

    A webhook URL's path is its secret (Slack: ``/services/T…/B…/<token>``), and credentials may sit
    before the host; neither is ever written to an error, a log line or a table.
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "…"
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username
    return f"{parts.scheme}://{host}/…" if hidden else f"{parts.scheme}://{host}"


def redact_urls(text: str) -> str:
    """``text`` with every URL in it cut to its scheme and host (:func:`redact_url`)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def new_id() -> str:
    """A short random id for alerts and events."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Signal:
    """One measured value the rules read, e.g. ``Signal("data_delay_s", 42.0, {"feed": "station_status"})``.

    ``value`` None (or NaN) means "could not be measured this cycle". ``observed_at`` is when the
    value was true (for the dead-feed rule: when the newest snapshot was committed); None means the
    evaluation time.
    """

    name: str
    value: float | None
    labels: Mapping[str, str] = field(default_factory=dict)
    observed_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a signal needs a name")
        if self.value is not None:
            try:
                number = float(self.value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"signal {self.name!r}: value {self.value!r} is not a number") from exc
            object.__setattr__(self, "value", None if math.isnan(number) else number)
        bad = {k: v for k, v in self.labels.items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad:
            raise ValueError(f"signal {self.name!r}: labels must map str to str, got {bad}")
        object.__setattr__(self, "labels", dict(self.labels))
        if self.observed_at is not None:
            object.__setattr__(self, "observed_at", as_utc(self.observed_at, what=f"signal {self.name!r} observed_at"))


@dataclass(frozen=True)
class AlertEvent:
    """One row of the append-only alert event log (lifecycle or routing)."""

    alert_id: str
    event: EventKind
    status: Status
    at: datetime
    rule: str
    fingerprint: str
    signal: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    severity: Severity | None = None
    value: float | None = None
    threshold: float | None = None
    comparison: str | None = None
    unit: str = ""
    message: str = ""
    runbook: str = ""
    observed_at: datetime | None = None
    started_at: datetime | None = None
    fired_at: datetime | None = None
    evaluations: int = 0
    acknowledged_by: str | None = None
    fault_started_at: datetime | None = None
    ttd_s: float | None = None
    mtta_s: float | None = None
    sink: str | None = None
    routed_event: str | None = None
    routed_at: datetime | None = None
    ok: bool | None = None
    error: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        if self.error:  # a sink's error text reaches the lake only with its URLs redacted
            object.__setattr__(self, "error", redact_urls(self.error))


@dataclass(frozen=True)
class Alert:
    """Current state of one alert, folded from its events (or read from the ``alerts`` view)."""

    alert_id: str
    rule: str
    fingerprint: str
    status: Status
    severity: Severity | None
    signal: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    threshold: float | None = None
    unit: str = ""
    message: str = ""
    runbook: str = ""
    started_at: datetime | None = None
    fired_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    updated_at: datetime | None = None
    evaluations: int = 0
    fault_started_at: datetime | None = None
    ttd_s: float | None = None
    mtta_s: float | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """Alert identity: ``rule{k=v,...}`` with labels sorted by key."""
    return rule + "{" + ",".join(f"{k}={labels[k]}" for k in sorted(labels)) + "}"


def evaluate(
    rules: RuleSet | Iterable[AlertRule],
    signals: Sequence[Signal],
    open_alerts: Sequence[Alert],
    now: datetime,
    *,
    fault_started_at: datetime | None = None,
) -> list[AlertEvent]:
    """Lifecycle events for one evaluation cycle at ``now``.

    ``open_alerts`` are the alerts not yet resolved (from the store). ``fault_started_at`` is set
    by callers that know when a fault began (drills); alerts that fire in this cycle record it and
    their time to detect.
    """
    now = as_utc(now, what="now")
    fault = as_utc(fault_started_at, what="fault_started_at") if fault_started_at is not None else None
    rule_list = list(rules.rules if isinstance(rules, RuleSet) else rules)
    by_fingerprint, duplicates = _index_open(open_alerts)
    events: list[AlertEvent] = [
        _resolve(alert, now, reason=f"duplicate of alert {by_fingerprint[alert.fingerprint].alert_id}")
        for alert in duplicates
    ]
    known_rules = {rule.name for rule in rule_list}
    for rule in rule_list:
        selected = [s for s in signals if s.name == rule.signal and rule.selects(s.labels)]
        for identity, outcome in _outcomes(rule, selected, now).items():
            labels = dict(identity)
            event = _transition(
                rule, labels, outcome, by_fingerprint.get(fingerprint(rule.name, labels)), now=now, fault=fault
            )
            if event is not None:
                events.append(event)
    for alert in by_fingerprint.values():
        if alert.rule not in known_rules:
            events.append(_resolve(alert, now, reason="rule no longer configured"))
    return events


def acknowledge(alert: Alert, *, by: str, at: datetime) -> AlertEvent:
    """The ``acknowledged`` event for a firing alert, with its MTTA (fired -> acknowledged)."""
    at = as_utc(at, what="acknowledged_at")
    if not by.strip():
        raise ValueError("say who acknowledges the alert (by)")
    if alert.status == "resolved":
        raise AlertStateError(f"alert {alert.alert_id} ({alert.fingerprint}) is already resolved")
    if alert.status == "acknowledged":
        raise AlertStateError(
            f"alert {alert.alert_id} ({alert.fingerprint}) was already acknowledged by "
            f"{alert.acknowledged_by} at {alert.acknowledged_at}"
        )
    if alert.status == "pending" or alert.fired_at is None:
        raise AlertStateError(f"alert {alert.alert_id} ({alert.fingerprint}) is pending and has not fired yet")
    if at < alert.fired_at:
        raise AlertStateError(
            f"acknowledgement time {at.isoformat()} is before the alert fired ({alert.fired_at.isoformat()}); "
            "use the same clock as the monitor"
        )
    return AlertEvent(
        alert_id=alert.alert_id,
        event="acknowledged",
        status="acknowledged",
        at=at,
        rule=alert.rule,
        fingerprint=alert.fingerprint,
        signal=alert.signal,
        labels=dict(alert.labels),
        severity=alert.severity,
        value=alert.value,
        threshold=alert.threshold,
        unit=alert.unit,
        message=f"acknowledged by {by}: {alert.message}",
        runbook=alert.runbook,
        started_at=alert.started_at,
        fired_at=alert.fired_at,
        evaluations=alert.evaluations,
        acknowledged_by=by,
        fault_started_at=alert.fault_started_at,
        mtta_s=(at - alert.fired_at).total_seconds(),
    )


def fold_events(events: Iterable[AlertEvent]) -> list[Alert]:
    """Current state of every alert in an event log (the in-memory twin of the ``alerts`` view)."""
    grouped: dict[str, list[AlertEvent]] = {}
    for event in events:
        grouped.setdefault(event.alert_id, []).append(event)
    alerts = []
    for alert_id, items in grouped.items():
        ordered = sorted(enumerate(items), key=lambda pair: (pair[1].at, pair[0]))
        lifecycle = [e for _, e in ordered if e.event != "routed"]
        if not lifecycle:
            continue
        evaluated = [e for e in lifecycle if e.event in EVALUATION_EVENTS] or lifecycle
        latest = evaluated[-1]
        first = lifecycle[0]
        fired = next((e for e in lifecycle if e.event == "fired"), None)
        acked = next((e for e in lifecycle if e.event == "acknowledged"), None)
        resolved = next((e for e in lifecycle if e.event == "resolved"), None)
        status: Status = "resolved" if resolved else "acknowledged" if acked else "firing" if fired else "pending"
        values = [e for e in evaluated if e.value is not None]
        alerts.append(
            Alert(
                alert_id=alert_id,
                rule=first.rule,
                fingerprint=first.fingerprint,
                status=status,
                severity=latest.severity,
                signal=first.signal,
                labels=dict(first.labels),
                value=values[-1].value if values else None,
                threshold=latest.threshold,
                unit=first.unit,
                message=latest.message,
                runbook=first.runbook,
                started_at=first.started_at or first.at,
                fired_at=fired.at if fired else None,
                acknowledged_at=acked.at if acked else None,
                acknowledged_by=acked.acknowledged_by if acked else None,
                resolved_at=resolved.at if resolved else None,
                updated_at=lifecycle[-1].at,
                evaluations=latest.evaluations,
                fault_started_at=fired.fault_started_at if fired else None,
                ttd_s=fired.ttd_s if fired else None,
                mtta_s=acked.mtta_s if acked else None,
            )
        )
    return alerts


# ---- internals ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """What one alert identity looks like this cycle; ``missing`` means no usable value."""

    severity: Severity | None
    value: float | None
    observed_at: datetime | None
    missing: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)


def _index_open(open_alerts: Sequence[Alert]) -> tuple[dict[str, Alert], list[Alert]]:
    """Open alerts by fingerprint; a second open alert with the same fingerprint is a duplicate."""
    by_fingerprint: dict[str, Alert] = {}
    duplicates: list[Alert] = []
    epoch = datetime.min.replace(tzinfo=UTC)
    for alert in sorted((a for a in open_alerts if a.is_open), key=lambda a: (a.started_at or epoch, a.alert_id)):
        if alert.fingerprint in by_fingerprint:
            duplicates.append(alert)
        else:
            by_fingerprint[alert.fingerprint] = alert
    return by_fingerprint, duplicates


def _outcomes(rule: AlertRule, selected: list[Signal], now: datetime) -> dict[tuple[tuple[str, str], ...], _Outcome]:
    """One outcome per alert identity (sorted label pairs) the rule sees this cycle."""
    if rule.kind == "absence":
        identity = tuple(sorted(rule.labels.items()))
        if not selected:
            return {identity: _Outcome(rule.top_severity, None, None, details={"reason": "no signal at all"})}
        newest = max(s.observed_at or now for s in selected)
        age = max((now - newest).total_seconds(), 0.0)
        return {identity: _Outcome(rule.severity_of(age), age, newest, details={"last_seen": newest.isoformat()})}

    groups: dict[tuple[tuple[str, str], ...], list[Signal]] = {}
    for signal in selected:
        keys = rule.group_by if rule.group_by is not None else sorted(signal.labels)
        identity = tuple((k, signal.labels[k]) for k in sorted(keys) if k in signal.labels)
        groups.setdefault(identity, []).append(signal)
    out: dict[tuple[tuple[str, str], ...], _Outcome] = {}
    for identity, members in groups.items():
        valued = [(s.value, s) for s in members if s.value is not None]
        if not valued:
            out[identity] = _Outcome(None, None, None, missing=True)
            continue
        pick = max if rule.comparison in (">", ">=") else min
        value, worst = pick(valued, key=lambda pair: pair[0])
        breaching = sum(1 for v, _ in valued if rule.severity_of(v) is not None)
        details: dict[str, Any] = {"signals": len(valued), "breaching": breaching}
        if dict(worst.labels) != dict(identity):
            details["worst_labels"] = dict(worst.labels)
        out[identity] = _Outcome(rule.severity_of(value), value, worst.observed_at or now, details=details)
    return out


def _transition(
    rule: AlertRule,
    labels: dict[str, str],
    outcome: _Outcome,
    alert: Alert | None,
    *,
    now: datetime,
    fault: datetime | None,
) -> AlertEvent | None:
    if outcome.missing:
        return None  # no value this cycle: neither fire nor resolve
    if outcome.severity is None:
        if alert is None:
            return None
        return _resolve(alert, now, value=outcome.value, observed_at=outcome.observed_at, rule=rule)

    severity = outcome.severity
    base = {
        "rule": rule.name,
        "fingerprint": fingerprint(rule.name, labels),
        "signal": rule.signal,
        "labels": labels,
        "severity": severity,
        "value": outcome.value,
        "threshold": rule.threshold_of(severity),
        "comparison": rule.comparison,
        "unit": rule.unit,
        "message": _message(rule, labels, severity, outcome),
        "runbook": rule.runbook,
        "observed_at": outcome.observed_at,
        "at": now,
        "details": dict(outcome.details),
    }
    if alert is None or alert.status == "pending":
        evaluations = (alert.evaluations if alert else 0) + 1
        alert_id = alert.alert_id if alert else new_id()
        started = alert.started_at if alert and alert.started_at else now
        if evaluations < rule.for_evaluations:
            return AlertEvent(
                alert_id=alert_id,
                event="pending",
                status="pending",
                started_at=started,
                evaluations=evaluations,
                **base,
            )
        return AlertEvent(
            alert_id=alert_id,
            event="fired",
            status="firing",
            started_at=started,
            fired_at=now,
            evaluations=evaluations,
            fault_started_at=fault,
            ttd_s=(now - fault).total_seconds() if fault is not None else None,
            **base,
        )
    old_rank = SEVERITY_RANK.get(alert.severity or "", 0)
    new_rank = SEVERITY_RANK[severity]
    if new_rank == old_rank:
        return None  # still firing at the same severity: de-duplicated
    return AlertEvent(
        alert_id=alert.alert_id,
        event="escalated" if new_rank > old_rank else "deescalated",
        status=alert.status,
        started_at=alert.started_at,
        fired_at=alert.fired_at,
        evaluations=alert.evaluations + 1,
        acknowledged_by=alert.acknowledged_by,
        fault_started_at=alert.fault_started_at,
        **base,
    )


def _resolve(
    alert: Alert,
    now: datetime,
    *,
    value: float | None = None,
    observed_at: datetime | None = None,
    rule: AlertRule | None = None,
    reason: str | None = None,
) -> AlertEvent:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    shown = f" {alert.signal} = {_fmt(value, alert.unit)}" if value is not None else ""
    why = reason or "back within thresholds"
    return AlertEvent(
        alert_id=alert.alert_id,
        event="resolved",
        status="resolved",
        at=now,
        rule=alert.rule,
        fingerprint=alert.fingerprint,
        signal=alert.signal,
        labels=dict(alert.labels),
        severity=alert.severity,
        value=value,
        threshold=alert.threshold,
        comparison=rule.comparison if rule else None,
        unit=alert.unit,
        message=f"RESOLVED {alert.rule}" + (f" [{labels}]" if labels else "") + f":{shown} {why}",
        runbook=alert.runbook,
        observed_at=observed_at,
        started_at=alert.started_at,
        fired_at=alert.fired_at,
        evaluations=alert.evaluations,
        acknowledged_by=alert.acknowledged_by,
        fault_started_at=alert.fault_started_at,
        details={"reason": reason} if reason else {},
    )


def _message(rule: AlertRule, labels: Mapping[str, str], severity: Severity, outcome: _Outcome) -> str:
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    head = f"{severity.upper()} {rule.name}" + (f" [{where}]" if where else "")
    threshold = rule.threshold_of(severity)
    if rule.kind == "absence":
        if outcome.value is None:
            what = f"no {rule.signal} signal at all"
        else:
            what = f"no {rule.signal} for {_fmt(outcome.value, 's')} (> {_fmt(threshold, 's')})"
    else:
        what = f"{rule.signal} = {_fmt(outcome.value, rule.unit)} {rule.comparison} {_fmt(threshold, rule.unit)}"
        worst = outcome.details.get("worst_labels")
        if worst:
            extra = {k: v for k, v in worst.items() if k not in labels}
            what += " at " + ", ".join(f"{k}={v}" for k, v in sorted(extra.items()))
        breaching = outcome.details.get("breaching", 0)
        if breaching > 1:
            what += f" ({breaching} signals breaching)"
    return f"{head}: {what}. {rule.summary}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s" and abs(value) >= 120:
        return f"{value / 60:.1f} min"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    return f"{value:.4g}" + (f" {unit}" if unit else "")
