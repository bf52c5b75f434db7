"""The drills' fault injectors, each a real fault on a real part of the loop.

- ``feed-outage``: the replay server's own fault API (``POST /_replay/faults``, ``http_5xx`` or
  ``timeout`` on station_status) until the drill clears it (``DELETE``);
- ``drift``: :class:`FeedShiftProxy`, a loopback proxy between the ingest and the replay server
  that moves bikes to docks in every station_status document (``bikes * factor`` stay), so the
  lake, the features, the endpoint's input and its predictions all shift;
- ``latency``: :class:`DelayedProvider` wraps the endpoint's models so that each scoring call
  sleeps; the endpoint's own latency histogram (what the monitor scrapes) sees the slower answers.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np

from bikeshare.orchestration.drills.plan import DrillPlan
from bikeshare.training.bundle import ModelBundle


class FeedShiftProxy:
    """A loopback HTTP proxy in front of a GBFS server that, while ``active``, keeps ``factor`` of each
    station's bikes in station_status (the rest is shown as free docks, so bikes + docks stays)."""

    def __init__(self, upstream: str, *, factor: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.factor = factor
        self.active = False
        self.shifted_documents = 0
        self._http = httpx.Client(timeout=10.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FeedShiftProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._http.close()

    def shift(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The station_status document with ``factor`` of each station's bikes (any GBFS version).

        Each vehicle type's count is scaled (so the electric count stays within the bikes), and the
        bikes taken away are added to the free docks.
        """
        for station in doc.get("data", {}).get("stations", []):
            key = "num_vehicles_available" if "num_vehicles_available" in station else "num_bikes_available"
            bikes = station.get(key)
            if not isinstance(bikes, int):
                continue
            kept = math.floor(bikes * self.factor)
            types = [e for e in station.get("vehicle_types_available") or [] if isinstance(e.get("count"), int)]
            for entry in types:
                entry["count"] = math.floor(entry["count"] * self.factor)
            if types:  # the scaled types may hold fewer (rounding), never more (inconsistent input)
                kept = min(kept, sum(entry["count"] for entry in types))
            if isinstance(station.get("num_ebikes_available"), int):
                station["num_ebikes_available"] = min(math.floor(station["num_ebikes_available"] * self.factor), kept)
            station[key] = kept
            if isinstance(station.get("num_docks_available"), int):
                station["num_docks_available"] += max(bikes - kept, 0)
        return doc

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                try:
                    upstream = proxy._http.get(proxy.upstream + self.path)  # no validators: always the whole body
                except httpx.HTTPError as exc:
                    self._send(502, json.dumps({"error": f"upstream: {exc}"}).encode(), "application/json")
                    return
                body = upstream.content
                if (
                    proxy.active
                    and upstream.status_code == 200
                    and self.path.split("?")[0].endswith("station_status.json")
                ):
                    body = json.dumps(proxy.shift(upstream.json())).encode()
                    proxy.shifted_documents += 1
                elif upstream.status_code == 200 and self.path.split("?")[0].endswith("gbfs.json"):
                    body = body.replace(proxy.upstream.encode(), proxy.url.encode())  # feeds through the proxy
                self._send(upstream.status_code, body, upstream.headers.get("content-type", "application/json"))

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@dataclass(frozen=True)
class _DelayedBundle(ModelBundle):
    """A bundle whose scoring sleeps ``delay_s`` first (the drill's slow model)."""

    delay_s: float = 0.0

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().predict_proba(features)


class DelayedProvider:
    """Wraps a model provider; while ``delay_s`` > 0 every scoring request takes that much longer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.delay_s = 0.0

    def state(self) -> Any:
        return self.inner.state()

    def current(self, alias: str) -> Any:
        models = self.inner.current(alias)
        delay = self.delay_s
        if models is None or delay <= 0:
            return models
        slow = _DelayedBundle(meta=models.bikes.bundle.meta, scorer=models.bikes.bundle.scorer, delay_s=delay)
        return replace(models, bikes=replace(models.bikes, bundle=slow))

    def start(self) -> None:
        self.inner.start()

    def close(self) -> None:
        self.inner.close()


def inject(plan: DrillPlan, *, replay: Any, proxy: FeedShiftProxy | None, provider: DelayedProvider | None) -> None:
    if plan.kind == "feed-outage":
        fault: dict[str, Any] = {"kind": plan.outage}
        if plan.outage == "timeout":
            fault["delay_s"] = plan.timeout_delay_s
        response = httpx.post(f"{replay.url}/_replay/faults", json=fault, timeout=5.0)
        if response.status_code != 201:
            raise RuntimeError(f"the replay server refused the fault {fault}: {response.text}")
    elif plan.kind == "drift":
        assert proxy is not None
        proxy.active = True
    else:
        assert provider is not None
        provider.delay_s = plan.latency_s


def clear(plan: DrillPlan, *, replay: Any, proxy: FeedShiftProxy | None, provider: DelayedProvider | None) -> None:
    if plan.kind == "feed-outage":
        httpx.delete(f"{replay.url}/_replay/faults", timeout=5.0).raise_for_status()
    elif plan.kind == "drift":
        assert proxy is not None
        proxy.active = False
    else:
        assert provider is not None
        provider.delay_s = 0.0
