"""The FastAPI app of the endpoint: SageMaker's /ping and /invocations plus the product API.

Routes (docs/serving.md has the full contract):

- ``GET /ping``: 200 when the served alias has both models loaded (SageMaker's health check).
- ``POST /invocations``: feature rows in, probabilities and decisions of both targets out.
- ``GET /v1/stations/{station_id}/risk`` and ``GET /v1/risk?target=&top=``: the latest inference batch.
- ``POST /v1/alerts/{alert_id}/ack``: acknowledge a firing alert.
- ``GET /healthz`` (process, models, registry) and ``GET /metrics`` (Prometheus).

/invocations is written for latency: the body goes straight from orjson to a numpy matrix (wire.py),
the models score it on the event loop (LightGBM with ``serve_threads_per_worker`` threads), and the
response is serialised by orjson. Auth, metrics and JSON errors sit in one plain ASGI middleware.
"""

from __future__ import annotations

import hmac
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bikeshare.registry.client import ALIASES, model_name
from bikeshare.serving.forecast import ForecastProvider, LatestForecasts, NoForecastProvider
from bikeshare.serving.metrics import CONTENT_TYPE, ServingMetrics
from bikeshare.serving.models import ModelProvider, ModelSet
from bikeshare.serving.risk import LatestInference
from bikeshare.serving.wire import WireError, encode_response, error_body, parse_invocation
from bikeshare.training.bundle import TARGETS

if TYPE_CHECKING:
    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings

log = logging.getLogger(__name__)

ALIAS_HEADER = "x-bikeshare-alias"
VERSIONS_HEADER = "X-Bikeshare-Model-Versions"
API_KEY_HEADER = "x-api-key"
OPEN_PATHS = frozenset({"/ping", "/healthz"})  # never behind the API key
JSON = "application/json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON, headers=headers)


def error_response(status: int, code: str, detail: str) -> Response:
    return Response(error_body(code, detail), status_code=status, media_type=JSON)


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


KNOWN_PATHS = frozenset(
    {"/ping", "/invocations", "/v1/forecast/invocations", "/v1/risk", "/healthz", "/metrics", "/docs", "/openapi.json"}
)


class EdgeMiddleware:
    """Latency/status metrics for every request, and the API key on every route but the open ones."""

    def __init__(self, app: ASGIApp, *, metrics: ServingMetrics, api_key: str | None) -> None:
        self.app = app
        self.metrics = metrics
        self.api_key = api_key.encode() if api_key else None

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
            problem = self._auth_problem(scope) if self.api_key and path not in OPEN_PATHS else None
            if problem is not None:
                await error_response(401, "unauthorized", problem)(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(route_label(path), status, time.perf_counter() - started)

    def _auth_problem(self, scope: Scope) -> str | None:
        assert self.api_key is not None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                if hmac.compare_digest(value, self.api_key):
                    return None
                return "the X-API-Key header does not match the endpoint's API key"
        return "this route needs an X-API-Key header (only /ping and /healthz are open)"


def create_app(
    *,
    settings: Settings,
    provider: ModelProvider,
    lake: Lake | None = None,
    rng: random.Random | None = None,
    forecast_provider: ForecastProvider | None = None,
) -> FastAPI:
    """Build the endpoint around a model provider (already loaded); the lake backs the product API.

    ``forecast_provider`` serves the multi-horizon model (``/v1/forecast/invocations``); without one
    that route answers 503 naming the missing model.
    """
    from bikeshare.lake.store import Lake

    lake = lake or Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    default_alias = settings.serve_alias
    canary_share = settings.serve_canary_share if default_alias == "production" else 0.0
    rng = rng or random.Random()  # noqa: S311 - traffic split, not security
    max_rows = settings.serve_max_batch_rows
    max_bytes = int(settings.serve_max_body_mb * 1024 * 1024)
    started_at = time.time()
    risk = LatestInference(
        lake=lake,
        city=settings.city,
        alias=default_alias,
        horizon_min=settings.horizon_min,
        refresh_s=settings.serve_risk_refresh_s,
    )
    forecasts = LatestForecasts(
        lake=lake, city=settings.city, alias=default_alias, refresh_s=settings.serve_risk_refresh_s
    )
    forecaster = forecast_provider or NoForecastProvider()
    metrics = ServingMetrics(provider.state)
    parallel_rows = settings.serve_parallel_min_rows
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score") if parallel_rows else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        provider.start()
        forecaster.start()
        try:
            yield
        finally:
            provider.close()
            forecaster.close()
            if pool is not None:
                pool.shutdown(wait=False)

    app = FastAPI(
        title="bikeshare endpoint",
        version="1",
        summary="Station shortage risk: SageMaker /invocations contract and product API.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.provider = provider
    app.state.metrics = metrics
    app.state.risk = risk

    def no_model(alias: str) -> Response:
        state = provider.state()
        missing = ", ".join(model_name(settings.city, t) for t in state.missing(alias)) or "none"
        how = (
            "run `bikeshare train` and `bikeshare promote --to " + alias + "`"
            if state.source == "registry"
            else f"put bikes/ and docks/ bundles under {state.location}"
        )
        return error_response(
            503, "no_model", f"no {alias} model is loaded (missing: {missing}; source {state.location}): {how}"
        )

    def pick_alias(request: Request) -> tuple[str, ModelSet | None] | Response:
        pinned = request.headers.get(ALIAS_HEADER)
        if pinned is not None:
            alias = pinned.strip().lower()
            if alias not in ALIASES:
                return error_response(
                    400, "unknown_alias", f"X-Bikeshare-Alias must be production or staging, got {pinned!r}"
                )
            return alias, provider.current(alias)
        if canary_share > 0.0 and rng.random() < canary_share:
            staging = provider.current("staging")
            if staging is not None:
                return "staging", staging
        return default_alias, provider.current(default_alias)

    @app.get("/ping", include_in_schema=True, summary="SageMaker health check: 200 once a model is loaded")
    def ping() -> Response:
        models = provider.current(default_alias)
        if models is None:
            return no_model(default_alias)
        return json_response({"status": "ok", "alias": default_alias, "versions": models.versions_header})

    @app.post(
        "/invocations",
        summary="Score feature rows (split or records orientation); see docs/serving.md",
        openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}}},
    )
    async def invocations(request: Request) -> Response:
        content_type = request.headers.get("content-type")
        if content_type is not None and not _is_json(content_type):
            return error_response(415, "unsupported_media_type", f"send application/json, not {content_type!r}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return error_response(
                413, "body_too_large", f"the body is {declared} bytes; the limit is {max_bytes} (serve_max_body_mb)"
            )
        picked = pick_alias(request)
        if isinstance(picked, Response):
            return picked
        alias, models = picked
        if models is None:
            return no_model(alias)
        body = await request.body()
        if len(body) > max_bytes:
            return error_response(
                413, "body_too_large", f"the body is {len(body)} bytes; the limit is {max_bytes} (serve_max_body_mb)"
            )
        only = request.query_params.get("target")
        if only is not None and only not in TARGETS:
            return error_response(
                400, "unknown_target", f"target must be bikes or docks (or left out for both), got {only!r}"
            )
        try:
            batch = parse_invocation(body, models.features, max_rows=max_rows)
        except WireError as exc:
            return Response(exc.body(), status_code=exc.status, media_type=JSON)
        p_bikes = p_docks = short_bikes = short_docks = None
        if only == "bikes":
            p_bikes, short_bikes = models.score_one(batch.matrix, target="bikes")
        elif only == "docks":
            p_docks, short_docks = models.score_one(batch.matrix, target="docks")
        else:
            big = pool is not None and batch.rows >= parallel_rows
            p_bikes, p_docks, short_bikes, short_docks = models.score(batch.matrix, pool=pool if big else None)
        metrics.scored_rows(alias, batch.rows)
        payload = encode_response(
            alias=alias,
            models=models.models_doc,
            station_ids=batch.station_ids,
            p_bikes=p_bikes,
            p_docks=p_docks,
            short_bikes=short_bikes,
            short_docks=short_docks,
        )
        return Response(
            payload,
            media_type=JSON,
            headers={"X-Bikeshare-Alias": alias, VERSIONS_HEADER: models.versions_header},
        )

    @app.get("/v1/stations/{station_id}/risk", summary="Latest shortage probabilities of one station")
    def station_risk(station_id: Annotated[str, Path(min_length=1, max_length=200)]) -> Response:
        snapshot = risk.latest()
        if snapshot is None:
            return no_inference()
        doc = snapshot.stations.get(station_id)
        if doc is None:
            return error_response(
                404,
                "unknown_station",
                f"station {station_id!r} is not in the latest inference batch ({snapshot.batch_id}, "
                f"feature time {snapshot.feature_time.isoformat()}, {len(snapshot.stations)} stations)",
            )
        return json_response({**snapshot.header(), **doc})

    @app.get("/v1/risk", summary="Stations most at risk of running out of bikes or docks")
    def top_risk(
        target: Annotated[Literal["bikes", "docks"], Query(description="bikes | docks")] = "bikes",
        top: Annotated[int, Query(ge=1, le=1000, description="How many stations, riskiest first")] = 10,
    ) -> Response:
        snapshot = risk.latest()
        if snapshot is None:
            return no_inference()
        rows = snapshot.ranked.get(target, [])[:top]
        return json_response({**snapshot.header(), "target": target, "stations": rows})

    @app.get("/v1/stations/{station_id}/forecast", summary="Latest 2-hour forecast curve of one station")
    def station_forecast(station_id: Annotated[str, Path(min_length=1, max_length=200)]) -> Response:
        snapshot = forecasts.latest()
        if snapshot is None:
            name = model_name(settings.city, "forecast")
            return error_response(
                503,
                "no_forecast",
                f"no {default_alias} forecast in the lake for city {settings.city!r} yet: train and promote "
                f"{name} (`bikeshare forecast train`), then run `bikeshare infer`",
            )
        doc = snapshot.stations.get(station_id)
        if doc is None:
            return error_response(
                404,
                "unknown_station",
                f"station {station_id!r} is not in the latest forecast batch ({snapshot.batch_id}, "
                f"feature time {snapshot.feature_time.isoformat()}, {len(snapshot.stations)} stations)",
            )
        return json_response({**snapshot.header(), **doc})

    @app.post(
        "/v1/forecast/invocations",
        summary="Forecast curves for feature rows (split or records orientation, like /invocations)",
        openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}}},
    )
    async def forecast_invocations(request: Request) -> Response:
        content_type = request.headers.get("content-type")
        if content_type is not None and not _is_json(content_type):
            return error_response(415, "unsupported_media_type", f"send application/json, not {content_type!r}")
        pinned = (request.headers.get(ALIAS_HEADER) or default_alias).strip().lower()
        if pinned not in ALIASES:
            return error_response(
                400, "unknown_alias", f"X-Bikeshare-Alias must be production or staging, got {pinned!r}"
            )
        loaded = forecaster.current(pinned)
        if loaded is None:
            name = model_name(settings.city, "forecast")
            return error_response(
                503,
                "no_forecast_model",
                f"no {pinned} forecast model is loaded (missing: {name}; source {forecaster.location}): run "
                f"`bikeshare forecast train` and `bikeshare forecast promote --to {pinned}`",
            )
        body = await request.body()
        if len(body) > max_bytes:
            return error_response(
                413, "body_too_large", f"the body is {len(body)} bytes; the limit is {max_bytes} (serve_max_body_mb)"
            )
        try:
            batch = parse_invocation(body, loaded.bundle.meta.feature_names, max_rows=max_rows)
        except WireError as exc:
            return Response(exc.body(), status_code=exc.status, media_type=JSON)
        ids = [str(s) for s in batch.station_ids] if batch.station_ids is not None else None
        curve = loaded.bundle.curve_matrix(batch.matrix, ids)
        metrics.scored_rows(pinned, batch.rows)
        doc = {
            "alias": pinned,
            "model": loaded.doc,
            "horizons_min": list(loaded.bundle.meta.horizons_min),
            "columns": list(curve.columns),
            "data": curve.to_numpy(dtype=object).tolist(),
        }
        return json_response(doc, headers={"X-Bikeshare-Alias": pinned})

    def no_inference() -> Response:
        return error_response(
            503,
            "no_inference",
            f"no {default_alias} inference batch in the lake for city {settings.city!r} yet: run `bikeshare infer`",
        )

    @app.post("/v1/alerts/{alert_id}/ack", summary="Acknowledge a firing alert")
    def ack(
        alert_id: Annotated[str, Path(min_length=1, max_length=200)], request_body: dict[str, Any] | None = None
    ) -> Response:
        from bikeshare.monitoring.acks import AlertNotFoundError, AlertStateError, AlertStore, ack_alert

        by = (request_body or {}).get("by")
        if not isinstance(by, str) or not by.strip():
            return error_response(422, "missing_field", 'say who acknowledges: send {"by": "<name>"}')
        store = AlertStore(lake, city=settings.city)
        try:
            event = ack_alert(store=store, alert_id=alert_id, by=by.strip())
        except AlertNotFoundError as exc:
            return error_response(404, "unknown_alert", str(exc))
        except AlertStateError as exc:
            return error_response(409, "alert_state", str(exc))
        return json_response(
            {
                "alert_id": event.alert_id,
                "status": event.status,
                "rule": event.rule,
                "acknowledged_by": event.acknowledged_by,
                "acknowledged_at": event.at.isoformat(),
                "mtta_s": event.mtta_s,
            }
        )

    @app.get("/healthz", summary="Process, model and registry state")
    def healthz() -> Response:
        state = provider.state()
        now = time.time()
        servable = default_alias in state.sets
        status = "ok" if servable and state.registry_reachable is not False and not state.last_error else "degraded"
        doc = {
            "status": status if servable else "no_model",
            "pid": os.getpid(),
            "uptime_s": round(now - started_at, 3),
            "alias": default_alias,
            "canary_share": canary_share,
            "models": {
                alias: {
                    target: {
                        "name": m.name,
                        "version": m.version,
                        "threshold": m.threshold,
                        "source": m.source,
                        "loaded_at": datetime.fromtimestamp(m.loaded_at, UTC).isoformat(),
                        "seconds_since_load": round(now - m.loaded_at, 3),
                    }
                    for target in TARGETS
                    if (m := state.models.get((alias, target))) is not None
                }
                for alias in ALIASES
            },
            "servable": sorted(state.sets),
            "source": {
                "kind": state.source,
                "location": state.location,
                "reachable": state.registry_reachable,
                "last_poll_at": (
                    datetime.fromtimestamp(state.last_poll_at, UTC).isoformat() if state.last_poll_at else None
                ),
                "poll_s": settings.serve_model_poll_s if state.source == "registry" else None,
                "last_error": state.last_error,
            },
            # The multi-horizon model is optional: it is reported, never part of the status.
            "forecast": {
                alias: {**f.doc, "seconds_since_load": round(now - f.loaded_at, 3)}
                for alias in ALIASES
                if (f := forecaster.current(alias)) is not None
            },
        }
        return json_response(doc, status=200 if servable else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path} (see docs/serving.md)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, code, detail)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(422, "invalid_request", "; ".join(problems))

    app.add_middleware(EdgeMiddleware, metrics=metrics, api_key=settings.serve_api_key)
    return app


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))
