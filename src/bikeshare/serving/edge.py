"""The one plain ASGI middleware in front of every route: metrics, the API key and the body limit.

- Latency and status of every request go to :class:`ServingMetrics`, labelled by route template.
- With ``serve_api_key`` set, every route but /ping and /healthz needs ``X-API-Key`` (401).
- A body over ``serve_max_body_mb`` is answered 413 at once: a declared ``Content-Length`` over the
  limit before any byte is read, and a chunked (or lying) body as soon as the bytes received pass
  the limit, counted as they stream in. Nothing larger than the limit is ever held in memory. The
  413 closes the connection, so the client stops sending.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bikeshare.serving.errors import BodyTooLarge, error_response
from bikeshare.serving.metrics import ServingMetrics

OPEN_PATHS = frozenset({"/ping", "/healthz"})  # never behind the API key
API_KEY_HEADER = "X-API-Key"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KNOWN_PATHS = frozenset(
    {"/ping", "/invocations", "/v1/forecast/invocations", "/v1/risk", "/healthz", "/metrics", "/docs", "/openapi.json"}
)


def route_label(path: str) -> str:
    """Metric label of a request path: the route template, so labels stay few."""
    if path.startswith("/v1/stations/") and path.endswith("/risk"):
        return "/v1/stations/{station_id}/risk"
    if path.startswith("/v1/stations/") and path.endswith("/forecast"):
        return "/v1/stations/{station_id}/forecast"
    if path.startswith("/v1/alerts/") and path.endswith("/ack"):
        return "/v1/alerts/{alert_id}/ack"
    if path in KNOWN_PATHS:
        return path
    return "other"


def too_large_detail(size: str, limit: int) -> str:
    return f"the body is {size} bytes; the limit is {limit} (serve_max_body_mb)"


class EdgeMiddleware:
    """Metrics for every request, the API key on every route but the open ones, and the body limit."""

    def __init__(self, app: ASGIApp, *, metrics: ServingMetrics, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.api_key = api_key.encode() if api_key else None
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            key: bytes | None = None
            declared: bytes | None = None
            for name, value in scope["headers"]:
                if name == b"x-api-key" and key is None:
                    key = value
                elif name == b"content-length":
                    declared = value
            if self.api_key is not None and path not in OPEN_PATHS and (problem := self._auth_problem(key)):
                await error_response(401, "unauthorized", problem)(scope, receive, send_status)
            elif declared is not None and declared.isdigit() and int(declared) > self.max_body:
                refusal = error_response(
                    413, "body_too_large", too_large_detail(declared.decode(), self.max_body), {"Connection": "close"}
                )
                await refusal(scope, receive, send_status)
            else:
                await self.app(scope, self._limited(receive), send_status)
        finally:
            self.metrics.observe(route_label(path), status, time.perf_counter() - started)

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that counts body bytes and raises :class:`BodyTooLarge` once they pass the limit."""
        received = 0
        limit = self.max_body

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(too_large_detail(f"over {limit}", limit))
            return message

        return receive_limited

    def _auth_problem(self, key: bytes | None) -> str | None:
        assert self.api_key is not None
        if key is None:
            return "this route needs an X-API-Key header (only /ping and /healthz are open)"
        if hmac.compare_digest(key, self.api_key):
            return None
        return "the X-API-Key header does not match the endpoint's API key"
