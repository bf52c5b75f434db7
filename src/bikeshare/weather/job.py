"""`bikeshare weather fetch`: pick the centre and the window, fetch, store."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from bikeshare.lake.store import Lake
from bikeshare.weather.stage import WeatherSource, fetch_weather, system_centre, write_weather

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK = pd.Timedelta(hours=24)


@dataclass(frozen=True)
class WeatherFetchReport:
    """What one fetch did; ``rows`` is 0 when no weather was available."""

    start: pd.Timestamp
    end: pd.Timestamp
    centre: tuple[float, float] | None
    rows: int = 0
    weather_station: str | None = None
    files: list[str] = field(default_factory=list)


def default_window(lake: Lake, *, city: str, now: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The hours the lake's station_status covers for the city, else the last day up to ``now``."""
    con = lake.connect()
    try:
        rows = con.execute(
            "SELECT min(last_updated), max(last_updated) FROM station_status WHERE city = ?", [city]
        ).fetchall()
    finally:
        con.close()
    first, last = rows[0]
    if first is None or last is None:
        end = now.tz_convert("UTC").floor("h") + pd.Timedelta(hours=1)
        return end - DEFAULT_LOOKBACK, end
    first_ts = pd.Timestamp(first).tz_convert("UTC")
    last_ts = pd.Timestamp(last).tz_convert("UTC")
    return first_ts.floor("h"), last_ts.floor("h") + pd.Timedelta(hours=1)


def fetch_and_store(
    *,
    lake: Lake,
    source: WeatherSource,
    city: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    lat: float | None = None,
    lon: float | None = None,
    now: pd.Timestamp | None = None,
) -> WeatherFetchReport:
    """Fetch hourly weather for ``[start, end)`` near the centre and write it to the lake.

    The centre is ``lat``/``lon`` when given, else the mean of the city's current stations. A
    missing bound defaults to the span of the lake's station_status (or the last day).
    """
    if (lat is None) != (lon is None):
        raise ValueError("pass both latitude and longitude, or neither")
    if start is None or end is None:
        default_start, default_end = default_window(lake, city=city, now=now or pd.Timestamp.now(tz="UTC"))
        start = default_start if start is None else start
        end = default_end if end is None else end
    centre = (lat, lon) if lat is not None and lon is not None else system_centre(lake, city=city)
    if centre is None:
        log.warning("no weather: the lake has no stations for city %r to centre on; pass latitude/longitude", city)
        return WeatherFetchReport(start=start, end=end, centre=None)
    frame = fetch_weather(source=source, lat=centre[0], lon=centre[1], start=start, end=end)
    files = write_weather(lake, frame=frame, city=city)
    station = str(frame["weather_station"].iloc[0]) if len(frame) else None
    return WeatherFetchReport(
        start=start, end=end, centre=centre, rows=len(frame), weather_station=station, files=files
    )
