"""The endpoint's documents: request models, response models and the /invocations body schema.

Requests and responses are separate models (``AckRequest`` in, ``AckResponse`` out). The routes
answer with orjson bytes, not through these models: the models describe the answers in the OpenAPI
document, and the schemathesis test checks every answer against them. The /invocations body is
never parsed by pydantic (wire.py reads it straight into arrays); its schema is built from the
feature names of the loaded models by :func:`invocation_body_schema`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from bikeshare.enums import Alias, Target
from bikeshare.serving.wire import MAX_SAFE_INT


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of the endpoint."""

    error: str = Field(description="Stable machine-readable code, e.g. missing_features, no_model.")
    detail: str = Field(description="What was wrong and, where it helps, what to do.")


# --- requests ---------------------------------------------------------------------------------


def _stripped(value: str) -> str:
    return value.strip()


class AckRequest(BaseModel):
    """Body of ``POST /v1/alerts/{alert_id}/ack``."""

    # Python's re, so that "holds a non-space character" means what str.strip() means.
    model_config = ConfigDict(regex_engine="python-re")

    by: Annotated[
        str,
        StringConstraints(min_length=1, max_length=200, pattern=r"\S"),
        AfterValidator(_stripped),
        Field(description="Who acknowledges (leading and trailing spaces are dropped)."),
    ]


def invocation_body_schema(features: Sequence[str] | None, *, max_rows: int) -> dict[str, Any]:
    """JSON Schema of an /invocations body for models needing ``features`` (None: no model loaded).

    Records: every feature required in every instance, ``station_id`` optional. Split: ``columns``
    names the features in this order (the server also takes any order, extra columns and a
    ``station_id`` column; the schema shows the one form whose rows it can describe exactly).
    """
    value = {"type": ["number", "boolean", "null"], "description": "A feature value; null is missing."}
    station = {
        "type": ["string", "integer", "null"],
        "minimum": -MAX_SAFE_INT,
        "maximum": MAX_SAFE_INT,
        "description": "Optional, echoed back; never a feature.",
    }
    limit = f"At most serve_max_batch_rows ({max_rows}) rows (413 batch_too_large above)."
    if features is None:
        instance: dict[str, Any] = {"type": "object", "properties": {"station_id": station}}
        columns: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
        row: dict[str, Any] = {"type": "array", "items": {"type": ["string", "number", "boolean", "null"]}}
    else:
        names = list(features)
        instance = {
            "type": "object",
            "required": names,
            "properties": {"station_id": station, **dict.fromkeys(names, value)},
        }
        columns = {"const": names, "description": "The feature names; see the operation's description."}
        row = {"type": "array", "items": value, "minItems": len(names), "maxItems": len(names)}
    records = {
        "title": "Records",
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {"type": "array", "minItems": 1, "items": instance, "description": limit},
            "columns": False,
            "data": False,
        },
    }
    split = {
        "title": "Split",
        "type": "object",
        "required": ["columns", "data"],
        "properties": {
            "columns": columns,
            "data": {"type": "array", "minItems": 1, "items": row, "description": limit},
            "instances": False,
        },
    }
    return {"anyOf": [split, records]}


# --- responses --------------------------------------------------------------------------------


class PingResponse(BaseModel):
    status: Literal["ok"]
    alias: Alias
    versions: str = Field(description="bikes=<version>,docks=<version> of the served alias.")


class ModelRef(BaseModel):
    name: str
    version: str
    threshold: float


class InvocationModels(BaseModel):
    bikes: ModelRef | None = None
    docks: ModelRef | None = None


class InvocationResponse(BaseModel):
    """Columnar answer: one value per row; a target left out by ``?target=`` is absent."""

    alias: Alias
    models: InvocationModels
    station_id: list[str | int | None] | None = Field(None, description="Echoed when the request sent it.")
    p_bikes: list[float] | None = None
    p_docks: list[float] | None = None
    short_bikes: list[bool] | None = None
    short_docks: list[bool] | None = None


class ForecastModelRef(BaseModel):
    name: str
    version: str
    alias: str


class ForecastInvocationResponse(BaseModel):
    alias: Alias
    model: ForecastModelRef
    horizons_min: list[int]
    columns: list[str]
    data: list[list[str | int | float | None]] = Field(description="One row per input row and horizon.")


class ModelName(BaseModel):
    name: str | None
    version: str | None


class TargetRisk(BaseModel):
    probability: float | None
    short: bool
    threshold: float | None
    current_count: int | None
    target_time: datetime | None
    model: ModelName


class BatchHeader(BaseModel):
    alias: Alias
    batch_id: str
    horizon_min: int
    feature_time: datetime
    prediction_time: datetime


class StationRisk(BatchHeader):
    station_id: str
    capacity: int | None
    bikes: TargetRisk | None = None
    docks: TargetRisk | None = None


class RankedStation(BaseModel):
    station_id: str
    probability: float | None
    short: bool
    current_count: int | None
    capacity: int | None


class TopRisk(BatchHeader):
    target: Target
    stations: list[RankedStation] = Field(description="Riskiest first.")


class CurvePoint(BaseModel):
    horizon_min: int
    target_time: datetime | None
    p_no_bikes: float | None
    p_no_docks: float | None
    expected_bikes: float | None
    bikes_lo: float | None
    bikes_hi: float | None


class StationForecast(BaseModel):
    alias: Alias
    batch_id: str
    model: ModelName
    feature_time: datetime
    prediction_time: datetime
    station_id: str
    current_bikes: int | None
    current_docks: int | None
    capacity: int | None
    curve: list[CurvePoint] = Field(description="One point per horizon, ascending.")


class AckResponse(BaseModel):
    alert_id: str
    status: str
    rule: str
    acknowledged_by: str | None
    acknowledged_at: datetime
    mtta_s: float | None = Field(description="Seconds from firing to acknowledgement.")


class LoadedModel(BaseModel):
    name: str
    version: str
    threshold: float
    source: str
    loaded_at: datetime
    seconds_since_load: float


class ModelSource(BaseModel):
    kind: Literal["registry", "folder"]
    location: str
    reachable: bool | None
    last_poll_at: datetime | None
    poll_s: float | None
    last_error: str | None


class LoadedForecastModel(BaseModel):
    name: str
    version: str
    alias: str
    seconds_since_load: float


class Health(BaseModel):
    status: Literal["ok", "degraded", "no_model"]
    pid: int
    uptime_s: float
    alias: Alias
    canary_share: float
    models: dict[Alias, dict[Target, LoadedModel]]
    servable: list[Alias]
    source: ModelSource
    forecast: dict[Alias, LoadedForecastModel] = Field(description="Optional; never part of the status.")


REFUSALS = {
    400: "Malformed request: the body (not JSON, not UTF-8, wrong shape), X-Bikeshare-Alias or ?target=.",
    403: "The route is disabled on this endpoint (the detail says why).",
    404: "No such route, station or alert.",
    409: "The alert is not in a state that can be acknowledged.",
    413: "The body is over serve_max_body_mb, or the batch over serve_max_batch_rows.",
    415: "The body is not JSON.",
    422: "A parameter or the body is invalid (missing or mistyped features are named).",
    503: "What the route serves is not there yet (no model, no inference batch); the detail says what to run.",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all with the :class:`ErrorBody` shape."""
    return {status: {"model": ErrorBody, "description": REFUSALS[status]} for status in statuses}
