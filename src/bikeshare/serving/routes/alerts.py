"""Alert routes: acknowledge a firing alert (the endpoint's one state-changing route).

A state-changing route needs the endpoint's API key: with ``serve_api_key`` set the edge middleware
already refused a request without the right ``X-API-Key`` (401); without a key the route is
disabled and answers 403, so an endpoint started without a key never lets anyone change state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from bikeshare.serving.errors import ApiError, json_response
from bikeshare.serving.schemas import AckRequest, AckResponse, refusals
from bikeshare.serving.state import EndpointState, endpoint_of, endpoint_state
from bikeshare.serving.wire import is_json, unsupported_media_type

Endpoint = Annotated[EndpointState, Depends(endpoint_state)]


class StateChangingRoute(APIRoute):
    """A route that changes state: 403 on an endpoint without an API key, 415 for a body that is not JSON.

    Both are answered before FastAPI reads or parses the body, so a disabled route says so whatever is sent.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if not endpoint_of(request).settings.serve_api_key:
                return ApiError(
                    403,
                    "writes_disabled",
                    f"{request.method} {request.url.path} changes state and is disabled: this endpoint has no API "
                    "key. Set serve_api_key (BIKESHARE_SERVE_API_KEY) and send it as X-API-Key.",
                ).response()
            content_type = request.headers.get("content-type")
            if content_type is not None and not is_json(content_type):
                return unsupported_media_type(content_type)
            return await handler(request)

        return route


router = APIRouter(prefix="/v1/alerts", tags=["alerts"], route_class=StateChangingRoute)


@router.post(
    "/{alert_id}/ack",
    summary="Acknowledge a firing alert (needs the endpoint's API key)",
    response_model=AckResponse,
    responses=refusals(400, 403, 404, 409, 413, 415, 422),
)
def ack(alert_id: Annotated[str, Path(min_length=1, max_length=200)], body: AckRequest, endpoint: Endpoint) -> Response:
    from bikeshare.monitoring.acks import AlertNotFoundError, AlertStateError, ack_alert

    try:
        event = ack_alert(store=endpoint.alerts, alert_id=alert_id, by=body.by)
    except AlertNotFoundError as exc:
        return ApiError(404, "unknown_alert", str(exc)).response()
    except AlertStateError as exc:
        return ApiError(409, "alert_state", str(exc)).response()
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
