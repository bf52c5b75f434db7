"""The FastAPI app of the endpoint: SageMaker's /ping and /invocations plus the product API.

Routes (docs/serving.md has the full contract), one router each in ``serving/routes/``:

- ops: ``GET /ping`` (SageMaker's health check), ``GET /healthz``, ``GET /metrics`` (Prometheus);
- scoring: ``POST /invocations`` (the hot path, wire.py) and ``POST /v1/forecast/invocations``;
- product: ``GET /v1/stations/{station_id}/risk``, ``GET /v1/risk``, ``GET /v1/stations/{station_id}/forecast``;
- alerts: ``POST /v1/alerts/{alert_id}/ack`` (state-changing: needs the API key).

What the routes share lives in one :class:`~bikeshare.serving.state.EndpointState` on
``app.state.endpoint``. Metrics, the API key and the body limit sit in one plain ASGI middleware
(edge.py); every refusal is ``{"error": ..., "detail": ...}`` (errors.py).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bikeshare.serving.edge import EdgeMiddleware
from bikeshare.serving.errors import ApiError, error_response
from bikeshare.serving.forecast import ForecastProvider, LatestForecasts, NoForecastProvider
from bikeshare.serving.metrics import ServingMetrics
from bikeshare.serving.models import ModelProvider
from bikeshare.serving.openapi import EndpointOpenApi
from bikeshare.serving.risk import LatestInference
from bikeshare.serving.routes import alerts, ops, product, scoring
from bikeshare.serving.state import EndpointState

if TYPE_CHECKING:
    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings

HTTP_ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def create_app(
    *,
    settings: Settings,
    provider: ModelProvider,
    lake: Lake,
    rng: random.Random | None = None,
    forecast_provider: ForecastProvider | None = None,
) -> FastAPI:
    """Build the endpoint around a model provider (already loaded); the lake (from the process's
    ``Resources``) backs the product API and the alert store.

    ``forecast_provider`` serves the multi-horizon model (``/v1/forecast/invocations``); without one
    that route answers 503 naming the missing model.
    """
    alias = settings.serve_alias
    refresh_s = settings.serve_risk_refresh_s
    endpoint = EndpointState(
        settings=settings,
        provider=provider,
        forecaster=forecast_provider or NoForecastProvider(),
        lake=lake,
        metrics=ServingMetrics(provider.state),
        risk=LatestInference(
            lake=lake, city=settings.city, alias=alias, horizon_min=settings.horizon_min, refresh_s=refresh_s
        ),
        forecasts=LatestForecasts(lake=lake, city=settings.city, alias=alias, refresh_s=refresh_s),
        rng=rng or random.Random(),  # noqa: S311 - traffic split, not security
        pool=(
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="score") if settings.serve_parallel_min_rows else None
        ),
    )

    app = FastAPI(
        title="bikeshare endpoint",
        version="1",
        summary="Station shortage risk: SageMaker /invocations contract and product API.",
        lifespan=_lifespan,
        redoc_url=None,
    )
    app.state.endpoint = endpoint
    for router in (scoring.router, ops.router, product.router, alerts.router):  # /invocations matched first
        _add_routes(app, router)
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_middleware(
        EdgeMiddleware,
        metrics=endpoint.metrics,
        api_key=settings.serve_api_key,
        max_body_bytes=int(settings.serve_max_body_mb * 1024 * 1024),
    )
    app.openapi = EndpointOpenApi(app, endpoint)  # type: ignore[method-assign]
    return app


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put a router's routes in the app's own route list (its prefix, tags and route class already applied).

    Not ``include_router``: FastAPI 0.165 keeps an included router as a node that it resolves on
    every request (about 80 Python calls), which a one-station /invocations request would feel.
    """
    app.router.routes.extend(router.routes)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    endpoint: EndpointState = app.state.endpoint
    endpoint.provider.start()
    endpoint.forecaster.start()
    try:
        yield
    finally:
        endpoint.provider.close()
        endpoint.forecaster.close()
        if endpoint.pool is not None:
            endpoint.pool.shutdown(wait=False)


async def _api_error(request: Request, exc: ApiError) -> Response:
    return exc.response()


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's and FastAPI's own refusals (no route, wrong method, body too large) in our error shape."""
    code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path} (see docs/serving.md)"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, detail, headers=exc.headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(problems))
