"""Delivery to a real local SMTP server and a real local HTTP receiver; failures are recorded."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bikeshare.lake.store import Lake
from bikeshare.monitoring.alerts import AlertEvent, Signal, evaluate, fold_events, redact_url, redact_urls
from bikeshare.monitoring.cycle import run_alert_cycle
from bikeshare.monitoring.rules import load_rules
from bikeshare.monitoring.sinks import (
    EmailSink,
    LogSink,
    Notification,
    SinkError,
    WebhookSink,
    route,
    sinks_from_settings,
)
from bikeshare.monitoring.store import AlertStore
from bikeshare.settings import Settings

from .conftest import HttpReceiver, SmtpInbox

T0 = datetime(2023, 3, 2, 12, 0, tzinfo=UTC)


def fired_event() -> AlertEvent:
    (event,) = evaluate(
        [load_rules().get("data_delay")], [Signal("data_delay_s", 400.0, {"feed": "station_status"})], [], T0
    )
    return event


class Exploding:
    """A sink that always fails, as a broken integration would."""

    name = "exploding"

    def send(self, notification: Notification) -> None:
        raise RuntimeError("integration is down")


def test_webhook_posts_a_slack_compatible_body(http_receiver: HttpReceiver) -> None:
    event = fired_event()
    (routed,) = route([event], [WebhookSink(http_receiver.url, timeout_s=5)], runbook_url="https://ops/runbook.md")
    assert (routed.event, routed.sink, routed.ok, routed.error, routed.routed_event) == (
        "routed",
        "webhook",
        True,
        None,
        "fired",
    )
    (body,) = http_receiver.bodies
    assert body["text"].startswith("[CRITICAL] data_delay firing (feed=station_status)")
    assert "data_delay_s = 6.7 min > 5.0 min" in body["text"]
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in body["blocks"][2]["fields"]}
    assert fields["*Severity*"] == "critical"
    assert fields["*Alert*"] == event.alert_id
    assert fields["*Runbook*"] == "<https://ops/runbook.md#data-delay|data-delay>"


def test_webhook_retries_once_after_a_server_error(http_receiver: HttpReceiver) -> None:
    http_receiver.statuses = [503]
    (routed,) = route([fired_event()], [WebhookSink(http_receiver.url, retry_delay_s=0)])
    assert routed.ok is True
    assert len(http_receiver.bodies) == 2
    http_receiver.statuses = [500, 502]
    (failed,) = route([fired_event()], [WebhookSink(http_receiver.url, retry_delay_s=0)])
    assert failed.ok is False and "HTTP 502" in (failed.error or "")
    assert len(http_receiver.bodies) == 4


def test_webhook_does_not_retry_a_refused_body(http_receiver: HttpReceiver) -> None:
    http_receiver.statuses = [400]
    with pytest.raises(SinkError, match="HTTP 400: receiver says no"):
        WebhookSink(http_receiver.url, retry_delay_s=0).send(Notification(fired_event()))
    assert len(http_receiver.bodies) == 1


def test_email_is_delivered_to_a_real_smtp_server(smtp_inbox: SmtpInbox) -> None:
    sink = EmailSink(
        host=smtp_inbox.host, port=smtp_inbox.port, sender="alerts@bikeshare.test", recipients=["oncall@bikeshare.test"]
    )
    event = fired_event()
    (routed,) = route([event], [sink])
    assert routed.ok is True and routed.sink == "email"
    (message,) = smtp_inbox.messages
    assert smtp_inbox.recipients == [["oncall@bikeshare.test"]]
    assert message["Subject"] == "[CRITICAL] data_delay firing (feed=station_status)"
    assert message["X-Bikeshare-Alert"] == event.alert_id
    body = message.get_payload(decode=True).decode()
    assert "data_delay_s = 6.7 min > 5.0 min" in body
    assert "runbook: docs/monitoring_runbook.md#data-delay" in body


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failing_sink_is_recorded_and_does_not_stop_the_others(
    http_receiver: HttpReceiver, smtp_inbox: SmtpInbox, caplog: pytest.LogCaptureFixture
) -> None:
    sinks = [
        Exploding(),
        WebhookSink(f"http://127.0.0.1:{closed_port()}/nobody-listens", timeout_s=2, retry_delay_s=0),
        LogSink(),
        WebhookSink(http_receiver.url),
        EmailSink(host=smtp_inbox.host, port=smtp_inbox.port, sender="a@b.test", recipients=["c@d.test"]),
    ]
    ticks = iter(T0 + timedelta(seconds=s) for s in range(100))
    with caplog.at_level(logging.WARNING, logger="bikeshare.alerts"):
        routed = route([fired_event()], sinks, clock=lambda: next(ticks))
    assert [(r.sink, r.ok) for r in routed] == [
        ("exploding", False),
        ("webhook", False),
        ("log", True),
        ("webhook", True),
        ("email", True),
    ]
    assert routed[0].error == "RuntimeError: integration is down"
    assert "ConnectError" in (routed[1].error or "")
    assert [r.routed_at for r in routed] == [T0 + timedelta(seconds=s) for s in range(5)]
    assert len(http_receiver.bodies) == 1 and len(smtp_inbox.messages) == 1
    assert any("[CRITICAL] data_delay firing" in r.getMessage() for r in caplog.records)


def test_smtp_failure_is_a_sink_error(free_port: int) -> None:
    sink = EmailSink(host="127.0.0.1", port=free_port, sender="a@b.test", recipients=["c@d.test"], timeout_s=2)
    (routed,) = route([fired_event()], [sink])
    assert routed.ok is False and "SMTP 127.0.0.1" in (routed.error or "")


def test_route_on_fire_escalation_and_resolve_only(http_receiver: HttpReceiver) -> None:
    rules = [load_rules().get("endpoint_latency")]
    log: list[AlertEvent] = []
    sink = WebhookSink(http_receiver.url)
    routed_kinds = []
    for minute, value in enumerate([250.0, 260.0, 350.0, 250.0, 50.0]):
        open_alerts = [a for a in fold_events(log) if a.is_open]
        events = evaluate(rules, [Signal("endpoint_p95_ms", value)], open_alerts, T0 + timedelta(minutes=minute))
        log.extend(events)
        routed_kinds += [r.routed_event for r in route(events, [sink])]
    # fired, (no change), escalated, deescalated (not routed), resolved
    assert routed_kinds == ["fired", "escalated", "resolved"]
    assert [b["text"].split(":")[0] for b in http_receiver.bodies] == [
        "[WARNING] endpoint_latency firing",
        "[CRITICAL] endpoint_latency escalated",
        "[RESOLVED] endpoint_latency resolved",
    ]


def test_sinks_from_settings(tmp_path: object) -> None:
    assert [s.name for s in sinks_from_settings(Settings())] == ["log"]
    configured = Settings(
        alert_webhook_url="http://127.0.0.1:9/hook",
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=2525,
        alert_email_to=["oncall@x.test"],
        alert_sink_timeout_s=1.5,
    )
    sinks = sinks_from_settings(configured)
    assert [s.name for s in sinks] == ["log", "webhook", "email"]
    assert isinstance(sinks[2], EmailSink) and sinks[2].port == 2525 and sinks[2].timeout_s == 1.5


SECRET_PATH = "/services/T0001/B0002/s3cr3t-hook-token"


@pytest.fixture
def failing_webhook() -> Iterator[str]:
    """A webhook receiver on loopback that answers 500 and echoes the path it was called on, as some do."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            payload = f"no hook at {self.path} (http://{self.headers['Host']}{self.path})".encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_failing_webhook_never_writes_its_secret_path_to_errors_logs_or_the_lake(
    failing_webhook: str, lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    answering = f"{failing_webhook}{SECRET_PATH}?token=abc123"
    closed = f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"
    sinks = [WebhookSink(answering, retry_delay_s=0), WebhookSink(closed, timeout_s=2, retry_delay_s=0)]
    store = AlertStore(lake=lake, city="sf")
    rules = [load_rules().get("data_delay")]
    signal = Signal("data_delay_s", 400.0, {"feed": "station_status"})
    with caplog.at_level(logging.DEBUG):  # every logger, httpx's request lines included
        cycle = run_alert_cycle(store=store, rules=rules, signals=[signal], sinks=sinks, now=T0)
        with pytest.raises(SinkError) as refused:
            sinks[0].send(Notification(fired_event()))

    assert [(r.sink, r.ok) for r in cycle.routes] == [("webhook", False), ("webhook", False)]
    first, second = (r.error or "" for r in cycle.routes)
    assert f"webhook {failing_webhook}/… failed: HTTP 500" in first
    assert f"webhook http://127.0.0.1:{closed.split(':')[2].split('/')[0]}/… failed: ConnectError" in second
    con = lake.connect()
    stored = con.execute("SELECT * FROM alert_events").df()
    assert len(stored) == 3 and stored["error"].notna().sum() == 2  # fired + two routed rows
    for text in (
        first,
        second,
        str(refused.value),
        caplog.text,
        stored.to_csv(),
        *(r.getMessage() for r in caplog.records),
    ):
        assert "s3cr3t" not in text and "T0001" not in text and "abc123" not in text, text
    failures = [r.getMessage() for r in caplog.records if r.name == "bikeshare.alerts"]
    assert len(failures) == 2 and all("sink webhook failed" in m for m in failures)  # logged, redacted


def test_sink_urls_are_cut_to_scheme_and_host() -> None:
    assert redact_url("https://hooks.example.com/services/T1/B2/token") == "https://hooks.example.com/…"
    assert redact_url("https://user:pw@hooks.example.com:8443/x?token=1") == "https://hooks.example.com:8443/…"
    assert redact_url("https://hooks.example.com") == "https://hooks.example.com"
    assert redact_url("not a url") == "…"
    text = "ConnectError: https://a:b@hooks.example.com/services/T1/B2/token (see http://x.test/p?q=1)."
    assert redact_urls(text) == "ConnectError: https://hooks.example.com/… (see http://x.test/…)."
