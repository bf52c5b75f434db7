"""Write small, exact lakes for feature tests: status snapshots, station and system information."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import STATION_INFORMATION, STATION_STATUS, SYSTEM_INFORMATION, WEATHER, Grain

CITY = "sf"
# Two stations ~110 m apart and one ~2.2 km away (San Francisco).
STATIONS = {
    "a": (37.7750, -122.4190),
    "b": (37.7760, -122.4190),
    "far": (37.7950, -122.4190),
}


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC") if "+" not in text and not text.endswith("Z") else pd.Timestamp(text)


@dataclass(frozen=True)
class Obs:
    """One station's counts in one snapshot."""

    station_id: str
    bikes: int
    docks: int
    ebikes: int = 0
    masked: bool = False


def write_system(lake: Lake, *, timezone: str = "America/Los_Angeles", at: str = "2023-01-01T00:00") -> None:
    valid_from = ts(at)
    frame = pd.DataFrame(
        [
            {
                "system_id": "test",
                "name": "Test Bikes",
                "timezone": timezone,
                "language": "en",
                "valid_from": valid_from,
                "fetched_at": valid_from,
                "content_hash": "h",
            }
        ]
    )
    lake.write(SYSTEM_INFORMATION, frame, city=CITY, dt=partition_value(valid_from, Grain.MINUTE), name="system")


def write_info(
    lake: Lake,
    *,
    at: str = "2023-01-01T00:00",
    stations: dict[str, tuple[float, float]] | None = None,
    capacity: int = 20,
    region: str = "3",
) -> None:
    valid_from = ts(at)
    rows = [
        {
            "station_id": sid,
            "name": sid,
            "short_name": sid,
            "capacity": capacity,
            "lat": lat,
            "lon": lon,
            "region_id": region,
            "valid_from": valid_from,
            "fetched_at": valid_from,
            "batch_id": "info",
            "content_hash": "c",
        }
        for sid, (lat, lon) in (stations or STATIONS).items()
    ]
    lake.write(
        STATION_INFORMATION, pd.DataFrame(rows), city=CITY, dt=partition_value(valid_from, Grain.MINUTE), name="info"
    )


def write_snapshot(lake: Lake, at: pd.Timestamp | str, observations: Iterable[Obs]) -> None:
    """One feed snapshot with ``last_updated = at`` (every station reported just before)."""
    stamp = ts(at) if isinstance(at, str) else at
    rows = [
        {
            "station_id": o.station_id,
            "bikes": o.bikes,
            "ebikes": o.ebikes,
            "docks": o.docks,
            "bikes_disabled": 0,
            "docks_disabled": 0,
            "is_installed": True,
            "is_renting": not o.masked,
            "is_returning": True,
            "last_reported": stamp - pd.Timedelta(seconds=30),
            "last_updated": stamp,
            "fetched_at": stamp + pd.Timedelta(seconds=5),
            "batch_id": f"b{stamp.value}",
            "masked": o.masked,
            "mask_reasons": "not_renting" if o.masked else None,
        }
        for o in observations
    ]
    lake.write(
        STATION_STATUS,
        pd.DataFrame(rows),
        city=CITY,
        dt=partition_value(stamp, Grain.MINUTE),
        name=stamp.strftime("%Y%m%dT%H%M%S"),
        overwrite=True,
    )


def write_weather(lake: Lake, hours: dict[str, float]) -> None:
    """Hourly rows: ISO hour -> temperature (precipitation 0.5 mm, wind 10 km/h)."""
    frame = pd.DataFrame(
        [
            {
                "time": ts(h),
                "weather_station": "72494",
                "temp_c": t,
                "precip_mm": 0.5,
                "wind_kmh": 10.0,
                "condition_code": 3,
            }
            for h, t in hours.items()
        ]
    )
    for day, part in frame.groupby(frame["time"].dt.strftime("%Y-%m-%d")):
        lake.write(WEATHER, part, city=CITY, dt=day, name="weather", overwrite=True)


def new_lake(root: str) -> Lake:
    lake = Lake.open(root)
    write_system(lake)
    write_info(lake)
    return lake
