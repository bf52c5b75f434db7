"""Turn GBFS v1.0 .. v3.0 documents into one internal schema.

Differences handled here:

- v1.0 documents carry no ``version``; v1.x sends the ``is_*`` flags as 0/1, v2+ as booleans
  (both are accepted everywhere).
- v3.0 renames ``num_bikes_available``/``num_bikes_disabled`` to ``num_vehicles_*``, writes
  timestamps as RFC 3339 strings instead of POSIX seconds, and localises names as arrays of
  ``{text, language}``; its discovery document has no language key.
- e-bikes come from ``num_ebikes_available`` (Lyft feeds), from ``vehicle_types_available`` summed
  over the electric vehicle types (v2.1+), or from Vélib's ``num_bikes_available_types`` list.

Only a structurally broken document raises :class:`FeedFormatError`. Row-level defects (a missing
field, a count of the wrong type, a missing ``station_id``) become nulls so that the data contract
can count them; unknown extra fields are ignored.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

KNOWN_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "2.0", "2.1", "2.2", "2.3", "3.0")

STATUS_COLUMNS: tuple[str, ...] = (
    "station_id",
    "bikes",
    "ebikes",
    "docks",
    "bikes_disabled",
    "docks_disabled",
    "is_installed",
    "is_renting",
    "is_returning",
    "last_reported",
    "last_updated",
)
STATUS_COUNT_COLUMNS: tuple[str, ...] = ("bikes", "ebikes", "docks", "bikes_disabled", "docks_disabled")
STATUS_FLAG_COLUMNS: tuple[str, ...] = ("is_installed", "is_renting", "is_returning")

INFORMATION_COLUMNS: tuple[str, ...] = (
    "station_id",
    "name",
    "short_name",
    "capacity",
    "lat",
    "lon",
    "region_id",
    "last_updated",
)

# propulsion_type values (GBFS vehicle_types) that count as e-bikes.
ELECTRIC_PROPULSION: frozenset[str] = frozenset({"electric_assist", "electric"})
# Keys of Vélib's num_bikes_available_types entries that count as e-bikes.
VELIB_EBIKE_KEYS: frozenset[str] = frozenset({"ebike", "electric", "ebikes"})

TS_DTYPE = "datetime64[us, UTC]"
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_TRUE_STRINGS = frozenset({"true", "1", "yes"})
_FALSE_STRINGS = frozenset({"false", "0", "no"})


class FeedFormatError(ValueError):
    """A document that is not a valid GBFS feed of its kind; the message names what is wrong."""


# --- document level ------------------------------------------------------------------------------


def detect_version(doc: dict) -> str:
    """The GBFS version of ``doc`` ("1.0".."3.0"); a document without ``version`` is 1.x ("1.1")."""
    _require_object(doc, "document")
    raw = doc.get("version")
    if raw is None:
        return "1.1"
    if not isinstance(raw, str):
        raise FeedFormatError(f"version must be a string such as '2.3', got {raw!r}")
    base = raw.strip().split("-", 1)[0]  # "2.1-RC" -> "2.1"
    if base in KNOWN_VERSIONS:
        return base
    major = base.split(".", 1)[0]
    same_major = [v for v in KNOWN_VERSIONS if v.split(".", 1)[0] == major]
    if not same_major:
        raise FeedFormatError(f"unsupported GBFS version {raw!r}; known: {', '.join(KNOWN_VERSIONS)}")
    # A later minor of a known major (e.g. 3.1) reads like the newest minor we know.
    return same_major[-1]


def feed_last_updated(doc: dict) -> pd.Timestamp:
    """The document's ``last_updated`` as a UTC timestamp (POSIX seconds or RFC 3339 accepted)."""
    _require_object(doc, "document")
    if "last_updated" not in doc:
        raise FeedFormatError("document has no last_updated")
    ts = parse_timestamp(doc["last_updated"])
    if ts is None:
        raise FeedFormatError(f"last_updated is not a POSIX time or RFC 3339 string: {doc['last_updated']!r}")
    return ts


def parse_timestamp(value: Any) -> pd.Timestamp | None:
    """One GBFS time value as a UTC timestamp; ``None`` when it is missing or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        try:
            return pd.Timestamp(round(value * 1_000_000), unit="us", tz="UTC")
        except (OverflowError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return pd.Timestamp(round(float(text) * 1_000_000), unit="us", tz="UTC")
        except (ValueError, OverflowError):
            pass
        try:
            ts = pd.Timestamp(text)
        except (ValueError, OverflowError):
            return None
        if ts is pd.NaT:
            return None
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return None


# --- station_status ------------------------------------------------------------------------------


def normalise_station_status(doc: dict, *, vehicle_types: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows of a ``station_status`` document in the internal schema (:data:`STATUS_COLUMNS`).

    ``vehicle_types`` maps vehicle_type_id -> propulsion_type (from the vehicle_types feed); it
    lets e-bikes be counted from ``vehicle_types_available`` when ``num_ebikes_available`` is absent.
    """
    version = detect_version(doc)
    last_updated = feed_last_updated(doc)
    stations = _stations(doc, "station_status")
    v3 = version.startswith("3")
    bikes_key = "num_vehicles_available" if v3 else "num_bikes_available"
    disabled_key = "num_vehicles_disabled" if v3 else "num_bikes_disabled"
    electric = {k for k, p in (vehicle_types or {}).items() if str(p) in ELECTRIC_PROPULSION}

    n = len(stations)
    columns: dict[str, Any] = {
        "station_id": _str_column(s.get("station_id") for s in stations),
        "bikes": _int_column([s.get(bikes_key) for s in stations]),
        "ebikes": _int_column([_ebikes(s, electric, vehicle_types is not None) for s in stations]),
        "docks": _int_column([s.get("num_docks_available") for s in stations]),
        "bikes_disabled": _int_column([s.get(disabled_key) for s in stations]),
        "docks_disabled": _int_column([s.get("num_docks_disabled") for s in stations]),
    }
    for flag in STATUS_FLAG_COLUMNS:
        columns[flag] = _bool_column([s.get(flag) for s in stations])
    columns["last_reported"] = _ts_column([s.get("last_reported") for s in stations])
    columns["last_updated"] = _repeat_ts(last_updated, n)
    return pd.DataFrame(columns, columns=list(STATUS_COLUMNS))


def _ebikes(station: Mapping[str, Any], electric: set[str], have_types: bool) -> Any:
    if "num_ebikes_available" in station:
        return station["num_ebikes_available"]
    available = station.get("vehicle_types_available")
    if have_types and isinstance(available, list):
        total = 0
        for entry in available:
            if not isinstance(entry, dict):
                return None
            if entry.get("vehicle_type_id") in electric:
                count = entry.get("count")
                if not _is_int(count):
                    return None
                total += count
        return total
    velib = station.get("num_bikes_available_types")
    if isinstance(velib, dict):
        velib = [velib]
    if isinstance(velib, list):
        total = 0
        for entry in velib:
            if not isinstance(entry, dict):
                return None
            for key, count in entry.items():
                if key.lower() in VELIB_EBIKE_KEYS:
                    if not _is_int(count):
                        return None
                    total += count
        return total
    return None


def normalise_vehicle_types(doc: dict) -> dict[str, str]:
    """vehicle_type_id -> propulsion_type from a ``vehicle_types`` document (v2.1+)."""
    _require_object(doc, "vehicle_types document")
    data = _require_object(doc.get("data"), "vehicle_types data")
    types = data.get("vehicle_types")
    if not isinstance(types, list):
        raise FeedFormatError("vehicle_types: data.vehicle_types must be a list")
    out: dict[str, str] = {}
    for i, entry in enumerate(types):
        if not isinstance(entry, dict):
            raise FeedFormatError(f"vehicle_types: entry {i} is not an object")
        type_id, propulsion = entry.get("vehicle_type_id"), entry.get("propulsion_type")
        if type_id is not None and propulsion is not None:
            out[str(type_id)] = str(propulsion)
    return out


# --- station_information / system_information ------------------------------------------------


def normalise_station_information(doc: dict, *, language: str | None = None) -> pd.DataFrame:
    """Rows of a ``station_information`` document (:data:`INFORMATION_COLUMNS`).

    v3.0 localised names pick ``language`` (the system language) when present, else the first entry.
    """
    detect_version(doc)
    last_updated = feed_last_updated(doc)
    stations = _stations(doc, "station_information")
    columns: dict[str, Any] = {
        "station_id": _str_column(s.get("station_id") for s in stations),
        "name": _str_column(localised_text(s.get("name"), language) for s in stations),
        "short_name": _str_column(localised_text(s.get("short_name"), language) for s in stations),
        "capacity": _int_column([s.get("capacity") for s in stations]),
        "lat": _float_column([s.get("lat") for s in stations]),
        "lon": _float_column([s.get("lon") for s in stations]),
        "region_id": _str_column(s.get("region_id") for s in stations),
        "last_updated": _repeat_ts(last_updated, len(stations)),
    }
    return pd.DataFrame(columns, columns=list(INFORMATION_COLUMNS))


def normalise_system_information(doc: dict) -> dict:
    """``system_id, name, timezone, language, last_updated`` of a ``system_information`` document."""
    detect_version(doc)
    last_updated = feed_last_updated(doc)
    data = _require_object(doc.get("data"), "system_information data")
    language = data.get("language")
    languages = data.get("languages")
    if language is None and isinstance(languages, list) and languages:
        language = languages[0]
    return {
        "system_id": _as_str(data.get("system_id")),
        "name": localised_text(data.get("name"), language),
        "timezone": _as_str(data.get("timezone")),
        "language": _as_str(language),
        "last_updated": last_updated,
    }


def localised_text(value: Any, language: str | None = None) -> str | None:
    """A plain string, or the ``text`` of a v3.0 ``[{text, language}]`` list in ``language`` (else the first)."""
    if isinstance(value, list):
        entries = [e for e in value if isinstance(e, dict) and isinstance(e.get("text"), str)]
        if not entries:
            return None
        if language:
            for entry in entries:
                if entry.get("language") == language:
                    return entry["text"]
        return entries[0]["text"]
    return _as_str(value)


# --- helpers ---------------------------------------------------------------------------------


def _require_object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise FeedFormatError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _stations(doc: dict, feed: str) -> list[dict]:
    data = _require_object(doc.get("data"), f"{feed}: data")
    stations = data.get("stations")
    if not isinstance(stations, list):
        raise FeedFormatError(f"{feed}: data.stations must be a list, got {type(stations).__name__}")
    for i, station in enumerate(stations):
        if not isinstance(station, dict):
            raise FeedFormatError(f"{feed}: station entry {i} is not an object ({type(station).__name__})")
    return stations


def _is_int(value: Any) -> bool:
    return type(value) is int


def _as_str(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _str_column(values: Iterable[Any]) -> pd.Series:
    values = list(values)
    if all(type(v) is str for v in values):
        return pd.Series(values, dtype="str")
    return pd.Series([_as_str(v) for v in values], dtype="str")


def _int_column(values: Sequence[Any]) -> pd.arrays.IntegerArray:
    if all(type(v) is int for v in values):
        arr = np.asarray(values, dtype=np.int64) if values else np.zeros(0, dtype=np.int64)
        if not len(arr) or (arr.min() >= _INT32_MIN and arr.max() <= _INT32_MAX):
            return pd.array(arr.astype(np.int32), dtype="Int32")
    return pd.array([_coerce_int(v) for v in values], dtype="Int32")


def _coerce_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int) or not _INT32_MIN <= value <= _INT32_MAX:
        return None
    return value


def _bool_column(values: Sequence[Any]) -> pd.arrays.BooleanArray:
    if values and all(type(v) is int or type(v) is bool for v in values):
        arr = np.asarray(values, dtype=np.int64)
        if arr.min() >= 0 and arr.max() <= 1:
            return pd.array(arr.astype(bool), dtype="boolean")
    return pd.array([_coerce_bool(v) for v in values], dtype="boolean")


def _coerce_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if type(value) is int or isinstance(value, float):
        return None if value not in (0, 1) else bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_STRINGS:
            return True
        if text in _FALSE_STRINGS:
            return False
    return None


def _repeat_ts(ts: pd.Timestamp, n: int) -> pd.arrays.DatetimeArray:
    return pd.DatetimeIndex([ts]).astype(TS_DTYPE).repeat(n).array


def _float_column(values: Sequence[Any]) -> np.ndarray:
    out = np.full(len(values), np.nan, dtype=np.float64)
    for i, v in enumerate(values):
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[i] = v
        elif isinstance(v, str):
            with contextlib.suppress(ValueError):
                out[i] = float(v)
    return out


def _ts_column(values: Sequence[Any]) -> pd.arrays.DatetimeArray:
    if values and all(type(v) is int for v in values):
        seconds = np.asarray(values, dtype=np.int64)
        return pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True)).astype(TS_DTYPE).array
    parsed: list[pd.Timestamp | None] = [parse_timestamp(v) for v in values]
    return pd.array([pd.NaT if p is None else p for p in parsed], dtype=TS_DTYPE)


def iso_utc(ts: pd.Timestamp | datetime) -> str:
    """RFC 3339 UTC text with a ``Z`` suffix, second resolution (what v3.0 feeds send)."""
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


__all__: list[str] = [
    "INFORMATION_COLUMNS",
    "KNOWN_VERSIONS",
    "STATUS_COLUMNS",
    "FeedFormatError",
    "detect_version",
    "feed_last_updated",
    "iso_utc",
    "localised_text",
    "normalise_station_information",
    "normalise_station_status",
    "normalise_system_information",
    "normalise_vehicle_types",
    "parse_timestamp",
]
