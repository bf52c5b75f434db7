"""Pure rules of the risk pages: distance filters, the Top-N selection and the dispatch suggestion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EARTH_RADIUS_M = 6_371_000.0
TARGETS: dict[str, str] = {"either": "risk", "bikes": "p_bikes", "docks": "p_docks"}

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
        frame = frame[frame["region_id"].astype("string").isin(rule.regions)]
    if rule.center is not None and rule.radius_m is not None:
        frame["distance_m"] = haversine_m(frame["lat"], frame["lon"], *rule.center)
        frame = frame[frame["distance_m"] <= rule.radius_m]
    frame = frame[frame[column] >= rule.min_probability]
    frame["score"] = frame[column]
    frame["suggested_move"] = dispatch_quantity(frame["bikes_now"], frame["docks_now"], target_fill=target_fill)
    frame = frame.sort_values(["score", "station_id"], ascending=[False, True], kind="mergesort")
    return frame.head(rule.top_n).reset_index(drop=True)
