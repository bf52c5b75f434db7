"""A plan applied to recorded counts: move the bikes when the trucks arrive, count stockout minutes.

Recorded counts are taken as the demand that happened. Moving ``x`` bikes into a station at minute
``a`` adds ``x`` to its recorded bikes at every later sample (clipped to ``[0, usable slots]``); a
truck unloads at most what it carries and the station has room for, and loads at most what the
station has (in the counterfactual) and the truck has room for. Stops are executed in arrival
order, so a truck that loaded fewer bikes than planned delivers fewer later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ReplayResult:
    """Recorded stockout station-minutes after a plan, and the bikes it really moved."""

    stockout_min: float
    bikes_moved: int
    executed: pd.DataFrame  # station_id, truck, arrival_s, planned, moved (signed)


def stockout_minutes(bikes: np.ndarray, slots: np.ndarray, *, threshold: int, step_min: int) -> float:
    """Station-minutes short over samples 1..K of (stations, K+1) matrices; NaN samples do not count."""
    b, s = bikes[:, 1:], slots[:, 1:]
    with np.errstate(invalid="ignore"):
        short = (b <= threshold) | (s - b <= threshold)
    short &= np.isfinite(b) & np.isfinite(s)
    return float(short.sum() * step_min)


def replay_plan(
    stops: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    station_ids: list[str],
    bikes: np.ndarray,
    slots: np.ndarray,
    start_loads: list[int],
    capacity: int,
    threshold: int,
    step_min: int,
) -> ReplayResult:
    """Apply ``stops`` (truck, station_id, action, quantity, arrival) to recorded counts.

    ``bikes`` and ``slots`` are (stations, K+1) recorded bikes and usable slots (bikes + docks) at
    ``as_of + k * step_min`` (k = 0..K), rows in ``station_ids`` order, NaN where unknown.
    """
    if bikes.shape != slots.shape or bikes.shape[0] != len(station_ids):
        raise ValueError(f"bikes {bikes.shape} and slots {slots.shape} must be (stations={len(station_ids)}, K+1)")
    row_of = {sid: i for i, sid in enumerate(station_ids)}
    n_samples = bikes.shape[1] - 1
    step_s = step_min * 60
    shift = np.zeros_like(bikes, dtype="float64")  # bikes added to each (station, sample)
    loads = list(start_loads)
    as_of = pd.Timestamp(as_of)
    records = []
    ordered = stops.assign(arrival_offset_s=(pd.to_datetime(stops["arrival"]) - as_of).dt.total_seconds())
    for stop in ordered.sort_values(["arrival_offset_s", "truck"], kind="stable").itertuples(index=False):
        truck = int(stop.truck) - 1
        arrival_s = float(stop.arrival_offset_s)
        planned = int(stop.quantity) if stop.action == "unload" else -int(stop.quantity)
        i = row_of.get(str(stop.station_id))
        k_now = min(max(math.floor(arrival_s / step_s + 1e-9), 0), n_samples)
        moved = 0
        if i is not None and np.isfinite(bikes[i, k_now]) and np.isfinite(slots[i, k_now]):
            here = float(np.clip(bikes[i, k_now] + shift[i, k_now], 0, slots[i, k_now]))
            if planned > 0:
                moved = int(min(planned, loads[truck], math.floor(slots[i, k_now] - here)))
            else:
                moved = -int(min(-planned, math.floor(here), capacity - loads[truck]))
            loads[truck] -= moved
            shift[i, k_now + 1 :] += moved
        records.append(
            {
                "station_id": str(stop.station_id),
                "truck": truck + 1,
                "arrival_s": arrival_s,
                "planned": planned,
                "moved": moved,
            }
        )
    after = np.clip(bikes + shift, 0, slots)
    after[~np.isfinite(bikes)] = np.nan
    executed = pd.DataFrame.from_records(records, columns=["station_id", "truck", "arrival_s", "planned", "moved"])
    return ReplayResult(
        stockout_min=stockout_minutes(after, slots, threshold=threshold, step_min=step_min),
        bikes_moved=int(executed["moved"].abs().sum()) if len(executed) else 0,
        executed=executed,
    )
