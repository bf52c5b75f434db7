"""Product routes (/v1/...): station risk, the riskiest stations and a station's forecast curve.

They answer from the newest batches the inference job wrote to the lake (risk.py, forecast.py),
re-read only when a newer one lands. Sync routes: a re-read runs DuckDB, off the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from bikeshare.enums import Target
from bikeshare.serving.errors import ApiError, json_response
from bikeshare.serving.forecast import ForecastSnapshot
from bikeshare.serving.risk import RiskSnapshot
from bikeshare.serving.schemas import StationForecast, StationRisk, TopRisk, refusals
from bikeshare.serving.state import EndpointState, endpoint_state

router = APIRouter(prefix="/v1", tags=["product"])
Endpoint = Annotated[EndpointState, Depends(endpoint_state)]
StationId = Annotated[str, Path(min_length=1, max_length=200)]


def _unknown_station(station_id: str, what: str, snapshot: RiskSnapshot | ForecastSnapshot) -> Response:
    return ApiError(
        404,
        "unknown_station",
        f"station {station_id!r} is not in the latest {what} batch ({snapshot.batch_id}, "
        f"feature time {snapshot.feature_time.isoformat()}, {len(snapshot.stations)} stations)",
    ).response()


@router.get(
    "/stations/{station_id}/risk",
    summary="Latest shortage probabilities of one station",
    response_model=StationRisk,
    responses=refusals(404, 422, 503),
)
def station_risk(station_id: StationId, endpoint: Endpoint) -> Response:
    snapshot = endpoint.risk.latest()
    if snapshot is None:
        return endpoint.no_inference().response()
    doc = snapshot.stations.get(station_id)
    if doc is None:
        return _unknown_station(station_id, "inference", snapshot)
    return json_response({**snapshot.header(), **doc})


@router.get(
    "/risk",
    summary="Stations most at risk of running out of bikes or docks",
    response_model=TopRisk,
    responses=refusals(422, 503),
)
def top_risk(
    endpoint: Endpoint,
    target: Annotated[Target, Query(description="bikes | docks")] = Target.BIKES,
    top: Annotated[int, Query(ge=1, le=1000, description="How many stations, riskiest first")] = 10,
) -> Response:
    snapshot = endpoint.risk.latest()
    if snapshot is None:
        return endpoint.no_inference().response()
    rows = snapshot.ranked.get(target.value, [])[:top]
    return json_response({**snapshot.header(), "target": target.value, "stations": rows})


@router.get(
    "/stations/{station_id}/forecast",
    summary="Latest 2-hour forecast curve of one station",
    response_model=StationForecast,
    responses=refusals(404, 422, 503),
)
def station_forecast(station_id: StationId, endpoint: Endpoint) -> Response:
    snapshot = endpoint.forecasts.latest()
    if snapshot is None:
        return endpoint.no_forecast().response()
    doc = snapshot.stations.get(station_id)
    if doc is None:
        return _unknown_station(station_id, "forecast", snapshot)
    return json_response({**snapshot.header(), **doc})
