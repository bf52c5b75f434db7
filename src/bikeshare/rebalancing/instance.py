"""The routing instance both planners share: candidate stops, their values, travel and service times.

Nodes: ``0..N-1`` are the trucks' starts, ``N`` is a free end (routes are open: a truck stays where
its last stop is, ready for the next plan), then one node per candidate stop = (station, signed
quantity). A station may have several candidates (its full need, half of it, or a helper move); at
most one is visited. Candidates:

- a station in need (see :func:`~bikeshare.rebalancing.need.need_quantities`): its need, and half of
  it when that is still at least ``min_move`` (a partly loaded truck can still help);
- helpers: the ``helper_neighbours`` nearest in-band stations of each station in need that can give
  bikes (to a station short of bikes) or take them (from a station short of docks) and stay in the
  band over the horizon; their value is usually about 0, they exist to fill or empty the truck.

The value of a candidate visited at minute ``a`` is its avoided expected stockout minutes
(:meth:`~bikeshare.rebalancing.need.Curves.avoided_curves`), a step function of ``a``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bikeshare.rebalancing.fleet import Fleet, haversine_km
from bikeshare.rebalancing.need import Curves, need_quantities

KIND_START, KIND_END, KIND_NEED, KIND_HALF, KIND_SOURCE, KIND_SINK = "start", "end", "need", "half", "source", "sink"


@dataclass(frozen=True)
class Stop:
    """One visit of a route as scheduled: node, arrival/departure (s after the plan time), load after."""

    node: int
    arrival_s: int
    departure_s: int
    quantity: int
    load_after: int
    avoided_min: float
    travel_s: int


@dataclass(frozen=True)
class Instance:
    """Everything the greedy rule and the solver need, as arrays indexed by node."""

    curves: Curves
    fleet: Fleet
    travel_cost: float  # lambda: stockout minutes per truck-minute
    window: tuple[int, int]  # seconds after the plan time when trucks may work
    row: np.ndarray  # station row in curves (-1: start/end)
    qty: np.ndarray  # signed bikes moved (+ unload, - load)
    kind: np.ndarray  # KIND_* per node
    group: np.ndarray  # station row for candidates, -1 otherwise (one visit per group)
    avoided: np.ndarray  # (nodes, K+1) avoided minutes per arrival sample
    travel_s: np.ndarray  # (nodes, nodes) driving seconds (0 into the end node)
    service_s: np.ndarray  # (nodes,)
    start_loads: tuple[int, ...]
    helpers: dict[int, tuple[int, ...]]  # candidate node -> helper nodes near it of the useful sign

    @property
    def trucks(self) -> int:
        return self.fleet.trucks

    @property
    def end_node(self) -> int:
        return self.fleet.trucks

    @property
    def first_candidate(self) -> int:
        return self.fleet.trucks + 1

    @property
    def size(self) -> int:
        return len(self.qty)

    @property
    def step_s(self) -> int:
        return self.curves.params.step_min * 60

    def value(self, node: int, arrival_s: float) -> float:
        """Avoided expected stockout minutes when ``node`` is served at ``arrival_s``."""
        curve = self.avoided[node]
        col = min(math.floor(max(arrival_s, 0.0) / self.step_s + 1e-9), len(curve) - 1)
        return float(curve[col])

    def schedule(self, truck: int, route: list[int]) -> list[Stop]:
        """Arrival times, loads and values along one truck's route (stops only, no start/end)."""
        stops: list[Stop] = []
        t = self.window[0]
        load = self.start_loads[truck]
        here = truck
        for node in route:
            drive = int(self.travel_s[here, node])
            arrival = t + int(self.service_s[here]) + drive
            load -= int(self.qty[node])
            stops.append(
                Stop(
                    node=node,
                    arrival_s=arrival,
                    departure_s=arrival + int(self.service_s[node]),
                    quantity=int(self.qty[node]),
                    load_after=load,
                    avoided_min=self.value(node, arrival),
                    travel_s=drive,
                )
            )
            t, here = arrival, node
        return stops

    def check_routes(self, routes: list[list[int]]) -> None:
        """Raise ValueError if routes break a rule (load, time window, one visit per station)."""
        if len(routes) != self.trucks:
            raise ValueError(f"{len(routes)} routes for {self.trucks} trucks")
        seen: set[int] = set()
        for truck, route in enumerate(routes):
            for stop in self.schedule(truck, route):
                if stop.node < self.first_candidate:
                    raise ValueError(f"truck {truck} visits a non-candidate node {stop.node}")
                group = int(self.group[stop.node])
                if group in seen:
                    raise ValueError(f"station row {group} is visited twice")
                seen.add(group)
                if not 0 <= stop.load_after <= self.fleet.capacity:
                    raise ValueError(f"truck {truck} load {stop.load_after} leaves [0, {self.fleet.capacity}]")
                if stop.departure_s > self.window[1]:
                    raise ValueError(f"truck {truck} works past the window end ({stop.departure_s} s)")

    def objective(self, routes: list[list[int]]) -> tuple[float, float]:
        """(avoided expected stockout minutes, driving minutes) of a set of routes."""
        avoided = 0.0
        drive = 0.0
        for truck, route in enumerate(routes):
            for stop in self.schedule(truck, route):
                avoided += stop.avoided_min
                drive += stop.travel_s / 60.0
        return avoided, drive


def build_instance(
    curves: Curves,
    fleet: Fleet,
    *,
    window: tuple[int, int],
    travel_cost: float,
    helper_neighbours: int = 4,
    min_value: float = 0.05,
) -> Instance:
    """Candidate stops for one plan (see the module doc)."""
    p = curves.params
    stations = curves.stations
    n = len(stations)
    need = need_quantities(curves)
    bikes = stations["bikes"].to_numpy(dtype="float64")
    lows = np.ceil(p.band_low * curves.slots - 1e-9)
    highs = np.floor(p.band_high * curves.slots + 1e-9)
    lowest = np.minimum(curves.mu.min(axis=1), bikes) if n else np.zeros(0)
    highest = np.maximum(curves.mu.max(axis=1), bikes) if n else np.zeros(0)
    can_give = np.minimum(np.floor(lowest - lows + 1e-9), bikes).clip(0, fleet.capacity)
    can_take = np.minimum(np.floor(highs - highest + 1e-9), curves.slots - bikes).clip(0, fleet.capacity)

    rows: list[int] = []
    qtys: list[int] = []
    kinds: list[str] = []
    for i in np.flatnonzero(need != 0):
        q = int(need[i])
        rows.append(int(i))
        qtys.append(q)
        kinds.append(KIND_NEED)
        half = int(math.copysign(math.ceil(abs(q) / 2), q))
        if abs(half) >= p.min_move and half != q:
            rows.append(int(i))
            qtys.append(half)
            kinds.append(KIND_HALF)

    lat = stations["lat"].to_numpy(dtype="float64")
    lon = stations["lon"].to_numpy(dtype="float64")
    in_band = need == 0
    helper_of_station: dict[tuple[int, str], int] = {}
    wanted: dict[int, list[tuple[int, str]]] = {}
    if helper_neighbours > 0 and rows:
        sources = np.flatnonzero(in_band & (can_give >= p.min_move))
        sinks = np.flatnonzero(in_band & (can_take >= p.min_move))
        for cand, (i, q) in enumerate(zip(rows, qtys, strict=True)):
            pool, kind = (sources, KIND_SOURCE) if q > 0 else (sinks, KIND_SINK)
            if len(pool) == 0:
                continue
            dist = (lat[pool] - lat[i]) ** 2 + ((lon[pool] - lon[i]) * math.cos(math.radians(lat[i]))) ** 2
            nearest = pool[np.argsort(dist, kind="stable")[:helper_neighbours]]
            wanted[cand] = [(int(j), kind) for j in nearest]
        for cand_helpers in wanted.values():
            for j, kind in cand_helpers:
                if (j, kind) not in helper_of_station:
                    helper_of_station[(j, kind)] = len(rows)
                    rows.append(j)
                    qtys.append(-int(can_give[j]) if kind == KIND_SOURCE else int(can_take[j]))
                    kinds.append(kind)

    row_arr = np.asarray(rows, dtype="int64")
    qty_arr = np.asarray(qtys, dtype="int64")
    avoided = curves.avoided_curves(row_arr, qty_arr) if len(row_arr) else np.zeros((0, p.samples + 1))

    # Drop candidates worth nothing (helpers are kept: they carry bikes) and those out of reach.
    starts = fleet.start_positions(stations)
    s_lat = np.array([s[0] for s in starts])
    s_lon = np.array([s[1] for s in starts])
    service = fleet.service_seconds(qty_arr)
    reach_s = np.full(len(row_arr), np.inf)
    if len(row_arr):
        km = haversine_km(s_lat[:, None], s_lon[:, None], lat[row_arr][None, :], lon[row_arr][None, :]).min(axis=0)
        reach_s = np.rint(km * fleet.road_factor / fleet.speed_kmh * 3600.0) + service
    helper_kind = np.isin(np.asarray(kinds, dtype=object), [KIND_SOURCE, KIND_SINK])
    keep = ((avoided[:, 0] >= min_value) | helper_kind) & (window[0] + reach_s <= window[1])
    # A helper is only worth keeping when a kept candidate uses it.
    kept_need = {c for c in range(len(rows)) if keep[c] and not helper_kind[c]}
    used_helpers = {helper_of_station[h] for c, hs in wanted.items() if c in kept_need for h in hs}
    keep &= ~helper_kind | np.isin(np.arange(len(rows)), list(used_helpers))
    old_index = np.flatnonzero(keep)
    new_of_old = {int(o): k for k, o in enumerate(old_index)}

    t = fleet.trucks
    first = t + 1
    count = first + len(old_index)
    node_row = np.full(count, -1, dtype="int64")
    node_qty = np.zeros(count, dtype="int64")
    node_kind = np.array([KIND_START] * t + [KIND_END] + [kinds[o] for o in old_index], dtype=object)
    node_row[first:] = row_arr[old_index]
    node_qty[first:] = qty_arr[old_index]
    node_avoided = np.zeros((count, p.samples + 1))
    node_avoided[first:] = avoided[old_index]
    node_lat = np.concatenate([s_lat, [0.0], lat[node_row[first:]]])
    node_lon = np.concatenate([s_lon, [0.0], lon[node_row[first:]]])
    travel = fleet.travel_seconds(node_lat, node_lon)
    travel[:, t] = 0  # the end node is wherever the truck stops
    travel[t, :] = 0
    helpers: dict[int, tuple[int, ...]] = {}
    for c, hs in wanted.items():
        if c in new_of_old:
            nodes = tuple(first + new_of_old[helper_of_station[h]] for h in hs if helper_of_station[h] in new_of_old)
            if nodes:
                helpers[first + new_of_old[c]] = nodes
    return Instance(
        curves=curves,
        fleet=fleet,
        travel_cost=travel_cost,
        window=window,
        row=node_row,
        qty=node_qty,
        kind=node_kind,
        group=node_row.copy(),
        avoided=node_avoided,
        travel_s=travel,
        service_s=fleet.service_seconds(node_qty),
        start_loads=tuple(fleet.loads()),
        helpers=helpers,
    )
