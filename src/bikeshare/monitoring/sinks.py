"""Where alerts go: a log, a Slack-compatible webhook, and email over SMTP.

:func:`route` sends each ``fired``, ``escalated`` and ``resolved`` event (a resolve only if the
alert had fired) to every sink, one after the other. A sink that fails (raises) never stops the
others; every attempt becomes a ``routed`` event with the sink's name, ``ok`` and the error text,
for the alert store. A sink URL is shown as scheme and host only (its path is the webhook's secret):
in errors, in log lines and in ``alert_events``.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from bikeshare.monitoring.alerts import ROUTED_EVENTS, AlertEvent, as_utc, redact_url, redact_urls
from bikeshare.settings import Settings

LOGGER_NAME = "bikeshare.alerts"
DEFAULT_RUNBOOK_URL = "docs/monitoring_runbook.md"


class SinkError(RuntimeError):
    """A sink could not deliver a notification."""


@dataclass(frozen=True)
class Notification:
    """What a sink delivers for one lifecycle event."""

    event: AlertEvent
    runbook_url: str = DEFAULT_RUNBOOK_URL

    @property
    def kind(self) -> str:
        return self.event.event

    @property
    def title(self) -> str:
        e = self.event
        state = "RESOLVED" if e.event == "resolved" else (e.severity or "alert").upper()
        verb = {"fired": "firing", "escalated": "escalated", "resolved": "resolved"}.get(e.event, e.event)
        labels = ", ".join(f"{k}={v}" for k, v in sorted(e.labels.items()))
        return f"[{state}] {e.rule} {verb}" + (f" ({labels})" if labels else "")

    @property
    def runbook_link(self) -> str:
        return f"{self.runbook_url}#{self.event.runbook}" if self.event.runbook else self.runbook_url

    @property
    def text(self) -> str:
        """Plain-text body: title, message, ids and the runbook link."""
        e = self.event
        lines = [
            self.title,
            e.message,
            f"alert {e.alert_id} at {e.at.isoformat()}",
            f"runbook: {self.runbook_link}",
        ]
        return "\n".join(lines)

    def slack_body(self) -> dict[str, Any]:
        """Slack incoming-webhook JSON: ``text`` (fallback) plus Block Kit ``blocks``."""
        e = self.event
        fields = [
            ("Severity", e.severity or "-"),
            ("Status", e.status),
            ("Value", "n/a" if e.value is None else f"{e.value:.4g} {e.unit}".strip()),
            ("Threshold", "-" if e.threshold is None else f"{e.comparison or ''} {e.threshold:g} {e.unit}".strip()),
            ("Alert", e.alert_id),
            ("Runbook", f"<{self.runbook_link}|{e.runbook or 'runbook'}>"),
        ]
        return {
            "text": f"{self.title}: {e.message}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": e.message}},
                {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{e.fingerprint} at {e.at.isoformat()}"}]},
            ],
        }


class Sink(Protocol):
    """Anything with a ``name`` that can deliver a notification, raising when it cannot."""

    name: str

    def send(self, notification: Notification) -> None: ...


@dataclass
class LogSink:
    """Writes each notification to the ``bikeshare.alerts`` logger (critical as ERROR)."""

    name: str = "log"
    logger_name: str = LOGGER_NAME

    def send(self, notification: Notification) -> None:
        e = notification.event
        if e.event == "resolved":
            level = logging.INFO
        else:
            level = logging.ERROR if e.severity == "critical" else logging.WARNING
        logging.getLogger(self.logger_name).log(level, "%s | %s", notification.title, e.message)


@dataclass
class WebhookSink:
    """POSTs the Slack-compatible body; retries once on a network error, a 5xx or a 429.

    Its errors name the URL as :func:`~bikeshare.monitoring.alerts.redact_url` shows it, and the
    secret parts of the URL are cut from whatever the receiver answered.
    """

    url: str = field(repr=False)
    timeout_s: float = 5.0
    retries: int = 1
    retry_delay_s: float = 0.5
    name: str = "webhook"

    def send(self, notification: Notification) -> None:
        body = notification.slack_body()
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_delay_s)
            try:
                response = self._post(body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.is_success:
                return
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the receiver refused this body; sending it again will not help
        raise SinkError(f"webhook {redact_url(self.url)} failed: {self._scrub(problem)}")

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        # Through a transport, not an httpx.Client: the client logs each request's full URL (INFO on
        # the "httpx" logger), and a webhook's URL is its secret.
        timeout = httpx.Timeout(self.timeout_s).as_dict()
        request = httpx.Request("POST", self.url, json=body, extensions={"timeout": timeout})
        with httpx.HTTPTransport(proxy=_environment_proxy(request.url)) as transport:
            response = transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        return response

    def _scrub(self, text: str) -> str:
        """``text`` without the URL's path, query or credentials (a receiver may echo them)."""
        parts = urlsplit(self.url)
        secrets = [self.url, f"{parts.path}?{parts.query}", parts.path, parts.query, parts.password or ""]
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) > 1:
                text = text.replace(secret, "…")
        return redact_urls(text)


def _environment_proxy(url: httpx.URL) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` name for ``url`` (``NO_PROXY`` honoured),
    as an httpx.Client would use it."""
    import urllib.request

    if urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or proxies.get("all")


@dataclass
class EmailSink:
    """Sends a plain-text email through an SMTP relay (no auth, no TLS: a local or internal relay)."""

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    timeout_s: float = 5.0
    name: str = "email"

    def send(self, notification: Notification) -> None:
        if not self.recipients:
            raise SinkError("email sink has no recipients")
        message = EmailMessage()
        message["Subject"] = notification.title
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["X-Bikeshare-Alert"] = notification.event.alert_id
        message.set_content(notification.text)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise SinkError(f"SMTP {self.host}:{self.port} failed: {type(exc).__name__}: {exc}") from exc


def route(
    events: Sequence[AlertEvent],
    sinks: Sequence[Sink],
    *,
    clock: Callable[[], datetime] | None = None,
    runbook_url: str = DEFAULT_RUNBOOK_URL,
) -> list[AlertEvent]:
    """Deliver routable events to every sink; return one ``routed`` event per attempt."""
    now = clock or (lambda: datetime.now(UTC))
    routed: list[AlertEvent] = []
    for event in events:
        if event.event not in ROUTED_EVENTS or (event.event == "resolved" and event.fired_at is None):
            continue
        notification = Notification(event, runbook_url=runbook_url)
        for sink in sinks:
            try:
                sink.send(notification)
            except Exception as exc:  # any sink failure is recorded; it must not stop the others
                ok, error = False, redact_urls(f"{type(exc).__name__}: {exc}")[:1000]
                logging.getLogger(LOGGER_NAME).warning("alert %s: sink %s failed: %s", event.alert_id, sink.name, error)
            else:
                ok, error = True, None
            at = as_utc(now(), what="routed_at")
            routed.append(
                AlertEvent(
                    alert_id=event.alert_id,
                    event="routed",
                    status=event.status,
                    at=at,
                    rule=event.rule,
                    fingerprint=event.fingerprint,
                    signal=event.signal,
                    labels=dict(event.labels),
                    severity=event.severity,
                    value=event.value,
                    unit=event.unit,
                    message=event.message,
                    runbook=event.runbook,
                    started_at=event.started_at,
                    fired_at=event.fired_at,
                    sink=sink.name,
                    routed_event=event.event,
                    routed_at=at,
                    ok=ok,
                    error=error,
                )
            )
    return routed


def sinks_from_settings(settings: Settings) -> list[Sink]:
    """The log sink always; the webhook and email sinks when they are configured."""
    sinks: list[Sink] = [LogSink()]
    if settings.alert_webhook_url:
        sinks.append(
            WebhookSink(
                url=settings.alert_webhook_url,
                timeout_s=settings.alert_sink_timeout_s,
                retries=settings.alert_webhook_retries,
            )
        )
    if settings.alert_smtp_host and settings.alert_email_to:
        sinks.append(
            EmailSink(
                host=settings.alert_smtp_host,
                port=settings.alert_smtp_port,
                sender=settings.alert_email_from,
                recipients=list(settings.alert_email_to),
                timeout_s=settings.alert_sink_timeout_s,
            )
        )
    return sinks
