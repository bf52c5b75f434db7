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
can count them; unknown extra fields are ignored. :func:`read_station_status` also says which
values were present but of the wrong type (``"many"``, ``true`` or ``2.5`` for a count, a time
outside the years 1678-2262) and how many were converted (``"5"`` or ``5.0`` for a count, ``"true"``
for a flag), so that the contract can tell a wrong type from a missing field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bikeshare.lake.tables import STATION_INFORMATION, STATION_STATUS, UTC_TS, TableSpec

KNOWN_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "2.0", "2.1", "2.2", "2.3", "3.0")

# The columns of the normalised frames: those of the lake's table specs (one declaration).
STATUS_COLUMNS: tuple[str, ...] = tuple(STATION_STATUS.normalised_schema().names)
STATUS_COUNT_COLUMNS: tuple[str, ...] = STATION_STATUS.feed_columns_of(pa.int32())
STATUS_FLAG_COLUMNS: tuple[str, ...] = STATION_STATUS.feed_columns_of(pa.bool_())
INFORMATION_COLUMNS: tuple[str, ...] = tuple(STATION_INFORMATION.normalised_schema().names)

# propulsion_type values (GBFS vehicle_types) that count as e-bikes.
ELECTRIC_PROPULSION: frozenset[str] = frozenset({"electric_assist", "electric"})
# Keys of Vélib's num_bikes_available_types entries that count as e-bikes.
VELIB_EBIKE_KEYS: frozenset[str] = frozenset({"ebike", "electric", "ebikes"})

TS_DTYPE = "datetime64[us, UTC]"
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_TRUE_STRINGS = frozenset({"true", "1", "yes"})
_FALSE_STRINGS = frozenset({"false", "0", "no"})
# Times are stored as timestamp[us] but computed with pandas' nanosecond range: years 1678-2262.
_MIN_TS, _MAX_TS = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
_MAX_POSIX_S = 9_223_372_035  # |POSIX seconds| inside that range


class Read(Enum):
    """What reading one feed value gave."""

    ABSENT = "absent"  # no key, or JSON null
    OK = "ok"  # already of the column's type
    CONVERTED = "converted"  # of another type that denotes the value exactly ("5", 5.0, "true")
    WRONG_TYPE = "wrong_type"  # present but not readable as the column's type ("many", true, 2.5)


@dataclass(frozen=True)
class Normalised:
    """A document's rows in the internal schema, plus what reading its values found.

    ``wrong_type`` maps a column to ``{row: raw value}`` for values that were present but could
    not be read (they are null in ``frame``); ``converted`` counts, per column, values that were
    converted into the column's type (see :class:`Read`).
    """

    frame: pd.DataFrame
    wrong_type: dict[str, dict[int, Any]] = field(default_factory=dict)
    converted: dict[str, int] = field(default_factory=dict)


@dataclass
class _Tally:
    """Collects wrong types and conversions column by column while a document is read."""

    wrong_type: dict[str, dict[int, Any]] = field(default_factory=dict)
    converted: dict[str, int] = field(default_factory=dict)

    def column(self, name: str, values: Sequence[Any], read: Callable[[Sequence[Any]], _Column]) -> Any:
        array, wrong, converted = read(values)
        if wrong:
            self.wrong_type[name] = wrong
        if converted:
            self.converted[name] = converted
        return array

    def result(self, frame: pd.DataFrame) -> Normalised:
        return Normalised(frame=frame, wrong_type=self.wrong_type, converted=self.converted)


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
    return _coerce_ts(value)[0]


def _coerce_ts(value: Any) -> tuple[pd.Timestamp | None, Read]:
    """POSIX seconds (a number; a numeric string is a conversion) or RFC 3339 text, within 1678-2262."""
    if value is None:
        return None, Read.ABSENT
    if isinstance(value, bool):
        return None, Read.WRONG_TYPE
    if isinstance(value, int | float):
        ts = _posix(value)
        return (ts, Read.OK) if ts is not None else (None, Read.WRONG_TYPE)
    if not isinstance(value, str):
        return None, Read.WRONG_TYPE
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        ts = _posix(int(text) if text.lstrip("+-").isdigit() else number)
        return (ts, Read.CONVERTED) if ts is not None else (None, Read.WRONG_TYPE)
    try:
        ts = pd.Timestamp(text)
    except (ValueError, OverflowError):
        return None, Read.WRONG_TYPE
    if ts is pd.NaT:
        return None, Read.WRONG_TYPE
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return (ts, Read.OK) if _MIN_TS <= ts <= _MAX_TS else (None, Read.WRONG_TYPE)


def _posix(seconds: float) -> pd.Timestamp | None:
    if not math.isfinite(seconds) or abs(seconds) > _MAX_POSIX_S:
        return None
    return pd.Timestamp(round(seconds * 1_000_000), unit="us", tz="UTC")


# --- station_status ------------------------------------------------------------------------------


def normalise_station_status(doc: dict, *, vehicle_types: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows of a ``station_status`` document in the internal schema (:data:`STATUS_COLUMNS`).

    ``vehicle_types`` maps vehicle_type_id -> propulsion_type (from the vehicle_types feed); it
    lets e-bikes be counted from ``vehicle_types_available`` when ``num_ebikes_available`` is absent.
    """
    return read_station_status(doc, vehicle_types=vehicle_types).frame


def read_station_status(doc: dict, *, vehicle_types: dict[str, str] | None = None) -> Normalised:
    """:func:`normalise_station_status` plus the wrong-typed and converted values it met."""
    version = detect_version(doc)
    last_updated = feed_last_updated(doc)
    stations = _stations(doc, "station_status")
    v3 = version.startswith("3")
    bikes_key = "num_vehicles_available" if v3 else "num_bikes_available"
    disabled_key = "num_vehicles_disabled" if v3 else "num_bikes_disabled"
    electric = {k for k, p in (vehicle_types or {}).items() if str(p) in ELECTRIC_PROPULSION}
    keys = {  # column -> feed key (the flags and last_reported keep their GBFS names)
        "bikes": bikes_key,
        "docks": "num_docks_available",
        "bikes_disabled": disabled_key,
        "docks_disabled": "num_docks_disabled",
    }
    values = {c: [s.get(keys.get(c, c)) for s in stations] for c in STATION_STATUS.feed_columns if c != "ebikes"}
    values["ebikes"] = [_ebikes(s, electric, vehicle_types is not None) for s in stations]
    return _read_columns(STATION_STATUS, values, last_updated, len(stations))


def _ebikes(station: Mapping[str, Any], electric: set[str], have_types: bool) -> Any:
    if "num_ebikes_available" in station:
        return station["num_ebikes_available"]
    available = station.get("vehicle_types_available")
    if have_types and isinstance(available, list):
        total = 0
        for entry in available:
            if not isinstance(entry, dict):
                return None
            type_id = entry.get("vehicle_type_id")
            if isinstance(type_id, str) and type_id in electric:
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
    return read_station_information(doc, language=language).frame


def read_station_information(doc: dict, *, language: str | None = None) -> Normalised:
    """:func:`normalise_station_information` plus the wrong-typed and converted values it met."""
    detect_version(doc)
    last_updated = feed_last_updated(doc)
    stations = _stations(doc, "station_information")
    localised = {"name", "short_name"}
    values = {
        c: [_localised_or_raw(s.get(c), language) if c in localised else s.get(c) for s in stations]
        for c in STATION_INFORMATION.feed_columns
    }
    return _read_columns(STATION_INFORMATION, values, last_updated, len(stations))


def _read_columns(
    spec: TableSpec, values: Mapping[str, Sequence[Any]], last_updated: pd.Timestamp, n: int
) -> Normalised:
    """Read each feed column of ``spec`` by its type, then add the document's ``last_updated``."""
    tally = _Tally()
    columns = {f.name: tally.column(f.name, values[f.name], _READERS[f.type]) for f in spec.select(spec.feed_columns)}
    columns["last_updated"] = _repeat_ts(last_updated, n)
    return tally.result(pd.DataFrame(columns, columns=list(spec.normalised_schema().names)))


def _localised_or_raw(value: Any, language: str | None) -> Any:
    """The text of a v3.0 localised list; any other value as it is (read as a string later)."""
    return localised_text(value, language) if isinstance(value, list) and _has_text(value) else value


def _has_text(entries: list[Any]) -> bool:
    return any(isinstance(e, dict) and isinstance(e.get("text"), str) for e in entries)


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


_Column = tuple[Any, dict[int, Any], int]  # (array, {row: wrong-typed raw value}, conversions)


def _int64_or_none(values: Sequence[Any], *, bools: bool = False) -> np.ndarray | None:
    """The values as int64 when all are JSON integers (fast path), else None (read one by one)."""
    kinds = (int, bool) if bools else (int,)
    if not all(type(v) in kinds for v in values):
        return None
    try:
        return np.asarray(values, dtype=np.int64) if values else np.zeros(0, dtype=np.int64)
    except OverflowError:  # an integer beyond 64 bits
        return None


def _read_with(
    values: Sequence[Any], coerce: Callable[[Any], tuple[Any, Read]]
) -> tuple[list[Any], dict[int, Any], int]:
    out: list[Any] = []
    wrong: dict[int, Any] = {}
    converted = 0
    for i, value in enumerate(values):
        coerced, read = coerce(value)
        if read is Read.WRONG_TYPE:
            wrong[i] = value
        elif read is Read.CONVERTED:
            converted += 1
        out.append(coerced)
    return out, wrong, converted


def _read_str(values: Sequence[Any]) -> _Column:
    if all(type(v) is str for v in values):
        return pd.Series(list(values), dtype="str"), {}, 0
    out, wrong, converted = _read_with(values, _coerce_str)
    return pd.Series(out, dtype="str"), wrong, converted


def _coerce_str(value: Any) -> tuple[str | None, Read]:
    if value is None:
        return None, Read.ABSENT
    if isinstance(value, bool | dict | list):
        return None, Read.WRONG_TYPE
    return _as_str(value), Read.OK  # ids sent as numbers are common (Vélib'): not counted


def _read_int(values: Sequence[Any]) -> _Column:
    arr = _int64_or_none(values)
    if arr is not None and (not len(arr) or (arr.min() >= _INT32_MIN and arr.max() <= _INT32_MAX)):
        return pd.array(arr.astype(np.int32), dtype="Int32"), {}, 0
    out, wrong, converted = _read_with(values, _coerce_int)
    return pd.array(out, dtype="Int32"), wrong, converted


def _coerce_int(value: Any) -> tuple[int | None, Read]:
    """A JSON integer; an integral float (5.0) or an integral numeric string ("5") is a conversion."""
    if value is None:
        return None, Read.ABSENT
    read = Read.OK
    if isinstance(value, bool):
        return None, Read.WRONG_TYPE
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None, Read.WRONG_TYPE
        read = Read.CONVERTED
    if isinstance(value, float):
        if not value.is_integer():
            return None, Read.WRONG_TYPE
        value, read = int(value), Read.CONVERTED
    if not isinstance(value, int) or not _INT32_MIN <= value <= _INT32_MAX:
        return None, Read.WRONG_TYPE
    return value, read


def _read_bool(values: Sequence[Any]) -> _Column:
    arr = _int64_or_none(values, bools=True)
    if arr is not None and len(arr) and arr.min() >= 0 and arr.max() <= 1:
        return pd.array(arr.astype(bool), dtype="boolean"), {}, 0
    out, wrong, converted = _read_with(values, _coerce_bool)
    return pd.array(out, dtype="boolean"), wrong, converted


def _coerce_bool(value: Any) -> tuple[bool | None, Read]:
    """true/false, or 0/1 (v1.x); "true"/"1"/"yes", "false"/"0"/"no" and 0.0/1.0 are conversions."""
    if value is None:
        return None, Read.ABSENT
    if isinstance(value, bool):
        return value, Read.OK
    if type(value) is int and value in (0, 1):
        return bool(value), Read.OK
    if isinstance(value, float) and value in (0.0, 1.0):
        return bool(value), Read.CONVERTED
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_STRINGS:
            return True, Read.CONVERTED
        if text in _FALSE_STRINGS:
            return False, Read.CONVERTED
    return None, Read.WRONG_TYPE


def _read_float(values: Sequence[Any]) -> _Column:
    out, wrong, converted = _read_with(values, _coerce_float)
    return np.array([np.nan if v is None else v for v in out], dtype=np.float64), wrong, converted


def _coerce_float(value: Any) -> tuple[float | None, Read]:
    if value is None:
        return None, Read.ABSENT
    if isinstance(value, bool):
        return None, Read.WRONG_TYPE
    read = Read.OK
    if isinstance(value, str):
        try:
            value, read = float(value.strip()), Read.CONVERTED
        except ValueError:
            return None, Read.WRONG_TYPE
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None, Read.WRONG_TYPE
    return float(value), read


def _read_ts(values: Sequence[Any]) -> _Column:
    seconds = _int64_or_none(values)
    if seconds is not None and len(seconds) and seconds.min() >= -_MAX_POSIX_S and seconds.max() <= _MAX_POSIX_S:
        array = pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True)).astype(TS_DTYPE).array
        return array, {}, 0
    out, wrong, converted = _read_with(values, _coerce_ts)
    return pd.array([pd.NaT if p is None else p for p in out], dtype=TS_DTYPE), wrong, converted


_READERS: dict[pa.DataType, Callable[[Sequence[Any]], _Column]] = {
    pa.string(): _read_str,
    pa.int32(): _read_int,
    pa.bool_(): _read_bool,
    pa.float64(): _read_float,
    UTC_TS: _read_ts,
}


def _repeat_ts(ts: pd.Timestamp, n: int) -> pd.arrays.DatetimeArray:
    return pd.DatetimeIndex([ts]).astype(TS_DTYPE).repeat(n).array


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
    "Normalised",
    "Read",
    "detect_version",
    "feed_last_updated",
    "iso_utc",
    "localised_text",
    "normalise_station_information",
    "normalise_station_status",
    "normalise_system_information",
    "normalise_vehicle_types",
    "parse_timestamp",
    "read_station_information",
    "read_station_status",
]
