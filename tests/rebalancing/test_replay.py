"""Plans applied to recorded counts: moves at arrival, what trucks really carry, stockout minutes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bikeshare.rebalancing.replay import replay_plan, stockout_minutes

AS_OF = pd.Timestamp("2023-03-08T12:00Z")


def _stop(truck: int, station_id: str, action: str, quantity: int, minute: float) -> dict[str, object]:
    arrival = AS_OF + pd.Timedelta(minutes=minute)
    return {"truck": truck, "station_id": station_id, "action": action, "quantity": quantity, "arrival": arrival}


def _replay(stops: list[dict[str, object]], bikes: np.ndarray, slots: np.ndarray, ids: list[str], loads: list[int]):
    return replay_plan(
        pd.DataFrame(stops),
        as_of=AS_OF,
        station_ids=ids,
        bikes=bikes,
        slots=slots,
        start_loads=loads,
        capacity=20,
        threshold=2,
        step_min=5,
    )


def test_stockout_minutes_count_short_samples_and_skip_unknown_ones() -> None:
    bikes = np.array([[5, 1, 2, 3, np.nan], [10, 10, 18, 19, 20]], dtype=float)
    slots = np.full_like(bikes, 20.0)
    # station 0: samples 1, 2 short (<= 2 bikes), sample 4 unknown; station 1: samples 2, 3, 4 (<= 2 docks)
    assert stockout_minutes(bikes, slots, threshold=2, step_min=5) == 25.0


def test_bikes_delivered_count_from_the_arrival_on() -> None:
    bikes = np.array([[1.0] + [1.0] * 12])
    slots = np.full_like(bikes, 10.0)
    result = _replay([_stop(1, "s", "unload", 5, 7)], bikes, slots, ["s"], [10])
    # arrival at 7 min: the 5-minute sample is still short, the 10..60 minute samples are not
    assert result.stockout_min == 5.0
    assert result.bikes_moved == 5
    assert stockout_minutes(bikes, slots, threshold=2, step_min=5) == 60.0


def test_a_truck_delivers_only_what_it_loaded() -> None:
    # Source has 2 bikes (plan expected 6); the truck starts empty, so it can deliver only 2.
    bikes = np.array([[2.0] * 13, [0.0] * 13])
    slots = np.full_like(bikes, 10.0)
    stops = [_stop(1, "src", "load", 6, 3), _stop(1, "dst", "unload", 6, 9)]
    result = _replay(stops, bikes, slots, ["src", "dst"], [0])
    assert result.executed["moved"].tolist() == [-2, 2]
    assert result.bikes_moved == 4


def test_unloading_stops_at_the_free_docks() -> None:
    bikes = np.array([[7.0] * 13])
    slots = np.full_like(bikes, 10.0)
    result = _replay([_stop(1, "s", "unload", 6, 1)], bikes, slots, ["s"], [10])
    assert result.executed["moved"].tolist() == [3]
    assert result.stockout_min == pytest.approx(60.0)  # full from then on: short of docks


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="stations"):
        _replay([], np.zeros((2, 13)), np.zeros((2, 13)), ["only-one"], [0])
