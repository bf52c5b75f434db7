"""Render normalised rows back into GBFS 1.1, 2.3 or 3.0 documents (what the replay server serves).

Rendering is the inverse of :mod:`bikeshare.gbfs.normalise`: a rendered document normalises back to
the rows it came from, in every version. A null value is left out of the document (the field is
absent), never written as 0. Where a version needs more than a recording holds, the renderer adds
the least it must, consistently:

- v2.3 and v3.0 get a ``vehicle_types`` feed with one mechanical (``bike``, human) and one electric
  (``ebike``, electric_assist) type; each station lists ``vehicle_types_available`` for them.
  Lyft's ``num_ebikes_available`` extension is written in v1.1 only, where the recorded feeds had
  it: a 2.3 or 3.0 consumer sees standard fields alone, so one that adds the extension to the
  electric vehicle types (pybikes does) counts each e-bike once.
- v3.0 ``system_information`` needs ``opening_hours`` and ``feed_contact_email``: "24/7" and a
  placeholder address under ``.invalid``.
- POSIX times below the schemas' minimum (Lyft sends ``last_reported`` 86400 for stations that never
  reported) are raised to that minimum (2015-12-15T05:00Z) in every version, so that all
  renderings stay valid and identical; the value is still years stale.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bikeshare.gbfs.normalise import iso_utc

GBFS_VERSIONS: tuple[str, ...] = ("1.1", "2.3", "3.0")
MIN_POSIX_TIME = 1450155600  # "minimum" of every POSIX time in the v1.1 .. v2.3 schemas
MECHANICAL_TYPE_ID = "bike"
ELECTRIC_TYPE_ID = "ebike"
PLACEHOLDER_CONTACT = "gbfs-replay@bikeshare.invalid"


def feeds_of(version: str) -> list[str]:
    """Feed names a server of ``version`` publishes, discovery first."""
    check_version(version)
    feeds = ["gbfs", "system_information", "station_information", "station_status"]
    if version != "1.1":
        feeds.insert(2, "vehicle_types")
    return feeds


def check_version(version: str) -> str:
    """``version`` if the renderer supports it, else ValueError."""
    if version not in GBFS_VERSIONS:
        raise ValueError(f"unsupported GBFS version {version!r}; choose one of {', '.join(GBFS_VERSIONS)}")
    return version


def render_time(ts: pd.Timestamp, version: str) -> int | str:
    """A time as the version writes it: POSIX seconds (1.x, 2.x) or RFC 3339 (3.0), never below the schema minimum."""
    seconds = max(int(ts.value // 1_000_000_000), MIN_POSIX_TIME)
    if version == "3.0":
        return iso_utc(pd.Timestamp(seconds, unit="s", tz="UTC"))
    return seconds


def envelope(data: dict[str, Any], *, version: str, last_updated: pd.Timestamp, ttl: int) -> dict[str, Any]:
    """The common document frame: last_updated, ttl, version, data."""
    return {"last_updated": render_time(last_updated, version), "ttl": int(ttl), "version": version, "data": data}


def render_discovery(
    base_url: str, *, version: str, last_updated: pd.Timestamp, ttl: int, language: str = "en"
) -> dict[str, Any]:
    """``gbfs.json``: feeds under ``data.<language>`` (1.1, 2.3) or directly under ``data`` (3.0)."""
    base = base_url.rstrip("/")
    feeds = [{"name": name, "url": f"{base}/{name}.json"} for name in feeds_of(version)]
    data: dict[str, Any] = {"feeds": feeds} if version == "3.0" else {language: {"feeds": feeds}}
    return envelope(data, version=version, last_updated=last_updated, ttl=ttl)


def render_station_status(rows: pd.DataFrame, *, version: str, last_updated: pd.Timestamp, ttl: int) -> dict[str, Any]:
    """``station_status`` from normalised status rows (nulls become absent fields)."""
    check_version(version)
    v3 = version == "3.0"
    flags_as_int = version == "1.1"
    bikes_key = "num_vehicles_available" if v3 else "num_bikes_available"
    disabled_key = "num_vehicles_disabled" if v3 else "num_bikes_disabled"
    stations: list[dict[str, Any]] = []
    for row in rows.itertuples(index=False):
        station: dict[str, Any] = {}
        if _present(row.station_id):
            station["station_id"] = str(row.station_id)
        bikes, ebikes = _int_or_none(row.bikes), _int_or_none(row.ebikes)
        if bikes is not None:
            station[bikes_key] = bikes
        if ebikes is not None and version == "1.1":
            station["num_ebikes_available"] = ebikes
        if ebikes is not None and version != "1.1":
            # Both counts are listed even when the mechanical count is unknown or inconsistent;
            # only the electric count is read back (via the vehicle_types feed).
            station["vehicle_types_available"] = [
                {"vehicle_type_id": MECHANICAL_TYPE_ID, "count": max((bikes or 0) - ebikes, 0)},
                {"vehicle_type_id": ELECTRIC_TYPE_ID, "count": ebikes},
            ]
        for key, value in (
            (disabled_key, row.bikes_disabled),
            ("num_docks_available", row.docks),
            ("num_docks_disabled", row.docks_disabled),
        ):
            number = _int_or_none(value)
            if number is not None:
                station[key] = number
        for flag in ("is_installed", "is_renting", "is_returning"):
            value = getattr(row, flag)
            if _present(value):
                station[flag] = int(bool(value)) if flags_as_int else bool(value)
        if _present(row.last_reported):
            station["last_reported"] = render_time(pd.Timestamp(row.last_reported), version)
        stations.append(station)
    return envelope({"stations": stations}, version=version, last_updated=last_updated, ttl=ttl)


def render_station_information(
    rows: pd.DataFrame, *, version: str, last_updated: pd.Timestamp, ttl: int, language: str = "en"
) -> dict[str, Any]:
    """``station_information`` from normalised information rows; v3.0 names are localised lists."""
    check_version(version)
    stations: list[dict[str, Any]] = []
    for row in rows.itertuples(index=False):
        station: dict[str, Any] = {}
        if _present(row.station_id):
            station["station_id"] = str(row.station_id)
        for key in ("name", "short_name"):
            value = getattr(row, key)
            if _present(value):
                station[key] = [{"text": str(value), "language": language}] if version == "3.0" else str(value)
        for key in ("lat", "lon"):
            value = getattr(row, key)
            if _present(value):
                station[key] = float(value)
        capacity = _int_or_none(row.capacity)
        if capacity is not None:
            station["capacity"] = capacity
        if _present(row.region_id):
            station["region_id"] = str(row.region_id)
        stations.append(station)
    return envelope({"stations": stations}, version=version, last_updated=last_updated, ttl=ttl)


def render_system_information(
    info: dict[str, Any], *, version: str, last_updated: pd.Timestamp, ttl: int
) -> dict[str, Any]:
    """``system_information`` from a recording's system_information dict."""
    check_version(version)
    language = str(info.get("language") or "en")
    system_id = str(info.get("system_id") or "replay")
    name = str(info.get("name") or system_id)
    timezone = str(info.get("timezone") or "Etc/UTC")
    if version == "3.0":
        data: dict[str, Any] = {
            "system_id": system_id,
            "languages": [language],
            "name": [{"text": name, "language": language}],
            "opening_hours": "24/7",
            "feed_contact_email": PLACEHOLDER_CONTACT,
            "timezone": timezone,
        }
        for key in ("short_name", "operator"):
            if info.get(key):
                data[key] = [{"text": str(info[key]), "language": language}]
        if info.get("url"):
            data["url"] = str(info["url"])
    else:
        data = {"system_id": system_id, "language": language, "name": name, "timezone": timezone}
        for key in ("short_name", "operator", "url", "phone_number", "email"):
            if info.get(key):
                data[key] = str(info[key])
    return envelope(data, version=version, last_updated=last_updated, ttl=ttl)


def render_vehicle_types(*, version: str, last_updated: pd.Timestamp, ttl: int, language: str = "en") -> dict[str, Any]:
    """``vehicle_types`` (2.3, 3.0): one mechanical and one electric-assist bicycle."""
    if version == "1.1":
        raise ValueError("GBFS 1.1 has no vehicle_types feed")
    check_version(version)
    types: list[dict[str, Any]] = [
        {"vehicle_type_id": MECHANICAL_TYPE_ID, "form_factor": "bicycle", "propulsion_type": "human"},
        {
            "vehicle_type_id": ELECTRIC_TYPE_ID,
            "form_factor": "bicycle",
            "propulsion_type": "electric_assist",
            "max_range_meters": 50000,
        },
    ]
    names = {MECHANICAL_TYPE_ID: "Classic bike", ELECTRIC_TYPE_ID: "E-bike"}
    for entry in types:
        label = names[entry["vehicle_type_id"]]
        entry["name"] = [{"text": label, "language": language}] if version == "3.0" else label
    return envelope({"vehicle_types": types}, version=version, last_updated=last_updated, ttl=ttl)


def _present(value: Any) -> bool:
    return value is not None and not (pd.api.types.is_scalar(value) and pd.isna(value))


def _int_or_none(value: Any) -> int | None:
    return int(value) if _present(value) else None
