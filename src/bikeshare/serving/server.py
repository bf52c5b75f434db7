"""Running the endpoint on uvicorn: one process, or N workers sharing one listening socket.

Both modes bind the listening socket here, with ``proto=IPPROTO_TCP``, and speak HTTP through
:class:`NoDelayHttpToolsProtocol`, which sets TCP_NODELAY on every accepted connection. uvicorn's
own ``--workers`` path binds with ``proto=0``; asyncio then skips TCP_NODELAY on accepted sockets and
every keep-alive request after the first waits ~40 ms for a delayed ACK (uvicorn issue 3149). The
explicit setsockopt makes the fix independent of how the socket was made.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bikeshare.serving.forecast import build_forecast_provider
from bikeshare.serving.models import FolderModelProvider, ModelProvider, RegistryModelProvider

if TYPE_CHECKING:
    import asyncio

    from fastapi import FastAPI

    from bikeshare.resources import Resources
    from bikeshare.settings import Settings

log = logging.getLogger(__name__)

STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that cannot start (the supervisor gives up)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with Nagle's algorithm off on each accepted TCP socket."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport.get_extra_info("socket"))
        super().connection_made(transport)


def set_nodelay(sock: Any) -> None:
    """TCP_NODELAY on a TCP socket (or uvloop's socket stand-in); anything else is left alone."""
    if sock is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - a closed or non-TCP socket
        log.debug("could not set TCP_NODELAY", exc_info=True)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that accepted connections inherit ``proto=IPPROTO_TCP`` from."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


class UnauthenticatedExposureError(ValueError):
    """The endpoint would listen beyond loopback with no API key (the CLI reports it, exit code 2)."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); False for 0.0.0.0, :: and the rest."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse to listen on a non-loopback ``host`` without ``serve_api_key`` unless ``serve_allow_unauthenticated``.

    Without a key the state-changing routes are disabled, but scoring, the product API and /metrics
    are open to anyone who can reach the port. The SageMaker image opts out explicitly
    (docker/entrypoint.sh): there InvokeEndpoint is authenticated by IAM and cannot send our key.
    """
    if settings.serve_api_key or is_loopback(host):
        return
    if settings.serve_allow_unauthenticated:
        log.warning("listening on %s without an API key (serve_allow_unauthenticated): every read route is open", host)
        return
    raise UnauthenticatedExposureError(
        f"refusing to listen on {host} without an API key: anyone who reaches the port could score and read the "
        "product API. Set serve_api_key (BIKESHARE_SERVE_API_KEY), listen on 127.0.0.1, or opt out explicitly "
        "with serve_allow_unauthenticated (BIKESHARE_SERVE_ALLOW_UNAUTHENTICATED=true) when something in front "
        "authenticates the callers (SageMaker's InvokeEndpoint does)"
    )


def endpoint_resources(settings: Settings, resources: Resources | None = None) -> Resources:
    """The process's adapters (lake, registry client, the MLflow environment set once): given, or built here."""
    from bikeshare.resources import Resources

    return resources if resources is not None else Resources.build(settings)


def build_provider(
    settings: Settings, *, model_dir: Path | None = None, resources: Resources | None = None
) -> ModelProvider:
    """Load the models (folder or registry aliases); raises RegistryUnavailable / FileNotFoundError.

    A registry provider takes its client from ``resources`` (built here when not given).
    """
    folder = model_dir or settings.serve_model_dir
    if folder is not None:
        provider: FolderModelProvider | RegistryModelProvider = FolderModelProvider(Path(folder), settings=settings)
    else:
        registry = endpoint_resources(settings, resources).registry
        provider = RegistryModelProvider(settings=settings, registry=registry)
    state = provider.load()
    if settings.serve_alias not in state.sets:
        log.warning(
            "no %s model loaded yet (missing %s in %s); /ping answers 503 until one is",
            settings.serve_alias,
            ", ".join(state.missing(settings.serve_alias)),
            state.location,
        )
    return provider


def check_source(settings: Settings, *, model_dir: Path | None = None, resources: Resources | None = None) -> str:
    """Check the model source without loading a model (the supervisor of several workers does this).

    Raises RegistryUnavailable when the registry cannot be reached, FileNotFoundError when the
    folder holds no bundles; returns where the models will come from.
    """
    folder = model_dir or settings.serve_model_dir
    if folder is not None:
        layout = FolderModelProvider(Path(folder), settings=settings).layout()
        return f"folder {folder} ({', '.join(sorted(layout))})"
    from bikeshare.registry.client import alias_holder, model_name, uri_of

    client = endpoint_resources(settings, resources).registry()
    missing = [
        model_name(settings.city, t)
        for t in ("bikes", "docks")
        if alias_holder(client, model_name(settings.city, t), settings.serve_alias) is None
    ]
    if missing:
        log.warning("no %s alias yet on %s; /ping answers 503 until one is", settings.serve_alias, ", ".join(missing))
    return f"registry {uri_of(client)}"


def worker_app(settings: Settings, model_dir: Path | None) -> FastAPI:
    """App factory run inside each worker process; a load failure stops the whole endpoint."""
    from bikeshare.registry.client import RegistryUnavailable
    from bikeshare.serving.app import create_app

    try:
        resources = endpoint_resources(settings)
        provider = build_provider(settings, model_dir=model_dir, resources=resources)
    except (RegistryUnavailable, FileNotFoundError, ValueError) as exc:
        log.error("worker cannot load its models: %s", exc)
        sys.exit(STARTUP_FAILURE)
    forecaster = build_forecast_provider(settings, model_dir=model_dir, resources=resources)
    return create_app(settings=settings, provider=provider, lake=resources.lake, forecast_provider=forecaster)


def app_from_env() -> FastAPI:
    """App factory for other servers (``uvicorn --factory``, gunicorn): settings from BIKESHARE_*.

    Prefer ``bikeshare serve``, which also sets TCP_NODELAY on every accepted socket.
    """
    from bikeshare.settings import load_settings

    return worker_app(load_settings(), None)


def uvicorn_config(settings: Settings, app: Any, *, workers: int, factory: bool = False) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        factory=factory,
        workers=workers,
        http=NoDelayHttpToolsProtocol,
        loop="auto",  # uvloop when installed
        lifespan="on",
        access_log=settings.serve_access_log,
        timeout_keep_alive=settings.serve_keep_alive_s,
        server_header=False,
        date_header=False,
        proxy_headers=False,
        log_level="info",
    )


def run_server(
    *,
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    model_dir: Path | None = None,
    provider: ModelProvider | None = None,
    resources: Resources | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code (non-zero when workers could not start).

    A non-loopback ``host`` without ``serve_api_key`` raises :class:`UnauthenticatedExposureError`
    first, unless ``serve_allow_unauthenticated`` is set (:func:`check_exposure`).

    With one worker the already-loaded ``provider`` (or one built here) serves in this process.
    With more, this process checks the model source without loading a model (a registry outage
    fails here, before any worker starts), then supervises ``workers`` processes that each load
    their own models and accept on the same socket; a worker that cannot load stops them all.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from bikeshare.serving.app import create_app

    host = host or settings.serve_host
    check_exposure(settings, host)
    port = settings.serve_port if port is None else port
    workers = workers or settings.serve_workers
    if workers == 1:
        resources = endpoint_resources(settings, resources)
        provider = provider or build_provider(settings, model_dir=model_dir, resources=resources)
        sock = bind_socket(host, port)
        forecaster = build_forecast_provider(settings, model_dir=model_dir, resources=resources)
        app = create_app(settings=settings, provider=provider, lake=resources.lake, forecast_provider=forecaster)
        config = uvicorn_config(settings, app, workers=1)
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        return 0 if server.started else STARTUP_FAILURE
    if provider is not None:
        provider.close()  # each worker loads its own copy
    else:
        log.info("models from %s", check_source(settings, model_dir=model_dir, resources=resources))
    sock = bind_socket(host, port)
    config = uvicorn_config(settings, partial(worker_app, settings, model_dir), workers=workers, factory=True)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    failed = [p.exitcode for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    return STARTUP_FAILURE if failed else 0
