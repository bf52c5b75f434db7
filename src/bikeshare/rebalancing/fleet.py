"""The trucks: how many, how much they carry, where they start, how fast they go, when they work."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from bikeshare.settings import Settings

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Fleet:
    """Trucks and the travel model: minutes = haversine km x road_factor / speed_kmh x 60.

    ``starts`` gives each truck's start position (default: all at the depot) and ``start_loads``
    its bikes on board (default: ``start_load_frac`` of the capacity). ``shift_start``/``shift_end``
    are local ``HH:MM`` times in ``timezone``; a plan only uses the part of its horizon inside them.
    """

    trucks: int = 3
    capacity: int = 20
    start_load_frac: float = 0.5
    depot: tuple[float, float] | None = None
    speed_kmh: float = 18.0
    road_factor: float = 1.35
    service_min: float = 3.0
    handling_s_per_bike: float = 15.0
    shift_start: str = "06:00"
    shift_end: str = "22:00"
    timezone: str = "UTC"
    starts: tuple[tuple[float, float], ...] | None = None
    start_loads: tuple[int, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.trucks < 1 or self.capacity < 1:
            raise ValueError(f"need at least one truck of capacity >= 1, got {self.trucks} x {self.capacity}")
        if self.speed_kmh <= 0 or self.road_factor < 1:
            raise ValueError("speed_kmh must be > 0 and road_factor >= 1")
        if self.starts is not None and len(self.starts) != self.trucks:
            raise ValueError(f"starts gives {len(self.starts)} positions for {self.trucks} trucks")
        if self.start_loads is not None:
            if len(self.start_loads) != self.trucks:
                raise ValueError(f"start_loads gives {len(self.start_loads)} loads for {self.trucks} trucks")
            if any(not 0 <= load <= self.capacity for load in self.start_loads):
                raise ValueError(f"start_loads {self.start_loads} must lie in [0, {self.capacity}]")
        _minutes_of(self.shift_start)
        _minutes_of(self.shift_end)
        ZoneInfo(self.timezone)  # raises on an unknown zone

    @classmethod
    def from_settings(cls, settings: Settings, *, timezone: str = "UTC", **overrides: object) -> Fleet:
        """A fleet from the ``rebalance_*`` settings; keyword overrides win (e.g. trucks=5)."""
        depot = None
        if settings.rebalance_depot_lat is not None and settings.rebalance_depot_lon is not None:
            depot = (settings.rebalance_depot_lat, settings.rebalance_depot_lon)
        values: dict[str, object] = {
            "trucks": settings.rebalance_trucks,
            "capacity": settings.rebalance_truck_capacity,
            "start_load_frac": settings.rebalance_truck_start_load_frac,
            "depot": depot,
            "speed_kmh": settings.rebalance_speed_kmh,
            "road_factor": settings.rebalance_road_factor,
            "service_min": settings.rebalance_service_min,
            "handling_s_per_bike": settings.rebalance_handling_s_per_bike,
            "shift_start": settings.rebalance_shift_start,
            "shift_end": settings.rebalance_shift_end,
            "timezone": timezone,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def loads(self) -> list[int]:
        """Bikes on board of each truck at the start of the plan."""
        if self.start_loads is not None:
            return list(self.start_loads)
        return [round(self.start_load_frac * self.capacity)] * self.trucks

    def start_positions(self, stations: pd.DataFrame) -> list[tuple[float, float]]:
        """Each truck's start: its own position, else the depot, else the stations' centroid."""
        if self.starts is not None:
            return list(self.starts)
        return [self.depot_of(stations)] * self.trucks

    def depot_of(self, stations: pd.DataFrame) -> tuple[float, float]:
        if self.depot is not None:
            return self.depot
        if stations.empty:
            raise ValueError("no depot set and no stations to take the centroid of")
        return float(stations["lat"].mean()), float(stations["lon"].mean())

    def travel_seconds(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Whole seconds of driving between every pair of points."""
        km = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
        return np.rint(km * self.road_factor / self.speed_kmh * 3600.0).astype("int64")

    def service_seconds(self, quantity: np.ndarray) -> np.ndarray:
        """Seconds spent at a stop that moves ``quantity`` bikes (0 bikes: no stop, 0 s)."""
        quantity = np.abs(np.asarray(quantity, dtype="float64"))
        secs = self.service_min * 60.0 + self.handling_s_per_bike * quantity
        return np.where(quantity > 0, np.rint(secs), 0).astype("int64")

    def window_s(self, as_of: pd.Timestamp, horizon_min: int) -> tuple[int, int] | None:
        """Seconds after ``as_of`` during which trucks work within the horizon; None when off shift."""
        as_of = pd.Timestamp(as_of).tz_convert(self.timezone)
        midnight = as_of.normalize()
        horizon_end = as_of + pd.Timedelta(minutes=horizon_min)
        best: tuple[int, int] | None = None
        for day in (-1, 0, 1):  # a shift that started yesterday may still run (e.g. 20:00-24:00)
            base = midnight + pd.Timedelta(days=day)
            start = base + pd.Timedelta(minutes=_minutes_of(self.shift_start))
            end = base + pd.Timedelta(minutes=_minutes_of(self.shift_end))
            if end <= start:
                end += pd.Timedelta(days=1)  # overnight shift
            lo, hi = max(start, as_of), min(end, horizon_end)
            if hi > lo:
                window = (int((lo - as_of).total_seconds()), int((hi - as_of).total_seconds()))
                if best is None or window[0] < best[0]:
                    best = window
        return best


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km (inputs in degrees, broadcast)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _minutes_of(hhmm: str) -> int:
    try:
        hours, minutes = (int(x) for x in hhmm.split(":"))
    except ValueError as exc:
        raise ValueError(f"shift time {hhmm!r} is not HH:MM") from exc
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"shift time {hhmm!r} is not a time of day")
    return hours * 60 + minutes
