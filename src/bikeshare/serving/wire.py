"""The /invocations wire format: JSON bytes in, a float matrix out, columnar JSON bytes back.

This is the hot path, so it never builds a DataFrame or a pydantic model: orjson parses the body,
``operator.itemgetter`` picks the feature columns of every row in C, and numpy turns the rows into
one float64 matrix whose columns follow the model's feature order. Every way a body can be wrong
raises :class:`WireError` with the HTTP status, a stable code and a message naming the problem.

Request (either orientation; ``station_id`` is optional, echoed back, and never a feature: a string,
null, or an integer of at most 2**53 - 1 in size, the integers a JSON number holds exactly)::

    {"columns": ["station_id", "<feature>", ...], "data": [[...], ...]}
    {"instances": [{"station_id": "...", "<feature>": value, ...}, ...]}

A feature value is a JSON number, a boolean (0/1) or null (missing, NaN for the model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from bikeshare.serving.errors import JSON, ApiError, error_response

STATION_ID = "station_id"
NUMERIC_TYPES = frozenset({float, int, bool, type(None)})
STATION_ID_TYPES = frozenset({str, int, type(None)})
MAX_SAFE_INT = 2**53 - 1  # an integer station_id must be exact as a JSON (double) number
_SHOWN = 20  # at most this many names in one message


class WireError(ApiError):
    """A body the endpoint refuses: HTTP ``status``, stable ``code``, human ``detail``."""


@dataclass(frozen=True, slots=True)
class FeatureBatch:
    """Parsed rows: ``matrix`` columns follow the requested feature order; ``station_ids`` if sent."""

    matrix: np.ndarray
    station_ids: list[Any] | None

    @property
    def rows(self) -> int:
        return int(self.matrix.shape[0])


def is_json(content_type: str) -> bool:
    """True for application/json and application/*+json (parameters such as charset ignored)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def unsupported_media_type(content_type: str) -> Response:
    return error_response(415, "unsupported_media_type", f"send application/json, not {content_type!r}")


def parse_invocation(body: bytes, features: Sequence[str], *, max_rows: int) -> FeatureBatch:
    """Parse an /invocations body into the ``features`` matrix; :class:`WireError` on bad input."""
    if not body:
        raise WireError(400, "empty_body", "the request body is empty; send a JSON object (see docs/serving.md)")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WireError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise WireError(400, "wrong_shape", f"the body must be a JSON object, got {_json_kind(doc)}")
    if "instances" in doc:
        if "columns" in doc or "data" in doc:
            raise WireError(400, "wrong_shape", "send either 'instances' or 'columns' + 'data', not both")
        return _parse_records(doc["instances"], features, body=body, doc_keys=doc, max_rows=max_rows)
    if "columns" in doc and "data" in doc:
        return _parse_split(doc["columns"], doc["data"], features, body=body, doc_keys=doc, max_rows=max_rows)
    keys = ", ".join(repr(k) for k in list(doc)[:_SHOWN]) or "none"
    raise WireError(
        400,
        "wrong_shape",
        f"expected {{'columns': [...], 'data': [[...]]}} or {{'instances': [{{...}}]}}; the object has keys {keys}",
    )


def _parse_split(
    columns: Any, data: Any, features: Sequence[str], *, body: bytes, doc_keys: dict[str, Any], max_rows: int
) -> FeatureBatch:
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise WireError(400, "wrong_shape", "'columns' must be a list of column names (strings)")
    position = {name: i for i, name in enumerate(columns)}
    if len(position) != len(columns):
        seen: set[str] = set()
        dupes = sorted({c for c in columns if c in seen or seen.add(c)})
        raise WireError(400, "duplicate_columns", f"'columns' names {_names(dupes)} more than once")
    missing = [name for name in features if name not in position]
    if missing:
        raise WireError(422, "missing_features", f"missing {len(missing)} feature column(s): {_names(missing)}")
    if not isinstance(data, list):
        raise WireError(400, "wrong_shape", f"'data' must be a list of rows, got {_json_kind(data)}")
    _check_rows(len(data), max_rows)
    width = len(columns)
    if set(map(type, data)) != {list} or set(map(len, data)) != {width}:
        for i, row in enumerate(data):
            if not isinstance(row, list):
                raise WireError(400, "wrong_shape", f"row {i} of 'data' is {_json_kind(row)}, not a list of values")
            if len(row) != width:
                raise WireError(400, "wrong_shape", f"row {i} of 'data' has {len(row)} values; 'columns' names {width}")
    station_ids = None
    known = len(doc_keys) + width
    if STATION_ID in position:
        station_ids = list(map(itemgetter(position[STATION_ID]), data))
        station_ids = _check_station_ids(station_ids, row_label="row")
        known += sum(map(_is_str, station_ids))
    picked = list(map(_getter([position[name] for name in features]), data))
    matrix = _to_matrix(picked, features, row_label="row", no_strings=_only_known_strings(body, known))
    return FeatureBatch(matrix=matrix, station_ids=station_ids)


def _parse_records(
    instances: Any, features: Sequence[str], *, body: bytes, doc_keys: dict[str, Any], max_rows: int
) -> FeatureBatch:
    if not isinstance(instances, list):
        raise WireError(400, "wrong_shape", f"'instances' must be a list of objects, got {_json_kind(instances)}")
    _check_rows(len(instances), max_rows)
    if set(map(type, instances)) != {dict}:
        bad = next(i for i, row in enumerate(instances) if not isinstance(row, dict))
        raise WireError(400, "wrong_shape", f"instance {bad} is {_json_kind(instances[bad])}, not an object")
    getter = _getter(list(features))
    station_ids = None
    known = len(doc_keys) + sum(map(len, instances))
    if any(STATION_ID in row for row in instances):
        station_ids = [row.get(STATION_ID) for row in instances]
        station_ids = _check_station_ids(station_ids, row_label="instance")
        known += sum(map(_is_str, station_ids))
    try:
        picked = list(map(getter, instances))
    except KeyError:
        for i, row in enumerate(instances):
            missing = [name for name in features if name not in row]
            if missing:
                raise WireError(
                    422, "missing_features", f"instance {i} lacks {len(missing)} feature(s): {_names(missing)}"
                ) from None
        raise  # pragma: no cover - a KeyError means some instance lacks a feature
    matrix = _to_matrix(picked, features, row_label="instance", no_strings=_only_known_strings(body, known))
    return FeatureBatch(matrix=matrix, station_ids=station_ids)


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise WireError(400, "empty_batch", "the batch holds no rows to score")
    if rows > max_rows:
        raise WireError(
            413, "batch_too_large", f"the batch holds {rows} rows; the limit is {max_rows} (serve_max_batch_rows)"
        )


def _getter(keys: list[Any]) -> Callable[[Any], tuple[Any, ...]]:
    if len(keys) == 1:
        key = keys[0]
        return lambda row: (row[key],)
    return itemgetter(*keys)


def _to_matrix(
    picked: list[tuple[Any, ...]], features: Sequence[str], *, row_label: str, no_strings: bool
) -> np.ndarray:
    """Rows of feature values -> float64 matrix; a wrong type is a 422 naming feature and row.

    numpy would silently parse a numeric-looking string, so strings must be ruled out first: by
    the caller's quote count (``no_strings``), else by one C-level pass over every value's type.
    Lists and objects make numpy raise, and the slow scan then names the culprit.
    """
    if not no_strings and not set(map(type, chain.from_iterable(picked))) <= NUMERIC_TYPES:
        _raise_wrong_type(picked, features, row_label=row_label)
    try:
        flat = np.fromiter(chain.from_iterable(picked), dtype=np.float64, count=len(picked) * len(features))
    except (TypeError, ValueError):
        _raise_wrong_type(picked, features, row_label=row_label)
        raise  # pragma: no cover - the scan above always finds the value numpy refused
    return flat.reshape(len(picked), len(features))


def _raise_wrong_type(picked: list[tuple[Any, ...]], features: Sequence[str], *, row_label: str) -> None:
    for i, row in enumerate(picked):
        for name, value in zip(features, row, strict=True):
            if type(value) not in NUMERIC_TYPES:
                raise WireError(
                    422,
                    "wrong_type",
                    f"feature {name!r} of {row_label} {i} must be a number, a boolean or null; "
                    f"got {_json_kind(value)} {_preview(value)}",
                )


def _only_known_strings(body: bytes, known: int) -> bool:
    """True when the body's only JSON strings are the ``known`` ones (keys, names, station ids).

    Every JSON string contributes exactly two unescaped quote characters, so counting quotes
    (a fast C scan) proves no feature value is a string, unless the body holds escapes.
    """
    return body.find(b"\\") < 0 and body.count(b'"') == 2 * known


def _is_str(value: Any) -> bool:
    return type(value) is str


def _check_station_ids(station_ids: list[Any], *, row_label: str) -> list[Any]:
    """The ids as echoed: strings, nulls and JSON-safe integers (an integral float such as 12.0 becomes 12)."""
    kinds = set(map(type, station_ids))
    if kinds <= {str, type(None)}:
        return station_ids
    ids = [int(v) if type(v) is float and v.is_integer() else v for v in station_ids] if float in kinds else station_ids
    for i, v in enumerate(ids):
        if type(v) not in STATION_ID_TYPES or (type(v) is int and not -MAX_SAFE_INT <= v <= MAX_SAFE_INT):
            shown = f"{_json_kind(station_ids[i])} {_preview(station_ids[i])}"
            raise WireError(
                422,
                "wrong_type",
                f"'station_id' of {row_label} {i} must be a string or an integer of at most 2**53 - 1 in size; "
                f"got {shown}",
            )
    return ids


def encode_response(
    *,
    alias: str,
    models: dict[str, Any],
    station_ids: list[Any] | None,
    p_bikes: np.ndarray | None,
    p_docks: np.ndarray | None,
    short_bikes: np.ndarray | None,
    short_docks: np.ndarray | None,
) -> bytes:
    """The columnar response document (numpy arrays serialised by orjson without a Python loop).

    A target whose arrays are ``None`` (a request for one target) is left out, with its model.
    """
    scored = {t for t, p in (("bikes", p_bikes), ("docks", p_docks)) if p is not None}
    doc: dict[str, Any] = {"alias": alias, "models": {t: m for t, m in models.items() if t in scored}}
    if station_ids is not None:
        doc["station_id"] = station_ids
    for key, value in (("p_bikes", p_bikes), ("p_docks", p_docks), ("short_bikes", short_bikes),
                       ("short_docks", short_docks)):  # fmt: skip
        if value is not None:
            doc[key] = value
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - orjson yields only JSON types


def _preview(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:37] + "..."
