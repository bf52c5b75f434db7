"""The endpoint's one error shape: every 4xx/5xx body is ``{"error": "<code>", "detail": "<message>"}``.

:class:`ApiError` is what a route raises (or returns as a response) to refuse a request; the app's
exception handlers turn it, and Starlette's and FastAPI's own errors, into that body.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response

JSON = "application/json"


def error_body(code: str, detail: str) -> bytes:
    """The JSON error document every 4xx/5xx of the endpoint carries."""
    return orjson.dumps({"error": code, "detail": detail})


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(code, detail), status_code=status, media_type=JSON, headers=headers)


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON, headers=headers)


class ApiError(Exception):
    """A request the endpoint refuses: HTTP ``status``, stable ``code``, human ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def body(self) -> bytes:
        return error_body(self.code, self.detail)

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, media_type=JSON)


class BodyTooLarge(HTTPException):
    """Raised from the request's ``receive`` once the body passes the limit (answered 413, connection closed).

    A Starlette ``HTTPException`` on purpose: FastAPI re-raises those from its own body parsing
    instead of turning them into a 400, so the 413 reaches the handler on every route.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail, headers={"Connection": "close"})
