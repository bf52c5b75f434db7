"""Pure rules of the risk pages: distance filters, the Top-N selection and the dispatch suggestion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EARTH_RADIUS_M = 6_371_000.0
TARGETS: dict[str, str] = {"either": "risk", "bikes": "p_bikes", "docks": "p_docks"}
NO_REGION = "(no region)"  # the region filter's choice for stations the feed gives no region
TIE_DECIMALS = 3  # probabilities equal to 0.1 % are a tie, broken by the shortfall
TOP_N_BOUNDS = (1, 1000)

DISPATCH_RULE = (
    "Suggested move = round(target fill x (bikes + docks now)) - bikes now. "
    "Positive: bring that many bikes; negative: take that many away; 0: leave it."
)


def haversine_m(lat: np.ndarray | pd.Series, lon: np.ndarray | pd.Series, lat0: float, lon0: float) -> np.ndarray:
    """Great-circle distance in metres from (lat0, lon0) to each point."""
    phi1, phi2 = np.radians(np.asarray(lat, dtype=float)), np.radians(lat0)
    dphi = phi2 - phi1
    dlmb = np.radians(lon0) - np.radians(np.asarray(lon, dtype=float))
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def dispatch_quantity(bikes: pd.Series, docks: pd.Series, *, target_fill: float) -> pd.Series:
    """Bikes to bring (positive) or take away (negative) to reach ``target_fill`` of the usable slots.

    Usable slots are bikes + docks available now (disabled docks cannot take a bike). Null where a
    count is unknown.
    """
    if not 0 <= target_fill <= 1:
        raise ValueError(f"target fill must be within [0, 1], got {target_fill}")
    b = pd.to_numeric(bikes, errors="coerce").astype("Float64")
    d = pd.to_numeric(docks, errors="coerce").astype("Float64")
    goal = ((b + d) * target_fill).round()
    return (goal - b).astype("Int64")


@dataclass(frozen=True)
class RiskFilter:
    """What the operator asked the Top-N table for."""

    target: str = "either"  # either | bikes | docks
    regions: tuple[str, ...] = ()  # empty: every region
    center: tuple[float, float] | None = None  # (lat, lon) of the radius filter
    radius_m: float | None = None
    min_probability: float = 0.0
    top_n: int = 25

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {sorted(TARGETS)}, got {self.target!r}")
        if not 0 <= self.min_probability <= 1:
            raise ValueError(f"minimum probability must be within [0, 1], got {self.min_probability}")
        if self.top_n < 1:
            raise ValueError(f"top N must be at least 1, got {self.top_n}")
        if (self.center is None) != (self.radius_m is None):
            raise ValueError("a radius filter needs both a centre and a radius")
        if self.radius_m is not None and self.radius_m <= 0:
            raise ValueError(f"radius must be positive, got {self.radius_m}")


def top_risk(stations: pd.DataFrame, rule: RiskFilter, *, target_fill: float) -> pd.DataFrame:
    """The ``top_n`` scored stations by the chosen probability, after the filters, with the dispatch move.

    ``stations`` has the columns of :func:`bikeshare.dashboard.queries.latest_risk`.
    """
    column = TARGETS[rule.target]
    frame = stations[stations[column].notna()].copy()
    if rule.regions:
        region = frame["region_id"].astype("string")
        keep = region.isin([r for r in rule.regions if r != NO_REGION])
        if NO_REGION in rule.regions:
            keep |= region.isna()
        frame = frame[keep]
    if rule.center is not None and rule.radius_m is not None:
        frame["distance_m"] = haversine_m(frame["lat"], frame["lon"], *rule.center)
        frame = frame[frame["distance_m"] <= rule.radius_m]
    frame = frame[frame[column] >= rule.min_probability]
    frame["score"] = frame[column]
    frame["suggested_move"] = dispatch_quantity(frame["bikes_now"], frame["docks_now"], target_fill=target_fill)
    frame["shortfall"] = shortfall(frame["suggested_move"], target=rule.target)
    frame["tie_score"] = frame["score"].round(TIE_DECIMALS)
    frame = frame.sort_values(
        ["tie_score", "shortfall", "station_id"], ascending=[False, False, True], kind="mergesort", na_position="last"
    )
    top = frame.head(rule.top_n).reset_index(drop=True)
    tied = top["tie_score"].duplicated(keep=False)
    return top.assign(tied=tied).drop(columns=["tie_score"])


def shortfall(move: pd.Series, *, target: str) -> pd.Series:
    """What a station lacks against the target fill: bikes to bring for ``bikes``, docks to free (bikes
    to take away) for ``docks``, either for ``either``; the tie-break after the probability."""
    m = pd.to_numeric(move, errors="coerce").astype("Int64")
    if target == "bikes":
        return m.clip(lower=0)
    if target == "docks":
        return (-m).clip(lower=0)
    return m.abs()


def plan_notes(top: pd.DataFrame, stops: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Per row of ``top``: what the latest optimised plan does there and, when it differs from the
    suggested move, why (the plan is bound by its trucks, their capacity and the horizon)."""
    routes = stops[stops["method"] == "optimised"] if not stops.empty else stops
    by_station: dict[str, tuple[int, int]] = {}
    for r in routes.itertuples(index=False):
        signed = int(r.quantity) if r.action == "unload" else -int(r.quantity)
        truck, total = by_station.get(str(r.station_id), (int(r.truck), 0))
        by_station[str(r.station_id)] = (truck, total + signed)
    bound = ""
    if not summary.empty:
        plan = summary.iloc[0]
        bound = f"{int(plan['trucks'])} truck(s) x {int(plan['truck_capacity'])} bikes, {int(plan['horizon_min'])} min"
    plans, whys = [], []
    for sid, move in zip(top["station_id"].astype(str), top["suggested_move"], strict=True):
        truck, planned = by_station.get(sid, (None, 0))
        if summary.empty:
            plans.append("no plan")
            whys.append("")
            continue
        plans.append(
            "not in plan" if truck is None else f"truck {truck}: {'bring' if planned > 0 else 'take'} {abs(planned)}"
        )
        if pd.isna(move) or int(move) == planned:
            whys.append("")
        elif truck is None:
            whys.append(f"capacity-bound ({bound}): trucks go where more stockout is avoided")
        else:
            whys.append(f"capacity-bound ({bound}): the truck moves what its load and route allow")
    return pd.DataFrame({"truck_plan": plans, "plan_differs": whys}, index=top.index)
