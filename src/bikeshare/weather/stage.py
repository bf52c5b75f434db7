"""Weather stage: hourly observations at the weather station nearest the system's centre.

The stage only sees a :class:`WeatherSource` (the Meteostat adapter in production). No weather is
never an error here: an unreachable source, no station in range or no rows all give an empty frame
with the table's columns and a logged warning, so downstream gets empty weather columns.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import pandas as pd

from bikeshare.lake.store import Lake, conform, partition_value
from bikeshare.lake.tables import WEATHER

log = logging.getLogger(__name__)

WEATHER_DTYPES: dict[str, str] = {
    "time": "datetime64[us, UTC]",
    "weather_station": "string",
    "temp_c": "float64",
    "precip_mm": "float64",
    "wind_kmh": "float64",
    "condition_code": "Int32",
}
# Source columns (Meteostat parameter names) -> table columns.
SOURCE_COLUMNS: dict[str, str] = {"temp": "temp_c", "prcp": "precip_mm", "wspd": "wind_kmh", "coco": "condition_code"}
WEATHER_FILE = "weather"


class WeatherUnavailableError(RuntimeError):
    """The weather source could not answer (endpoint down, database missing, bad file)."""


@dataclass(frozen=True)
class WeatherStation:
    """A weather station as the source reports it."""

    id: str
    name: str
    lat: float
    lon: float
    distance_km: float


class WeatherSource(Protocol):
    """What the stage needs from a weather provider."""

    def nearby_stations(self, lat: float, lon: float) -> list[WeatherStation]:
        """Stations in range, nearest first; raise :class:`WeatherUnavailableError` when it cannot tell."""
        ...

    def hourly(self, station_id: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Rows ``start <= time < end``: ``time`` (UTC) and :data:`SOURCE_COLUMNS` keys."""
        ...


def empty_weather_frame() -> pd.DataFrame:
    """Zero rows with the weather table's columns and types."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in WEATHER_DTYPES.items()})


def fetch_weather(*, source: WeatherSource, lat: float, lon: float, start: datetime, end: datetime) -> pd.DataFrame:
    """Hourly weather for ``start <= time < end`` at the nearest station that has any.

    Stations are tried nearest first. Bad arguments raise ``ValueError``; a source that cannot
    answer gives an empty frame and a warning.
    """
    start_ts, end_ts = check_window(start, end)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat) or math.isnan(lon):
        raise ValueError(f"latitude/longitude ({lat}, {lon}) out of range")
    try:
        stations = source.nearby_stations(lat, lon)
    except WeatherUnavailableError as exc:
        log.warning("no weather: %s", exc)
        return empty_weather_frame()
    if not stations:
        log.warning("no weather: no weather station in range of (%.4f, %.4f)", lat, lon)
        return empty_weather_frame()
    for station in stations:
        try:
            raw = source.hourly(station.id, start_ts.to_pydatetime(), end_ts.to_pydatetime())
        except WeatherUnavailableError as exc:
            log.warning("weather station %s (%s): %s", station.id, station.name, exc)
            continue
        frame = to_weather_rows(raw, station_id=station.id, start=start_ts, end=end_ts)
        if len(frame):
            log.info(
                "weather: %d hourly rows from %s (%s, %.1f km away)",
                len(frame),
                station.id,
                station.name,
                station.distance_km,
            )
            return frame
        log.info("weather station %s (%s) has no rows in [%s, %s)", station.id, station.name, start_ts, end_ts)
    log.warning(
        "no weather: none of the %d nearest stations (%s) has rows in [%s, %s)",
        len(stations),
        ", ".join(s.id for s in stations),
        start_ts,
        end_ts,
    )
    return empty_weather_frame()


def to_weather_rows(raw: pd.DataFrame, *, station_id: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Map a source frame to the table's columns, keeping ``start <= time < end``, one row per hour."""
    if raw.empty:
        return empty_weather_frame()
    missing = [c for c in ("time", *SOURCE_COLUMNS) if c not in raw.columns]
    if missing:
        raise ValueError(f"weather source frame lacks columns {missing}")
    time = pd.to_datetime(raw["time"], utc=True).dt.as_unit("us")
    out = pd.DataFrame({"time": time}, index=raw.index)
    out["weather_station"] = pd.Series(station_id, index=raw.index, dtype="string")
    for source_col, col in SOURCE_COLUMNS.items():
        values = pd.to_numeric(raw[source_col], errors="coerce").astype("float64")
        out[col] = values.round().astype("Int32") if col == "condition_code" else values
    measured = out[list(SOURCE_COLUMNS.values())].notna().any(axis=1)
    out = out[(out["time"] >= start) & (out["time"] < end) & measured]
    out = out.sort_values("time").drop_duplicates("time", keep="last").reset_index(drop=True)
    return out.astype(WEATHER_DTYPES)


def write_weather(lake: Lake, *, frame: pd.DataFrame, city: str) -> list[str]:
    """Store weather rows in day partitions; return the files written.

    Rows of a day already in the lake are kept unless the frame has the same hour, which it
    replaces; a day whose content would not change is not rewritten.
    """
    _check_frame(frame)
    if frame.empty:
        return []
    written: list[str] = []
    days = frame["time"].map(lambda ts: partition_value(ts, WEATHER.grain))
    for day, rows in frame.groupby(days, sort=True):
        existing = lake.read(WEATHER, city=city, dts=[day]).to_pandas()
        kept = existing[~existing["time"].isin(rows["time"])]
        merged = pd.concat([kept.astype(WEATHER_DTYPES), rows], ignore_index=True).sort_values("time")
        new_table = conform(merged.reset_index(drop=True), WEATHER.schema)
        if len(existing) and new_table.equals(conform(existing.sort_values("time"), WEATHER.schema)):
            continue
        path = lake.write(WEATHER, new_table, city=city, dt=str(day), name=WEATHER_FILE, overwrite=True)
        if path:
            written.append(path)
    return written


def system_centre(lake: Lake, *, city: str) -> tuple[float, float] | None:
    """Mean lat/lon of the city's current stations (invalid coordinates left out), or ``None``."""
    con = lake.connect()
    try:
        rows = con.execute(
            """
            SELECT avg(lat), avg(lon), count(*) FROM station_information_current
            WHERE city = ? AND lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180
              AND NOT (lat = 0 AND lon = 0)
            """,
            [city],
        ).fetchall()
    finally:
        con.close()
    lat, lon, count = rows[0]
    if not count:
        return None
    return float(lat), float(lon)


def check_window(start: datetime, end: datetime) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC timestamps of a ``[start, end)`` window; naive or reversed windows are refused."""
    stamps = []
    for name, value in (("start", start), ("end", end)):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is None:
            raise ValueError(f"weather window {name} {value} has no timezone; pass UTC-aware times")
        stamps.append(stamp.tz_convert("UTC"))
    if stamps[0] >= stamps[1]:
        raise ValueError(f"weather window start {stamps[0]} is not before end {stamps[1]}")
    return stamps[0], stamps[1]


def _check_frame(frame: pd.DataFrame) -> None:
    names = list(WEATHER_DTYPES)
    missing = [c for c in names if c not in frame.columns]
    extra = [c for c in frame.columns if c not in names]
    if missing or extra:
        raise ValueError(f"weather frame columns differ from {names}: missing {missing}, unexpected {extra}")
    if frame.empty:
        return
    if not isinstance(frame["time"].dtype, pd.DatetimeTZDtype):
        raise ValueError(f"weather column 'time' must be timezone-aware UTC, got {frame['time'].dtype}")
    if frame["time"].isna().any():
        raise ValueError("weather column 'time' has missing values")
    if frame["time"].duplicated().any():
        dupes = sorted(frame.loc[frame["time"].duplicated(), "time"].astype(str).unique())[:5]
        raise ValueError(f"weather frame repeats hours {dupes}")
