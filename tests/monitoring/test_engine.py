"""The alert engine: each default rule firing and resolving, de-duplication, escalation, silence."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bikeshare.monitoring.alerts import (
    Alert,
    AlertEvent,
    AlertStateError,
    Signal,
    acknowledge,
    evaluate,
    fingerprint,
    fold_events,
)
from bikeshare.monitoring.rules import AlertRule, RuleSet, load_rules

T0 = datetime(2023, 3, 2, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


class Loop:
    """Feeds the engine cycle after cycle, keeping the event log in memory."""

    def __init__(self, rules: RuleSet | Sequence[AlertRule]) -> None:
        self.rules = rules
        self.log: list[AlertEvent] = []

    def open(self) -> list[Alert]:
        return [a for a in fold_events(self.log) if a.is_open]

    def cycle(self, signals: Sequence[Signal], now: datetime, **kwargs: object) -> list[AlertEvent]:
        events = evaluate(self.rules, signals, self.open(), now, **kwargs)  # type: ignore[arg-type]
        self.log.extend(events)
        return events

    def ack(self, alert_id: str, *, by: str, at: datetime) -> AlertEvent:
        alert = next(a for a in fold_events(self.log) if a.alert_id == alert_id)
        event = acknowledge(alert, by=by, at=at)
        self.log.append(event)
        return event


def kinds(events: Sequence[AlertEvent]) -> list[tuple[str, str, str | None]]:
    return [(e.event, e.rule, e.severity) for e in events]


# rule -> (signal name, labels, warning value or None, critical value or None, healthy value)
SEED_CASES = {
    "data_delay": ("data_delay_s", {"feed": "station_status"}, 200.0, 400.0, 60.0),
    "endpoint_latency": ("endpoint_p95_ms", {"route": "invocations"}, 250.0, 350.0, 40.0),
    "feature_drift": ("feature_psi", {"target": "bikes", "feature": "temp"}, 0.25, 0.35, 0.05),
    "prediction_drift": ("prediction_psi", {"target": "docks"}, 0.25, 0.35, 0.02),
    "inference_failures": ("inference_failure_rate", {}, None, 0.02, 0.0),
    "model_pr_auc": ("model_pr_auc_24h", {"target": "bikes"}, 0.65, None, 0.78),
    "model_f1": ("model_f1_24h", {"target": "docks"}, 0.50, None, 0.61),
}


@pytest.mark.parametrize("rule_name", sorted(SEED_CASES))
def test_each_default_rule_fires_and_resolves(rule_name: str) -> None:
    rules = load_rules()
    signal, labels, warning, critical, healthy = SEED_CASES[rule_name]
    loop = Loop([rules.get(rule_name)])
    assert loop.cycle([Signal(signal, healthy, labels)], T0) == []

    first_bad = warning if warning is not None else critical
    fired = loop.cycle([Signal(signal, first_bad, labels)], T0 + 5 * MIN)
    assert kinds(fired) == [("fired", rule_name, "warning" if warning is not None else "critical")]
    assert fired[0].labels == labels if rule_name != "feature_drift" else {"target": "bikes"}
    assert fired[0].value == first_bad
    assert fired[0].runbook == rules.get(rule_name).runbook

    if warning is not None and critical is not None:
        escalated = loop.cycle([Signal(signal, critical, labels)], T0 + 10 * MIN)
        assert kinds(escalated) == [("escalated", rule_name, "critical")]
        assert escalated[0].alert_id == fired[0].alert_id

    resolved = loop.cycle([Signal(signal, healthy, labels)], T0 + 15 * MIN)
    assert kinds(resolved) == [("resolved", rule_name, resolved[0].severity)]
    assert resolved[0].alert_id == fired[0].alert_id
    assert loop.open() == []


def test_a_condition_still_firing_gives_no_new_alert() -> None:
    loop = Loop(load_rules())
    delay = [Signal("data_delay_s", 200.0, {"feed": "station_status"})]
    feed = [Signal("feed_snapshot_committed", 1.0, {"feed": "station_status"}, observed_at=T0)]
    assert kinds(loop.cycle(delay + feed, T0)) == [("fired", "data_delay", "warning")]
    for minute in (1, 2, 3):
        assert loop.cycle([Signal("data_delay_s", 210.0 + minute, {"feed": "station_status"}), *feed], T0) == []
    assert len([a for a in fold_events(loop.log) if a.rule == "data_delay"]) == 1
    # a different feed is a different alert
    other = loop.cycle([Signal("data_delay_s", 200.0, {"feed": "station_information"}), *feed], T0)
    assert [e.fingerprint for e in other] == ["data_delay{feed=station_information}"]


def test_escalation_is_an_update_and_deescalation_is_recorded() -> None:
    loop = Loop([load_rules().get("endpoint_latency")])
    fired = loop.cycle([Signal("endpoint_p95_ms", 350.0)], T0)
    assert kinds(fired) == [("fired", "endpoint_latency", "critical")]
    down = loop.cycle([Signal("endpoint_p95_ms", 250.0)], T0 + MIN)
    assert kinds(down) == [("deescalated", "endpoint_latency", "warning")]
    up = loop.cycle([Signal("endpoint_p95_ms", 320.0)], T0 + 2 * MIN)
    assert kinds(up) == [("escalated", "endpoint_latency", "critical")]
    assert {e.alert_id for e in fired + down + up} == {fired[0].alert_id}
    (alert,) = loop.open()
    assert (alert.status, alert.severity, alert.value, alert.fired_at) == ("firing", "critical", 320.0, T0)


def test_a_missing_signal_neither_fires_nor_resolves() -> None:
    loop = Loop([load_rules().get("inference_failures")])
    assert loop.cycle([Signal("inference_failure_rate", None)], T0) == []
    fired = loop.cycle([Signal("inference_failure_rate", 0.5)], T0 + MIN)
    assert kinds(fired) == [("fired", "inference_failures", "critical")]
    assert loop.cycle([], T0 + 2 * MIN) == []
    assert loop.cycle([Signal("inference_failure_rate", float("nan"))], T0 + 3 * MIN) == []
    assert [a.status for a in loop.open()] == ["firing"]
    assert kinds(loop.cycle([Signal("inference_failure_rate", 0.0)], T0 + 4 * MIN))[0][0] == "resolved"


def test_dead_feed_fires_on_silence_and_resolves_on_a_new_snapshot() -> None:
    loop = Loop([load_rules().get("dead_feed")])
    label = {"feed": "station_status"}
    last = T0
    assert loop.cycle([Signal("feed_snapshot_committed", 1.0, label, observed_at=last)], T0 + 10 * MIN) == []
    # 16 min of silence: warning (> 15 min); 31 min: critical (> 30 min)
    warned = loop.cycle([Signal("feed_snapshot_committed", 1.0, label, observed_at=last)], T0 + 16 * MIN)
    assert kinds(warned) == [("fired", "dead_feed", "warning")]
    assert warned[0].value == pytest.approx(16 * 60)
    assert warned[0].fingerprint == "dead_feed{feed=station_status}"
    crit = loop.cycle([Signal("feed_snapshot_committed", 1.0, label, observed_at=last)], T0 + 31 * MIN)
    assert kinds(crit) == [("escalated", "dead_feed", "critical")]
    # another feed's snapshots do not count
    other = Signal("feed_snapshot_committed", 1.0, {"feed": "station_information"}, observed_at=T0 + 31 * MIN)
    assert loop.cycle([other], T0 + 32 * MIN) == []
    back = loop.cycle([Signal("feed_snapshot_committed", 1.0, label, observed_at=T0 + 33 * MIN)], T0 + 34 * MIN)
    assert kinds(back) == [("resolved", "dead_feed", "critical")]


def test_dead_feed_fires_critical_when_the_feed_was_never_seen() -> None:
    loop = Loop([load_rules().get("dead_feed")])
    events = loop.cycle([], T0)
    assert kinds(events) == [("fired", "dead_feed", "critical")]
    assert events[0].value is None
    assert "no feed_snapshot_committed signal at all" in events[0].message
    assert loop.cycle([], T0 + MIN) == []


def test_for_evaluations_keeps_an_alert_pending_until_it_has_held() -> None:
    rule = AlertRule(
        name="slow", signal="endpoint_p95_ms", warning=200.0, for_evaluations=3, summary="slow", runbook="x"
    )
    loop = Loop([rule])
    first = loop.cycle([Signal("endpoint_p95_ms", 250.0)], T0)
    second = loop.cycle([Signal("endpoint_p95_ms", 260.0)], T0 + MIN)
    assert kinds(first + second) == [("pending", "slow", "warning")] * 2
    assert [e.evaluations for e in first + second] == [1, 2]
    assert loop.cycle([], T0 + 2 * MIN) == []  # missing: still pending, count kept
    fired = loop.cycle([Signal("endpoint_p95_ms", 270.0)], T0 + 3 * MIN)
    assert kinds(fired) == [("fired", "slow", "warning")]
    assert fired[0].alert_id == first[0].alert_id
    assert (fired[0].started_at, fired[0].fired_at, fired[0].evaluations) == (T0, T0 + 3 * MIN, 3)


def test_a_pending_alert_that_clears_is_resolved_without_firing() -> None:
    rule = AlertRule(name="slow", signal="p95", warning=200.0, for_evaluations=2, summary="slow", runbook="x")
    loop = Loop([rule])
    loop.cycle([Signal("p95", 250.0)], T0)
    cleared = loop.cycle([Signal("p95", 100.0)], T0 + MIN)
    assert kinds(cleared) == [("resolved", "slow", "warning")]
    assert cleared[0].fired_at is None
    (alert,) = fold_events(loop.log)
    assert alert.status == "resolved" and alert.fired_at is None


def test_group_by_makes_one_alert_per_target_with_the_worst_feature() -> None:
    loop = Loop([load_rules().get("feature_drift")])
    signals = [
        Signal("feature_psi", 0.25, {"target": "bikes", "feature": "temp"}),
        Signal("feature_psi", 0.31, {"target": "bikes", "feature": "hour"}),
        Signal("feature_psi", 0.05, {"target": "docks", "feature": "temp"}),
    ]
    (event,) = loop.cycle(signals, T0)
    assert (event.event, event.severity, event.value) == ("fired", "critical", 0.31)
    assert event.fingerprint == "feature_drift{target=bikes}"
    assert event.details == {"signals": 2, "breaching": 2, "worst_labels": {"target": "bikes", "feature": "hour"}}
    assert "feature=hour" in event.message and "2 signals breaching" in event.message
    # the worst feature changing does not make a new alert
    assert loop.cycle([Signal("feature_psi", 0.4, {"target": "bikes", "feature": "temp"})], T0 + MIN) == []


def test_lower_is_worse_rules_pick_the_minimum() -> None:
    loop = Loop([load_rules().get("model_f1")])
    (event,) = loop.cycle(
        [Signal("model_f1_24h", 0.6, {"target": "bikes"}), Signal("model_f1_24h", 0.4, {"target": "docks"})], T0
    )
    assert (event.fingerprint, event.value) == ("model_f1{target=docks}", 0.4)


def test_acknowledge_records_mtta_and_refuses_bad_states() -> None:
    loop = Loop([load_rules().get("data_delay")])
    (fired,) = loop.cycle([Signal("data_delay_s", 400.0)], T0)
    with pytest.raises(AlertStateError, match="before the alert fired"):
        loop.ack(fired.alert_id, by="ana", at=T0 - MIN)
    with pytest.raises(ValueError, match="who acknowledges"):
        loop.ack(fired.alert_id, by=" ", at=T0)
    ack = loop.ack(fired.alert_id, by="ana", at=T0 + 7 * MIN)
    assert (ack.event, ack.status, ack.mtta_s, ack.acknowledged_by) == ("acknowledged", "acknowledged", 420.0, "ana")
    with pytest.raises(AlertStateError, match="already acknowledged by ana"):
        loop.ack(fired.alert_id, by="bo", at=T0 + 8 * MIN)
    # still firing after the ack: no new event; acknowledged alerts still resolve
    assert loop.cycle([Signal("data_delay_s", 350.0)], T0 + 10 * MIN) == []
    (resolved,) = loop.cycle([Signal("data_delay_s", 10.0)], T0 + 20 * MIN)
    assert resolved.event == "resolved" and resolved.acknowledged_by == "ana"
    with pytest.raises(AlertStateError, match="already resolved"):
        loop.ack(fired.alert_id, by="ana", at=T0 + 30 * MIN)
    (alert,) = fold_events(loop.log)
    assert (alert.mtta_s, alert.acknowledged_at, alert.resolved_at) == (420.0, T0 + 7 * MIN, T0 + 20 * MIN)


def test_pending_alerts_cannot_be_acknowledged() -> None:
    rule = AlertRule(name="slow", signal="p95", warning=200.0, for_evaluations=2, summary="slow", runbook="x")
    loop = Loop([rule])
    (pending,) = loop.cycle([Signal("p95", 250.0)], T0)
    with pytest.raises(AlertStateError, match="pending"):
        loop.ack(pending.alert_id, by="ana", at=T0 + MIN)


def test_time_to_detect_is_recorded_when_the_fault_start_is_known() -> None:
    loop = Loop([load_rules().get("endpoint_latency")])
    (fired,) = loop.cycle([Signal("endpoint_p95_ms", 400.0)], T0 + 3 * MIN, fault_started_at=T0)
    assert (fired.fault_started_at, fired.ttd_s) == (T0, 180.0)
    (alert,) = loop.open()
    assert alert.ttd_s == 180.0


def test_alerts_of_a_removed_rule_and_duplicates_are_resolved() -> None:
    rules = load_rules()
    loop = Loop([rules.get("data_delay"), rules.get("endpoint_latency")])
    loop.cycle([Signal("data_delay_s", 400.0), Signal("endpoint_p95_ms", 400.0)], T0)
    loop.rules = [rules.get("endpoint_latency")]
    events = loop.cycle([Signal("endpoint_p95_ms", 400.0)], T0 + MIN)
    assert kinds(events) == [("resolved", "data_delay", "critical")]
    assert events[0].details == {"reason": "rule no longer configured"}
    (open_alert,) = loop.open()
    twin = Alert(
        alert_id="twin",
        rule=open_alert.rule,
        fingerprint=open_alert.fingerprint,
        status="firing",
        severity="critical",
        started_at=T0 + MIN,
        fired_at=T0 + MIN,
    )
    events = evaluate(loop.rules, [Signal("endpoint_p95_ms", 400.0)], [open_alert, twin], T0 + 2 * MIN)
    assert [(e.alert_id, e.event) for e in events] == [("twin", "resolved")]
    assert events[0].details["reason"] == f"duplicate of alert {open_alert.alert_id}"


def test_signals_and_times_are_validated() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        evaluate([], [], [], datetime(2023, 1, 1))  # naive on purpose
    with pytest.raises(ValueError, match="not a number"):
        Signal("x", "fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        Signal("x", 1.0, {"feed": 3})  # type: ignore[dict-item]
    assert Signal("x", float("nan")).value is None
    assert fingerprint("r", {"b": "2", "a": "1"}) == "r{a=1,b=2}"
