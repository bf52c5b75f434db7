"""The real endpoint app on uvicorn in a thread, for a drill's scoring traffic and its /metrics."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bikeshare.lake.store import Lake
from bikeshare.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def registry_provider(settings: Settings, registry: Callable[[], MlflowClient]) -> Any:
    """The endpoint's model provider on the registry's aliases (``registry``: the process's client), loaded."""
    from bikeshare.serving.models import RegistryModelProvider

    provider = RegistryModelProvider(settings=settings, registry=registry)
    provider.load()
    return provider


class ThreadedEndpoint:
    """The real endpoint app (serving.create_app) on uvicorn in a thread, on ``port`` (default: a free one)."""

    def __init__(
        self,
        settings: Settings,
        provider: Any,
        lake: Lake,
        *,
        port: int | None = None,
        forecast_provider: Any = None,
    ) -> None:
        import uvicorn

        from bikeshare.serving.app import create_app

        self.port = port or free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings=settings, provider=provider, lake=lake, forecast_provider=forecast_provider)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, name=f"drill-endpoint-{self.port}", daemon=True)

    def start(self) -> ThreadedEndpoint:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the drill endpoint on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
