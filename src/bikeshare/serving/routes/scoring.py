"""Scoring routes: SageMaker's POST /invocations and POST /v1/forecast/invocations.

This is the hot path. The body is never parsed by pydantic: it goes straight from orjson to a
numpy matrix (wire.py), the models score it on the event loop, and orjson writes the answer. The
request body schema in the OpenAPI document is declared with ``openapi_extra`` and filled in from
the loaded models' features when /openapi.json is served. The query and header parameters are
validated by FastAPI (``Target``, ``Alias``); :class:`ScoringRoute` answers their refusal with the
contract's ``400 unknown_target`` / ``400 unknown_alias`` instead of FastAPI's 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute

from bikeshare.enums import Alias, Target
from bikeshare.serving.errors import JSON, ApiError, json_response
from bikeshare.serving.schemas import ForecastInvocationResponse, InvocationResponse, refusals
from bikeshare.serving.state import endpoint_of
from bikeshare.serving.wire import WireError, encode_response, is_json, parse_invocation, unsupported_media_type

ALIAS_HEADER = "X-Bikeshare-Alias"
VERSIONS_HEADER = "X-Bikeshare-Model-Versions"
BODY_PLACEHOLDER = "x-bikeshare-features"  # marks a body schema filled in from the loaded features


class ScoringRoute(APIRoute):
    """A route whose bad ``X-Bikeshare-Alias`` / ``?target=`` is a 400 naming the value (the SageMaker contract)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                refusal = _parameter_refusal(exc)
                if refusal is None:
                    raise
                return refusal.response()

        return route


def _parameter_refusal(exc: RequestValidationError) -> ApiError | None:
    found: dict[str, Any] = {}
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if loc[:1] in (("header",), ("query",)) and len(loc) == 2:
            found.setdefault(str(loc[1]).lower(), err.get("input"))
    if (alias := found.get(ALIAS_HEADER.lower())) is not None:
        return ApiError(400, "unknown_alias", f"X-Bikeshare-Alias must be production or staging, got {alias!r}")
    if (target := found.get("target")) is not None:
        return ApiError(400, "unknown_target", f"target must be bikes or docks (or left out for both), got {target!r}")
    return None


router = APIRouter(tags=["scoring"], route_class=ScoringRoute)

PinnedAlias = Annotated[
    Alias | None,
    Header(alias=ALIAS_HEADER, description="Pin the alias that answers (default: serve_alias, with the canary share)."),
]


def _body(kind: str, summary: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": summary,
            "content": {JSON: {"schema": {BODY_PLACEHOLDER: kind}}},
        }
    }


@router.post(
    "/invocations",
    summary="Score feature rows (split or records orientation); see docs/serving.md",
    description=(
        "Both orientations carry every feature the loaded models need, in any order; other columns are "
        "ignored. The split form may also carry a `station_id` column (the batch job sends it first), "
        "echoed back like the records' `station_id`. A missing Content-Type is read as JSON."
    ),
    response_model=InvocationResponse,
    responses={
        200: {
            "description": "Probabilities and decisions, one per row.",
            "headers": {
                ALIAS_HEADER: {"description": "The alias that answered.", "schema": {"type": "string"}},
                VERSIONS_HEADER: {"description": "bikes=<v>,docks=<v>", "schema": {"type": "string"}},
            },
        },
        **refusals(400, 413, 415, 422, 503),
    },
    openapi_extra=_body("invocations", "Feature rows of the 30-minute models."),
)
async def invocations(
    request: Request,
    pinned: PinnedAlias = None,
    target: Annotated[Target | None, Query(description="Score this target only (default: both).")] = None,
) -> Response:
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        return unsupported_media_type(content_type)
    endpoint = endpoint_of(request)
    alias, models = endpoint.pick_alias(pinned)
    if models is None:
        return endpoint.no_model(alias).response()
    body = await request.body()
    try:
        batch = parse_invocation(body, models.features, max_rows=endpoint.max_rows)
    except WireError as exc:
        return exc.response()
    p_bikes = p_docks = short_bikes = short_docks = None
    if target is Target.BIKES:
        p_bikes, short_bikes = models.score_one(batch.matrix, target="bikes")
    elif target is Target.DOCKS:
        p_docks, short_docks = models.score_one(batch.matrix, target="docks")
    else:
        pool = endpoint.pool
        big = pool is not None and batch.rows >= endpoint.parallel_rows
        p_bikes, p_docks, short_bikes, short_docks = models.score(batch.matrix, pool=pool if big else None)
    endpoint.metrics.scored_rows(alias, batch.rows)
    payload = encode_response(
        alias=alias,
        models=models.models_doc,
        station_ids=batch.station_ids,
        p_bikes=p_bikes,
        p_docks=p_docks,
        short_bikes=short_bikes,
        short_docks=short_docks,
    )
    return Response(payload, media_type=JSON, headers={ALIAS_HEADER: alias, VERSIONS_HEADER: models.versions_header})


@router.post(
    "/v1/forecast/invocations",
    summary="Forecast curves for feature rows (split or records orientation, like /invocations)",
    response_model=ForecastInvocationResponse,
    responses={
        200: {
            "description": "One curve row per input row and horizon.",
            "headers": {ALIAS_HEADER: {"description": "The alias that answered.", "schema": {"type": "string"}}},
        },
        **refusals(400, 413, 415, 422, 503),
    },
    openapi_extra=_body("forecast", "Feature rows of the forecast model."),
)
async def forecast_invocations(request: Request, pinned: PinnedAlias = None) -> Response:
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        return unsupported_media_type(content_type)
    endpoint = endpoint_of(request)
    alias = pinned.value if pinned is not None else endpoint.default_alias
    loaded = endpoint.forecaster.current(alias)
    if loaded is None:
        return endpoint.no_forecast_model(alias).response()
    body = await request.body()
    try:
        batch = parse_invocation(body, loaded.bundle.meta.feature_names, max_rows=endpoint.max_rows)
    except WireError as exc:
        return exc.response()
    ids = [str(s) for s in batch.station_ids] if batch.station_ids is not None else None
    curve = loaded.bundle.curve_matrix(batch.matrix, ids)
    endpoint.metrics.scored_rows(alias, batch.rows)
    doc = {
        "alias": alias,
        "model": loaded.doc,
        "horizons_min": list(loaded.bundle.meta.horizons_min),
        "columns": list(curve.columns),
        "data": curve.to_numpy(dtype=object).tolist(),
    }
    return json_response(doc, headers={ALIAS_HEADER: alias})
