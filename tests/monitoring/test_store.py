"""The alert store through a real temp lake and its DuckDB views; ack, MTTA, CLI; drift tables."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import ALERT_EVENTS
from bikeshare.monitoring.alerts import AlertStateError, Signal, evaluate, fold_events
from bikeshare.monitoring.baseline import build_baselines
from bikeshare.monitoring.cycle import CycleResult, run_alert_cycle
from bikeshare.monitoring.drift import drift_table
from bikeshare.monitoring.rules import load_rules
from bikeshare.monitoring.sinks import EmailSink, LogSink, WebhookSink
from bikeshare.monitoring.store import (
    AlertNotFoundError,
    AlertStore,
    ack_alert,
    read_baselines,
    write_baselines,
    write_drift_scores,
)
from bikeshare.settings import Settings

from .conftest import HttpReceiver, SmtpInbox

T0 = datetime(2023, 3, 2, 23, 50, tzinfo=UTC)  # cycles cross midnight: two dt partitions
MIN = timedelta(minutes=1)
FEED = {"feed": "station_status"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def feed_alive(at: datetime) -> Signal:
    return Signal("feed_snapshot_committed", 1.0, FEED, observed_at=at)


def test_events_round_trip_and_the_views_agree_with_the_fold(lake: Lake) -> None:
    store = AlertStore(lake, city="sf")
    rules = load_rules()
    script = [
        (T0, [Signal("data_delay_s", 200.0, FEED), Signal("endpoint_p95_ms", 350.0), feed_alive(T0)]),
        (T0 + 5 * MIN, [Signal("data_delay_s", 400.0, FEED), Signal("endpoint_p95_ms", 360.0), feed_alive(T0)]),
        (T0 + 15 * MIN, [Signal("data_delay_s", 30.0, FEED), Signal("endpoint_p95_ms", 350.0), feed_alive(T0)]),
    ]
    written = []
    for now, signals in script:
        events = evaluate(rules, signals, store.open_alerts(), now)
        store.append(events)
        written += events
    # fired (warning), escalated, resolved for data_delay; fired once for the endpoint; the feed is
    # exactly 15 min old at the last cycle, which is not beyond the 15 min warning.
    assert [(e.rule, e.event) for e in written] == [
        ("data_delay", "fired"),
        ("endpoint_latency", "fired"),
        ("data_delay", "escalated"),
        ("data_delay", "resolved"),
    ]
    assert store.events() == written  # every field survives Parquet and back
    assert lake.partitions(ALERT_EVENTS, city="sf") == ["2023-03-02", "2023-03-03"]
    assert AlertStore(lake, city="nyc").events() == []

    from_view = {a.alert_id: a for a in store.alerts(include_resolved=True)}
    assert from_view == {a.alert_id: a for a in fold_events(written)}
    assert sorted((a.rule, a.status, a.severity) for a in from_view.values()) == [
        ("data_delay", "resolved", "critical"),
        ("endpoint_latency", "firing", "critical"),
    ]
    assert [a.rule for a in store.open_alerts()] == ["endpoint_latency"]
    delay = next(a for a in from_view.values() if a.rule == "data_delay")
    assert (delay.started_at, delay.fired_at, delay.resolved_at, delay.value) == (T0, T0, T0 + 15 * MIN, 30.0)
    assert store.events(alert_id=delay.alert_id) == [e for e in written if e.alert_id == delay.alert_id]


def test_cycle_stores_routes_and_ack_gives_mtta(lake: Lake, http_receiver: HttpReceiver, smtp_inbox: SmtpInbox) -> None:
    store = AlertStore(lake, city="sf")
    rules = [load_rules().get("data_delay"), load_rules().get("dead_feed")]
    sinks = [
        LogSink(),
        WebhookSink(f"http://127.0.0.1:{closed_port()}/down", timeout_s=2, retry_delay_s=0),
        WebhookSink(http_receiver.url),
        EmailSink(host=smtp_inbox.host, port=smtp_inbox.port, sender="a@b.test", recipients=["oncall@b.test"]),
    ]
    routed_clock = iter(T0 + timedelta(minutes=20, seconds=s) for s in range(100))

    def cycle(now: datetime, delay: float, last_commit: datetime, **kwargs: object) -> CycleResult:
        return run_alert_cycle(
            store=store,
            rules=rules,
            signals=[Signal("data_delay_s", delay, FEED), feed_alive(last_commit)],
            sinks=sinks,
            now=now,
            clock=lambda: next(routed_clock),
            **kwargs,  # type: ignore[arg-type]
        )

    assert cycle(T0, 10.0, T0).events == []
    fault = T0 + 12 * MIN
    first = cycle(T0 + 20 * MIN, 90.0, T0 + 3 * MIN, fault_started_at=fault)  # 17 min silent: dead_feed warning
    assert [(e.rule, e.event, e.severity) for e in first.fired] == [("dead_feed", "fired", "warning")]
    assert [(r.sink, r.ok) for r in first.routes] == [
        ("log", True),
        ("webhook", False),
        ("webhook", True),
        ("email", True),
    ]
    assert len(first.failed_routes) == 1
    again = cycle(T0 + 25 * MIN, 90.0, T0 + 3 * MIN)  # still silent, still warning: de-duplicated
    assert again.events == [] and again.routes == []

    (alert,) = store.open_alerts()
    assert (alert.rule, alert.status, alert.ttd_s) == ("dead_feed", "firing", 8 * 60.0)
    view = lake.connect().sql("SELECT routed_at, time_to_route_s, routes_ok, routes_failed FROM alerts").fetchall()
    assert view == [(T0 + timedelta(minutes=20, seconds=0), 0.0, 3, 1)]

    ack = ack_alert(store=store, alert_id=alert.alert_id, by="ana", at=T0 + 29 * MIN)
    assert ack.mtta_s == 9 * 60.0
    with pytest.raises(AlertStateError, match="already acknowledged"):
        ack_alert(store=store, alert_id=alert.alert_id, by="bo", at=T0 + 30 * MIN)
    with pytest.raises(AlertNotFoundError, match="no alert 'nope'"):
        ack_alert(store=store, alert_id="nope", by="bo", at=T0)

    resolved = cycle(T0 + 40 * MIN, 20.0, T0 + 39 * MIN)
    assert [(e.rule, e.event) for e in resolved.events] == [("dead_feed", "resolved")]
    assert [r.routed_event for r in resolved.routes] == ["resolved"] * 4
    final = store.get(alert.alert_id)
    assert (final.status, final.mtta_s, final.acknowledged_by, final.resolved_at) == (
        "resolved",
        540.0,
        "ana",
        T0 + 40 * MIN,
    )
    assert len(http_receiver.bodies) == 2 and len(smtp_inbox.messages) == 2
    assert store.alerts(include_resolved=True) == fold_events(store.events())
    routes = lake.connect().sql("SELECT sink, routed_event, ok FROM alert_routes ORDER BY routed_at").fetchall()
    assert [r for r in routes if not r[2]] == [("webhook", "fired", False), ("webhook", "resolved", False)]


def test_alerts_cli_list_and_ack(settings: Settings, lake: Lake) -> None:
    store = AlertStore(lake, city=settings.city)
    events = evaluate([load_rules().get("endpoint_latency")], [Signal("endpoint_p95_ms", 420.0)], [], T0)
    store.append(events)
    env = {"BIKESHARE_LAKE_URI": settings.lake_uri, "BIKESHARE_STATE_DIR": str(settings.state_dir)}
    runner = CliRunner()
    listed = runner.invoke(app, ["alerts", "list", "--format", "json"], env=env)
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert (row["alert_id"], row["status"], row["severity"], row["value"]) == (
        events[0].alert_id,
        "firing",
        "critical",
        420.0,
    )
    table = runner.invoke(app, ["alerts", "list"], env=env)
    assert events[0].alert_id in table.output and "endpoint_latency" in table.output

    acked = runner.invoke(app, ["alerts", "ack", events[0].alert_id, "--by", "ana"], env=env)
    assert acked.exit_code == 0, acked.output
    assert f"acknowledged {events[0].alert_id}" in acked.output and "by ana" in acked.output
    assert store.get(events[0].alert_id).acknowledged_by == "ana"
    twice = runner.invoke(app, ["alerts", "ack", events[0].alert_id], env=env)
    assert twice.exit_code == 1 and "already acknowledged by ana" in twice.output
    unknown = runner.invoke(app, ["alerts", "ack", "feedbeef"], env=env)
    assert unknown.exit_code == 1 and "no alert 'feedbeef'" in unknown.output

    store.append(
        evaluate(
            [load_rules().get("endpoint_latency")], [Signal("endpoint_p95_ms", 20.0)], store.open_alerts(), T0 + MIN
        )
    )
    assert "no open alerts" in runner.invoke(app, ["alerts", "list"], env=env).output
    everything = json.loads(runner.invoke(app, ["alerts", "list", "--all", "--format", "json"], env=env).output)
    assert [r["status"] for r in everything] == ["resolved"]


def test_alerts_rules_cli_validates_the_configured_file(settings: Settings, tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "rules.toml"
    bad.write_text('[[rules]]\nname = "x"\nsignal = "s"\nsummary = "s"\nrunbook = "r"\n')
    runner = CliRunner()
    env = {"BIKESHARE_LAKE_URI": settings.lake_uri}
    ok = runner.invoke(app, ["alerts", "rules"], env=env)
    assert ok.exit_code == 0 and "data_delay: data_delay_s: warning > 180 s, critical > 300 s" in ok.output
    failed = runner.invoke(app, ["alerts", "rules"], env={**env, "BIKESHARE_ALERT_RULES_PATH": str(bad)})
    assert failed.exit_code == 1
    assert "rules[0] (x).(rule): Value error, set a warning or a critical threshold" in failed.output


def test_baselines_and_drift_scores_in_the_lake(lake: Lake) -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"temp": rng.normal(15, 5, 2000), "region": rng.choice(["a", "b"], 2000)})
    baselines = build_baselines(train)
    created = datetime(2023, 3, 1, 6, tzinfo=UTC)
    path = write_baselines(
        lake, baselines, city="sf", model_name="sf-bikes", model_version="3", target="bikes", created_at=created
    )
    assert path is not None
    again = write_baselines(
        lake, baselines, city="sf", model_name="sf-bikes", model_version="3", target="bikes", created_at=created
    )
    assert again is None  # a model version's baselines are written once
    loaded = read_baselines(lake, city="sf", model_name="sf-bikes", model_version="3", target="bikes")
    assert loaded == baselines
    assert read_baselines(lake, city="sf", model_name="sf-bikes", model_version="4", target="bikes") == {}

    live = pd.DataFrame({"temp": rng.normal(25, 5, 500), "region": rng.choice(["a", "b"], 500)})
    for hours, frame in ((1, train.sample(500, random_state=1)), (2, live)):
        evaluated = created + timedelta(hours=hours)
        write_drift_scores(
            lake,
            drift_table(loaded, frame),
            city="sf",
            evaluated_at=evaluated,
            window_start=evaluated - timedelta(hours=1),
            window_end=evaluated,
            model_name="sf-bikes",
            model_version="3",
            target="bikes",
        )
    con = lake.connect()
    assert con.sql("SELECT count(*) FROM drift_scores").fetchall() == [(4,)]
    latest = con.sql("SELECT feature, drifting, evaluated_at FROM drift_latest ORDER BY feature").fetchall()
    assert latest == [("region", False, created + timedelta(hours=2)), ("temp", True, created + timedelta(hours=2))]
    with pytest.raises(ValueError, match="lack columns"):
        write_drift_scores(
            lake,
            pd.DataFrame({"feature": ["x"]}),
            city="sf",
            evaluated_at=created,
            window_start=created,
            window_end=created,
            model_name="m",
            model_version="1",
            target="bikes",
        )
