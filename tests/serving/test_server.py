"""The server around the app: TCP_NODELAY on accepted sockets, and the image's entry point run
without Docker (a temp model folder stands in for /opt/ml/model) with two workers."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bikeshare.serving.models import export_alias
from bikeshare.serving.server import NoDelayHttpToolsProtocol, bind_socket

from .conftest import Store
from .realmodel import city_request

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"


class _Recorder:
    nodelay: list[int]

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)  # type: ignore[misc]
        sock = transport.get_extra_info("socket")
        self.nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class PlainRecorder(_Recorder, HttpToolsProtocol):
    nodelay: list[int] = []  # noqa: RUF012 - shared on purpose: the server makes the instances


class OursRecorder(_Recorder, NoDelayHttpToolsProtocol):
    nodelay: list[int] = []  # noqa: RUF012


async def _hello(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _nodelay_seen(protocol: type[_Recorder], loop: str) -> list[int]:
    """Serve on a socket bound like uvicorn's --workers path (proto 0) and record TCP_NODELAY."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as in uvicorn issue 3149
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    protocol.nodelay.clear()
    config = uvicorn.Config(_hello, http=protocol, loop=loop, lifespan="off", log_level="warning")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/").text == "ok"
        return list(protocol.nodelay)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_accepted_connections_get_tcp_nodelay_even_on_a_proto_0_listener(loop: str) -> None:
    if loop == "asyncio":
        assert _nodelay_seen(PlainRecorder, loop) == [0]  # the uvicorn bug this protocol works around
    assert _nodelay_seen(OursRecorder, loop) == [1]


def test_bound_listener_is_a_tcp_socket() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.get_inheritable()
        sock.listen()
        with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:\d+: Address already in use"):
            bind_socket("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def entrypoint_endpoint(store: Store, city_both: str, tmp_path: Path, free_port: int) -> Iterator[tuple[str, dict]]:
    settings = store.settings(city_both)
    exported = export_alias(store.client, settings=settings, alias="production", dest=tmp_path / "opt-ml-model")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SM_MODEL_DIR": str(tmp_path / "opt-ml-model"),
        "BIKESHARE_SERVE_PORT": str(free_port),
        "BIKESHARE_SERVE_HOST": "127.0.0.1",
        "BIKESHARE_SERVE_WORKERS": "2",
        "BIKESHARE_CITY": city_both,
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        # no registry on purpose: a folder-served endpoint must not need one
        "BIKESHARE_MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
    }
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"entrypoint exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
                )
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the endpoint did not answer /ping in 90 s")
            time.sleep(0.2)
        yield url, exported
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_entrypoint_serves_the_model_folder_with_two_workers(
    entrypoint_endpoint: tuple[str, dict], store: Store
) -> None:
    url, exported = entrypoint_endpoint
    body = city_request(store.frame)
    body = {"columns": body["columns"], "data": body["data"][:1]}
    with httpx.Client(base_url=url, timeout=10) as http:
        health = http.get("/healthz").json()
        assert health["source"]["kind"] == "folder" and health["source"]["location"].endswith("opt-ml-model")
        first = http.post("/invocations", json=body)
        assert first.status_code == 200
        expected = f"bikes={exported['bikes']['version']},docks={exported['docks']['version']}"
        assert first.headers["x-bikeshare-model-versions"] == expected
        # kept-alive requests: without TCP_NODELAY each would wait ~40 ms for a delayed ACK
        times = []
        for _ in range(40):
            started = time.perf_counter()
            assert http.post("/invocations", json=body).status_code == 200
            times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.030, statistics.median(times)
    pids = set()
    for _ in range(30):  # a new connection each time: the kernel spreads them over the workers
        pids.add(httpx.get(f"{url}/healthz", timeout=10).json()["pid"])
        if len(pids) == 2:
            break
    assert len(pids) == 2
