"""The body limit on a real endpoint in its own process (``python -m bikeshare serve`` on loopback):
a chunked body over ``serve_max_body_mb`` is refused while it streams in, with the server's memory
measured from /proc, and a declared Content-Length over the limit is refused before any byte is read,
on every route that takes a body (issue 15, item 3)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from bikeshare.serving.models import export_alias
from bikeshare.training.forecast import ForecastTrainingResult

from .conftest import Store

LIMIT_MB = 8
MIB = 1024 * 1024
BODY_ROUTES = ("/invocations", "/v1/forecast/invocations", "/v1/alerts/some-alert/ack")


@dataclass
class ServerProcess:
    url: str
    port: int
    pid: int

    def memory_mib(self, field: str) -> float:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    store: Store, city_both: str, forecast_run: ForecastTrainingResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The endpoint serving a model folder (both 30-minute models and the forecast model) with an 8 MiB limit."""
    root = tmp_path_factory.mktemp("body-limit")
    settings = store.settings(city_both)
    export_alias(store.client, settings=settings, alias="production", dest=root / "model")
    forecast_run.bundle.save(root / "model" / "forecast")
    port = _free_port()
    env = {
        **os.environ,
        "BIKESHARE_CITY": city_both,
        "BIKESHARE_STATE_DIR": str(root / "state"),
        "BIKESHARE_LAKE_URI": str(root / "lake"),
        "BIKESHARE_SERVE_MAX_BODY_MB": str(LIMIT_MB),
        "BIKESHARE_SERVE_API_KEY": "k",
        "BIKESHARE_MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # a folder-served endpoint needs no registry
    }
    command = [sys.executable, "-m", "bikeshare", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--workers", "1", "--model-dir", str(root / "model")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"the endpoint exited {proc.returncode}"
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the endpoint did not answer /ping in 90 s"
            time.sleep(0.2)
        yield ServerProcess(url=url, port=port, pid=proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _chunks(total_mib: int) -> Iterator[bytes]:
    """A JSON-looking body of ``total_mib`` MiB, streamed in 1 MiB chunks (no Content-Length: chunked)."""
    yield b'{"instances": [' + b" " * (MIB - 15)
    chunk = b" " * MIB
    for _ in range(total_mib - 1):
        yield chunk


def _post_chunked(server: ServerProcess, path: str, total_mib: int) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    with httpx.Client(timeout=60) as http:
        response = http.post(
            f"{server.url}{path}",
            content=_chunks(total_mib),
            headers={"Content-Type": "application/json", "X-API-Key": "k"},
        )
    return response, time.perf_counter() - started


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(server: ServerProcess) -> None:
    warm = httpx.post(f"{server.url}/invocations", json={"instances": []}, headers={"X-API-Key": "k"})
    assert warm.status_code == 400
    peak_before = server.memory_mib("VmHWM")
    rss_before = server.memory_mib("VmRSS")
    response, elapsed = _post_chunked(server, "/invocations", 256)
    assert "content-length" not in response.request.headers  # really chunked
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "body_too_large" and "serve_max_body_mb" in response.json()["detail"]
    grown = server.memory_mib("VmHWM") - peak_before
    # Reading the 256 MiB body whole would add at least that much; counting while streaming stops at the limit.
    assert grown < 64, f"server peak RSS grew {grown:.0f} MiB (from {rss_before:.0f} MiB) for a 256 MiB body"
    assert elapsed < 20, elapsed
    assert response.headers["connection"] == "close"  # the client is told to stop sending
    assert httpx.get(f"{server.url}/ping", timeout=5).status_code == 200  # and it still serves


@pytest.mark.parametrize("path", BODY_ROUTES[1:])
def test_every_body_route_stops_a_chunked_body_at_the_limit(server: ServerProcess, path: str) -> None:
    response, _ = _post_chunked(server, path, 3 * LIMIT_MB)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "body_too_large"


def _raw_request(server: ServerProcess, path: str, declared: int, body: bytes) -> tuple[bytes, float]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-API-Key: k\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + body)
        received = b""
        try:
            while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except TimeoutError:
            pass  # what a server waiting for the declared bytes does; the assertions say so
    return received, time.perf_counter() - started


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_declared_length_over_the_limit_is_refused_at_once(server: ServerProcess, path: str) -> None:
    received, elapsed = _raw_request(server, path, 999_999_999_999, b"{}")
    assert received.startswith(b"HTTP/1.1 413 "), (received[:200], elapsed)
    assert elapsed < 2, elapsed
    head, _, payload = received.partition(b"\r\n\r\n")
    assert orjson.loads(payload)["error"] == "body_too_large"
    assert b"999999999999 bytes" in payload
    assert b"connection: close" in head.lower()
