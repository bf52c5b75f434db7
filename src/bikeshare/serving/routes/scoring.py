"""Scoring routes: SageMaker's POST /invocations and POST /v1/forecast/invocations.

This is the hot path, so the routes take the bare ``Request`` and FastAPI validates nothing on it
(its per-parameter machinery costs more than the rest of a one-station request around the model).
The body goes straight from orjson to a numpy matrix (wire.py), the models score it on the event
loop, and orjson writes the answer. ``X-Bikeshare-Alias`` and ``?target=`` are read into the
``Alias`` and ``Target`` StrEnums (their own lookup; a value outside them is the contract's
``400 unknown_alias`` / ``400 unknown_target``). The OpenAPI document declares both parameters and
the body with ``openapi_extra``; the body schema is filled in from the loaded models' features when
/openapi.json is served.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bikeshare.enums import Alias, Target
from bikeshare.serving.errors import JSON, ApiError, json_response
from bikeshare.serving.schemas import ForecastInvocationResponse, InvocationResponse, refusals
from bikeshare.serving.state import endpoint_of
from bikeshare.serving.wire import WireError, encode_response, is_json, parse_invocation, unsupported_media_type

ALIAS_HEADER = "X-Bikeshare-Alias"
VERSIONS_HEADER = "X-Bikeshare-Model-Versions"
BODY_PLACEHOLDER = "x-bikeshare-features"  # marks a body schema filled in from the loaded features

router = APIRouter(tags=["scoring"])


def _enum_schema(enum: type[Alias] | type[Target]) -> dict[str, Any]:
    return {"type": "string", "enum": [member.value for member in enum], "title": enum.__name__}


ALIAS_PARAMETER = {
    "name": ALIAS_HEADER,
    "in": "header",
    "required": False,
    "description": "Pin the alias that answers (default: serve_alias, with the canary share).",
    "schema": _enum_schema(Alias),
}
TARGET_PARAMETER = {
    "name": "target",
    "in": "query",
    "required": False,
    "description": "Score this target only (default: both).",
    "schema": _enum_schema(Target),
}


def pinned_alias(request: Request) -> Alias | None:
    """The ``X-Bikeshare-Alias`` of a request, if any; :class:`ApiError` 400 for a value that is not an alias."""
    value = request.headers.get(ALIAS_HEADER)
    if value is None:
        return None
    try:
        return Alias(value)
    except ValueError:
        detail = f"X-Bikeshare-Alias must be production or staging, got {value!r}"
        raise ApiError(400, "unknown_alias", detail) from None


def requested_target(request: Request) -> Target | None:
    """The ``?target=`` of a request, if any; :class:`ApiError` 400 for a value that is not a target."""
    value = request.query_params.get("target")
    if value is None:
        return None
    try:
        return Target(value)
    except ValueError:
        raise ApiError(
            400, "unknown_target", f"target must be bikes or docks (or left out for both), got {value!r}"
        ) from None


def _body(kind: str, summary: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "description": summary,
            "content": {JSON: {"schema": {BODY_PLACEHOLDER: kind}}},
        },
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
    openapi_extra=_body("invocations", "Feature rows of the 30-minute models.", [ALIAS_PARAMETER, TARGET_PARAMETER]),
)
async def invocations(request: Request) -> Response:
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        return unsupported_media_type(content_type)
    try:
        pinned, target = pinned_alias(request), requested_target(request)
    except ApiError as exc:
        return exc.response()
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
    openapi_extra=_body("forecast", "Feature rows of the forecast model.", [ALIAS_PARAMETER]),
)
async def forecast_invocations(request: Request) -> Response:
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        return unsupported_media_type(content_type)
    try:
        pinned = pinned_alias(request)
    except ApiError as exc:
        return exc.response()
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
