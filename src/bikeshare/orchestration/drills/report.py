"""What a drill measured: one record per monitor evaluation, the detection and its routes, the table.

Time to detect is counted from the fault start to the evaluation that fired, in evaluations and in
replay minutes; time to route is the real seconds from firing to each sink's delivery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd

from bikeshare.monitoring.alerts import AlertEvent
from bikeshare.monitoring.job import MonitorResult
from bikeshare.orchestration.drills.plan import DETECTION_GOAL_CYCLES, RESPONDER, DrillPlan


@dataclass(frozen=True)
class CycleRecord:
    """One monitor evaluation of the drill."""

    index: int
    evaluated_at: pd.Timestamp
    phase: str  # warmup | fault | recovery
    watched: str
    events: tuple[str, ...]
    duration_s: float


@dataclass(frozen=True)
class Route:
    sink: str
    ok: bool
    seconds: float
    error: str | None


@dataclass(frozen=True)
class Detection:
    """The drill's alert: when it fired, where it went, when it was acknowledged and resolved."""

    alert_id: str
    rule: str
    severity: str | None
    message: str
    fired_at: pd.Timestamp
    ttd_min: float
    ttd_cycles: int
    routes: tuple[Route, ...]
    acknowledged_at: pd.Timestamp | None = None
    mtta_s: float | None = None
    resolved_at: pd.Timestamp | None = None


@dataclass
class DrillReport:
    """Everything a drill measured."""

    plan: DrillPlan
    fault_started_at: pd.Timestamp | None = None
    fault_cleared_at: pd.Timestamp | None = None
    cycles: list[CycleRecord] = field(default_factory=list)
    detection: Detection | None = None
    false_alarms: list[str] = field(default_factory=list)  # expected-rule alerts before the fault
    other_alerts: list[str] = field(default_factory=list)  # other rules that fired during the drill
    wall_s: float = 0.0
    setup_s: float = 0.0
    stopped: bool = False  # ended early by the caller's stop event (a signal)

    @property
    def detected(self) -> bool:
        return self.detection is not None

    @property
    def met_goal(self) -> bool:
        """Detected within two evaluations and delivered to every sink."""
        d = self.detection
        return bool(
            d is not None and d.ttd_cycles <= DETECTION_GOAL_CYCLES and d.routes and all(r.ok for r in d.routes)
        )

    def table(self) -> str:
        """The short report the CLI prints."""
        p = self.plan
        lines = [
            f"drill {p.kind}: {p.describe_fault()}",
            f"replay from {p.start:%Y-%m-%d %H:%M}Z, one evaluation every {p.cycle_min} replay min "
            f"(monitor window {p.cycle_min} min); setup {self.setup_s:.0f} s, drill {self.wall_s:.0f} s wall",
            "",
            f"{'cycle':>5}  {'replay':>5}  {'phase':<8}  {'watched signal':<42}  alerts",
        ]
        for c in self.cycles:
            events = "; ".join(c.events) or "-"
            lines.append(f"{c.index:>5}  {c.evaluated_at:%H:%M}  {c.phase:<8}  {c.watched:<42}  {events}")
        lines.append("")
        if self.fault_started_at is not None:
            lines.append(f"fault started   {self.fault_started_at:%H:%M}Z")
        if self.fault_cleared_at is not None:
            lines.append(f"fault cleared   {self.fault_cleared_at:%H:%M}Z")
        d = self.detection
        if d is None:
            lines.append(f"NOT DETECTED within {p.max_cycles} evaluations of the fault ({', '.join(p.expected_rules)})")
        else:
            goal = "met" if d.ttd_cycles <= DETECTION_GOAL_CYCLES else "MISSED"
            lines.append(
                f"fired           {d.fired_at:%H:%M}Z {d.rule} ({d.severity}), alert {d.alert_id}: {d.message}"
            )
            lines.append(
                f"time to detect  {d.ttd_cycles} evaluation(s), {d.ttd_min:.0f} replay min after the fault "
                f"(goal <= {DETECTION_GOAL_CYCLES} evaluations: {goal})"
            )
            routes = ", ".join(
                f"{r.sink} {r.seconds:.2f} s" + ("" if r.ok else f" FAILED ({r.error})") for r in d.routes
            )
            lines.append(f"time to route   {routes or 'no sink'}")
            if d.mtta_s is not None and d.acknowledged_at is not None:
                lines.append(
                    f"acknowledged    {d.acknowledged_at:%H:%M}Z by {RESPONDER}: MTTA {d.mtta_s / 60:.1f} min "
                    "(simulated responder, --ack-after-min)"
                )
            else:
                lines.append("acknowledged    no (MTTA not measured; --ack-after-min simulates a responder)")
            if d.resolved_at is not None:
                lines.append(f"resolved        {d.resolved_at:%H:%M}Z")
            else:
                lines.append(f"resolved        no, within {p.recovery_cycles} evaluations after the fault was cleared")
        if self.stopped:
            lines.append("stopped early (signal): the drill did not run to the end")
        if self.false_alarms:
            lines.append(f"before the fault (false alarms): {'; '.join(self.false_alarms)}")
        if self.other_alerts:
            lines.append(f"other alerts during the drill: {'; '.join(self.other_alerts)}")
        return "\n".join(lines)


def record_cycle(plan: DrillPlan, report: DrillReport, result: MonitorResult, *, index: int, phase: str) -> CycleRecord:
    events = []
    for event in result.cycle.events:
        what = f"{event.event} {event.fingerprint}" + (f" ({event.severity})" if event.event != "resolved" else "")
        events.append(what)
        expected = event.rule in plan.expected_rules
        if event.event == "fired":
            if expected and report.fault_started_at is None:
                report.false_alarms.append(f"{pd.Timestamp(event.at):%H:%M} {event.fingerprint}")
            elif expected and report.detection is None:
                report.detection = _detection(event, result, report, index=index)
            elif not expected:
                report.other_alerts.append(f"{pd.Timestamp(event.at):%H:%M} {event.fingerprint}")
        if event.event == "resolved" and report.detection is not None and event.alert_id == report.detection.alert_id:
            report.detection = replace(report.detection, resolved_at=pd.Timestamp(event.at))
    return CycleRecord(
        index=index,
        evaluated_at=result.evaluated_at,
        phase=phase,
        watched=_watched(plan, result),
        events=tuple(events),
        duration_s=result.duration_s,
    )


def _detection(event: AlertEvent, result: MonitorResult, report: DrillReport, *, index: int) -> Detection:
    fault = report.fault_started_at
    assert fault is not None
    fired = pd.Timestamp(event.at)
    before = sum(1 for c in report.cycles if c.evaluated_at <= fault)
    routes = tuple(
        Route(
            sink=r.sink or "?",
            ok=bool(r.ok),
            seconds=(pd.Timestamp(r.routed_at) - fired).total_seconds() if r.routed_at else math.nan,
            error=r.error,
        )
        for r in result.cycle.routes
        if r.alert_id == event.alert_id and r.routed_event == "fired"
    )
    return Detection(
        alert_id=event.alert_id,
        rule=event.rule,
        severity=event.severity,
        message=event.message,
        fired_at=fired,
        ttd_min=(fired - fault).total_seconds() / 60,
        ttd_cycles=index - before,
        routes=routes,
    )


def _watched(plan: DrillPlan, result: MonitorResult) -> str:
    if plan.kind == "feed-outage":
        age = result.metric("data_quality", "seconds_since_last_commit", subject="station_status")
        return f"last commit {age / 60:.0f} min ago" if age is not None else "no live commit yet"
    if plan.kind == "drift":
        values = [s for s in result.signals if s.name == "feature_psi" and s.value is not None]
        worst = max(values, key=lambda s: s.value or 0.0, default=None)
        prediction = [s.value for s in result.signals if s.name == "prediction_psi" and s.value is not None]
        head = f"max PSI {worst.value:.2f} ({worst.labels['feature']})" if worst else "PSI n/a"
        return head + (f", pred {max(prediction):.2f}" if prediction else "")
    p95 = result.signal("endpoint_p95_ms", route="/invocations")
    return f"/invocations p95 {p95.value:.0f} ms" if p95 is not None and p95.value is not None else "p95 n/a"
