"""Operations routes: SageMaker's /ping, /healthz and Prometheus /metrics."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, Response

from bikeshare.enums import Alias
from bikeshare.serving.errors import json_response
from bikeshare.serving.metrics import CONTENT_TYPE
from bikeshare.serving.schemas import Health, PingResponse, refusals
from bikeshare.serving.state import EndpointState, endpoint_state
from bikeshare.training.bundle import TARGETS

router = APIRouter(tags=["ops"])
Endpoint = Annotated[EndpointState, Depends(endpoint_state)]


@router.get(
    "/ping",
    summary="SageMaker health check: 200 once both models of the served alias are loaded",
    response_model=PingResponse,
    responses=refusals(503),
)
async def ping(endpoint: Endpoint) -> Response:
    alias = endpoint.default_alias
    models = endpoint.provider.current(alias)
    if models is None:
        return endpoint.no_model(alias).response()
    return json_response({"status": "ok", "alias": alias, "versions": models.versions_header})


@router.get(
    "/healthz",
    summary="Process, model and registry state",
    response_model=Health,
    responses={503: {"model": Health, "description": "The served alias has no model loaded (status no_model)."}},
)
def healthz(endpoint: Endpoint) -> Response:
    doc, status = health_doc(endpoint)
    return json_response(doc, status=status)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."}},
)
def prometheus(endpoint: Endpoint) -> Response:
    return Response(endpoint.metrics.render(), media_type=CONTENT_TYPE)


def health_doc(endpoint: EndpointState) -> tuple[dict[str, Any], int]:
    """The /healthz document and its status (503 while the served alias is not loaded)."""
    state = endpoint.provider.state()
    now = time.time()
    alias = endpoint.default_alias
    servable = alias in state.sets
    status = "ok" if servable and state.registry_reachable is not False and not state.last_error else "degraded"
    doc = {
        "status": status if servable else "no_model",
        "pid": os.getpid(),
        "uptime_s": round(now - endpoint.started_at, 3),
        "alias": alias,
        "canary_share": endpoint.canary_share,
        "models": {
            a.value: {
                target: {
                    "name": m.name,
                    "version": m.version,
                    "threshold": m.threshold,
                    "source": m.source,
                    "loaded_at": datetime.fromtimestamp(m.loaded_at, UTC).isoformat(),
                    "seconds_since_load": round(now - m.loaded_at, 3),
                }
                for target in TARGETS
                if (m := state.models.get((a.value, target))) is not None
            }
            for a in Alias
        },
        "servable": sorted(state.sets),
        "source": {
            "kind": state.source,
            "location": state.location,
            "reachable": state.registry_reachable,
            "last_poll_at": (
                datetime.fromtimestamp(state.last_poll_at, UTC).isoformat() if state.last_poll_at else None
            ),
            "poll_s": endpoint.settings.serve_model_poll_s if state.source == "registry" else None,
            "last_error": state.last_error,
        },
        # The multi-horizon model is optional: it is reported, never part of the status.
        "forecast": {
            a.value: {**f.doc, "seconds_since_load": round(now - f.loaded_at, 3)}
            for a in Alias
            if (f := endpoint.forecaster.current(a.value)) is not None
        },
    }
    return doc, 200 if servable else 503
