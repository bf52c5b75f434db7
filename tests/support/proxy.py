"""A loopback HTTP proxy in front of a real endpoint that answers 503 where a test says so."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FaultProxy:
    """Forwards POSTs to ``upstream``, counting calls per path; ``failing(path, n)`` (n = this path's
    call number, from 1) picks the calls answered with an injected 503 instead. ``failing`` may be
    replaced while the proxy runs."""

    def __init__(self, upstream: str, *, failing: Callable[[str, int], bool]) -> None:
        self.calls: Counter[str] = Counter()
        self.failing = failing
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy.calls[self.path] += 1
                if proxy.failing(self.path, proxy.calls[self.path]):
                    payload = b'{"error": "overloaded", "detail": "injected fault"}'
                    self.send_response(503)
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower().startswith(("content-type", "x-"))}
                    answer = httpx.post(f"{upstream}{self.path}", content=body, headers=headers, timeout=30)
                    payload = answer.content
                    self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
