"""Builders of small, hand-checkable planning inputs (stations on a line near the equator)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bikeshare.rebalancing.fleet import EARTH_RADIUS_KM, Fleet
from bikeshare.rebalancing.need import NeedParams
from bikeshare.rebalancing.plan import PlanParams

KM_PER_DEG = math.radians(EARTH_RADIUS_KM)  # km per degree of longitude at the equator
AS_OF = pd.Timestamp("2023-03-08T12:00Z")


def station(station_id: str, *, km_east: float, bikes: int, docks: int) -> dict[str, object]:
    return {
        "station_id": station_id,
        "name": station_id,
        "lat": 0.0,
        "lon": km_east / KM_PER_DEG,
        "bikes": bikes,
        "docks": docks,
    }


def flat_forecast(stations: pd.DataFrame, values: dict[str, Sequence[float]], step: int = 5) -> pd.DataFrame:
    """Forecast rows at step, 2*step, ...; ``values`` maps station_id -> expected bikes per horizon."""
    rows = []
    for sid in stations["station_id"]:
        for k, value in enumerate(values[sid], start=1):
            rows.append({"station_id": sid, "horizon_min": k * step, "expected_bikes": float(value)})
    return pd.DataFrame(rows)


def line_fleet(*, trucks: int = 1, capacity: int = 20, loads: Sequence[int] = (8,)) -> Fleet:
    """Trucks at km 0 driving 1 km per minute, no service time, always on shift."""
    return Fleet(
        trucks=trucks,
        capacity=capacity,
        depot=(0.0, 0.0),
        speed_kmh=60.0,
        road_factor=1.0,
        service_min=0.0,
        handling_s_per_bike=0.0,
        shift_start="00:00",
        shift_end="24:00",
        timezone="UTC",
        start_loads=tuple(loads),
    )


def exact_params(*, min_move: int = 4, travel_cost: float = 0.01, time_limit_s: float = 2.0) -> PlanParams:
    """Near-deterministic probabilities (sigma 0.01) and threshold 0, so values are whole minutes."""
    need = NeedParams(threshold=0, sigma_floor=0.01, min_move=min_move, max_move=20)
    return PlanParams(need=need, travel_cost=travel_cost, time_limit_s=time_limit_s, helper_neighbours=4)


def hand_instance() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A needs 8 bikes 1 km east; B1..B3 need 4 each 10 km west; every station is empty for the hour.

    With 8 bikes on one truck: A alone saves 60 min; half of A (4 bikes, still enough: threshold 0)
    then one B (arrival at 12 min, saving 10 samples of 5 min) saves 60 + 50 = 110; two Bs save 100.
    Greedy takes A in full (best value per minute) and is left with no bikes: 60.
    """
    stations = pd.DataFrame(
        [
            station("A", km_east=1.0, bikes=0, docks=40),
            station("B1", km_east=-10.0, bikes=0, docks=20),
            station("B2", km_east=-10.0, bikes=0, docks=20),
            station("B3", km_east=-10.0, bikes=0, docks=20),
        ]
    )
    forecast = flat_forecast(stations, {sid: [0.0] * 12 for sid in stations["station_id"]})
    return stations, forecast


def random_city(n: int, *, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` stations in a 10 x 10 km square with random counts and random linear trends."""
    rng = np.random.default_rng(seed)
    slots = rng.integers(12, 36, n)
    bikes = rng.integers(0, slots + 1)
    stations = pd.DataFrame(
        {
            "station_id": [f"s{i:03d}" for i in range(n)],
            "lat": 37.7 + rng.uniform(0, 0.09, n),
            "lon": -122.5 + rng.uniform(0, 0.11, n),
            "bikes": bikes,
            "docks": slots - bikes,
        }
    )
    trend = rng.normal(0, 0.6, n)
    rows = []
    for i, sid in enumerate(stations["station_id"]):
        for h in range(5, 65, 5):
            mean = float(np.clip(bikes[i] + trend[i] * h / 5, 0, slots[i]))
            rows.append(
                {
                    "station_id": sid,
                    "horizon_min": h,
                    "expected_bikes": mean,
                    "bikes_lo": max(0.0, mean - 2),
                    "bikes_hi": mean + 2,
                }
            )
    return stations, pd.DataFrame(rows)
