"""One alerting cycle: read open alerts, evaluate the rules, store the events, route, store routes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bikeshare.monitoring.alerts import AlertEvent, Signal, evaluate
from bikeshare.monitoring.rules import AlertRule, RuleSet
from bikeshare.monitoring.sinks import DEFAULT_RUNBOOK_URL, Sink, route
from bikeshare.monitoring.store import AlertStore


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did: the lifecycle events and one ``routed`` event per sink attempt."""

    events: list[AlertEvent]
    routes: list[AlertEvent]

    @property
    def fired(self) -> list[AlertEvent]:
        return [e for e in self.events if e.event == "fired"]

    @property
    def failed_routes(self) -> list[AlertEvent]:
        return [r for r in self.routes if not r.ok]


def run_alert_cycle(
    *,
    store: AlertStore,
    rules: RuleSet | Iterable[AlertRule],
    signals: Sequence[Signal],
    sinks: Sequence[Sink],
    now: datetime,
    fault_started_at: datetime | None = None,
    clock: Callable[[], datetime] | None = None,
    runbook_url: str = DEFAULT_RUNBOOK_URL,
) -> CycleResult:
    """Evaluate ``signals`` at ``now`` against the store's open alerts, then store and route the events.

    Lifecycle events are stored before routing, so a slow or broken sink can delay a notification
    but never lose the alert. ``clock`` gives ``routed_at`` (default: the wall clock).
    """
    events = evaluate(rules, signals, store.open_alerts(), now, fault_started_at=fault_started_at)
    store.append(events)
    routes = route(events, sinks, clock=clock, runbook_url=runbook_url)
    store.append(routes)
    return CycleResult(events=events, routes=routes)
