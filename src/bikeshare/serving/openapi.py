"""The endpoint's OpenAPI document, made to say what the server does.

FastAPI's document is completed here:

- every operation documents 405 with its ``Allow`` header (Starlette answers a wrong method so);
- an optional parameter may be left out but never sent as ``null`` (pydantic's ``X | None``);
- with ``serve_api_key`` set, every operation but /ping and /healthz declares the ``X-API-Key``
  security scheme and its 401;
- the /invocations and /v1/forecast/invocations bodies (never parsed by pydantic) get the schema
  of :func:`~bikeshare.serving.schemas.invocation_body_schema` for the features of the models
  loaded now, so the document follows a hot swap that changes the features.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi

from bikeshare.serving.edge import API_KEY_HEADER, OPEN_PATHS
from bikeshare.serving.errors import JSON
from bikeshare.serving.routes.scoring import BODY_PLACEHOLDER
from bikeshare.serving.schemas import invocation_body_schema

if TYPE_CHECKING:
    from fastapi import FastAPI

    from bikeshare.serving.state import EndpointState

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
SECURITY_SCHEME = "apiKey"


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema without pydantic's ``null`` branch: it may be left out, never sent as null."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list) or {"type": "null"} not in branches:
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


class EndpointOpenApi:
    """``app.openapi``: the completed document, rebuilt when the loaded models' features change."""

    def __init__(self, app: FastAPI, endpoint: EndpointState) -> None:
        self._app = app
        self._endpoint = endpoint
        self._base: dict[str, Any] | None = None
        self._key: tuple[Any, ...] | None = None
        self._doc: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any]:
        if self._base is None:
            self._base = self._static()
        key = (self._endpoint.scoring_features(), self._endpoint.forecast_features())
        if self._doc is None or key != self._key:
            self._doc, self._key = self._with_bodies(self._base, *key), key
        return self._doc

    def _static(self) -> dict[str, Any]:
        app = self._app
        doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        guarded = bool(self._endpoint.settings.serve_api_key)
        for path, operations in doc.get("paths", {}).items():
            allow = ", ".join(sorted(m.upper() for m in operations))
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if not parameter.get("required"):
                        parameter["schema"] = _without_null(parameter.get("schema", {}))
                responses = operation.setdefault("responses", {})
                responses["405"] = {
                    "description": f"Method not allowed; this path allows {allow}.",
                    "headers": {"Allow": {"description": "The methods the path allows.", "schema": {"type": "string"}}},
                    "content": {JSON: {"schema": ERROR_REF}},
                }
                if guarded and path not in OPEN_PATHS:
                    operation["security"] = [{SECURITY_SCHEME: []}]
                    responses["401"] = {
                        "description": "X-API-Key missing or wrong.",
                        "content": {JSON: {"schema": ERROR_REF}},
                    }
        components = doc.setdefault("components", {})
        schemas = components.get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body; ours is ErrorBody
            schemas.pop(unused, None)
        if guarded:
            components["securitySchemes"] = {
                SECURITY_SCHEME: {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
            }
        return doc

    def _with_bodies(
        self, base: dict[str, Any], scoring: tuple[str, ...] | None, forecast: tuple[str, ...] | None
    ) -> dict[str, Any]:
        doc = copy.deepcopy(base)
        features = {"invocations": scoring, "forecast": forecast}
        max_rows = self._endpoint.max_rows
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                content = operation.get("requestBody", {}).get("content", {}).get(JSON, {})
                kind = content.get("schema", {}).get(BODY_PLACEHOLDER)
                if kind is not None:
                    content["schema"] = invocation_body_schema(features[kind], max_rows=max_rows)
        return doc
