"""From forecasts to stockout probabilities, expected stockout minutes and each station's need.

The plan horizon is cut into ``K = horizon_min / step_min`` samples at ``h_k = k * step_min``
(k = 1..K); sample ``k`` stands for the ``step_min`` minutes that end at ``h_k``. A station is short
at a sample when bikes <= threshold (no bikes) or docks <= threshold (no docks).

Bikes at ``h_k`` are modelled as Normal(mu_k, sigma_k): mu_k is the forecast's expected bikes
(interpolated linearly between its horizons, starting from the bikes now at h = 0), sigma_k comes from
its 80% interval ((hi - lo) / (2 * 1.2816)), never below ``sigma_floor``. Then, with S the station's
usable slots (bikes + docks now) and T the threshold, with a continuity correction:

    P(short_k | shift q) = Phi((T + 0.5 - mu_k - q) / sigma_k) + 1 - Phi((S - T - 0.5 - mu_k - q) / sigma_k)

Moving ``q`` bikes (q > 0 unload, q < 0 load) at minute ``a`` shifts every sample with h_k > a.
When the forecast also gives P(no bikes) and P(no docks), their sum is the no-action probability and
the model above only supplies the change a move makes (clipped so that probabilities stay in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from bikeshare.rebalancing.forecast import Z80, ForecastInputError, validate_forecast, validate_stations


@dataclass(frozen=True)
class NeedParams:
    """How needs are computed: the safe band, the shortage threshold and the time grid."""

    band_low: float = 0.2
    band_high: float = 0.8
    threshold: int = 2
    step_min: int = 5
    horizon_min: int = 60
    sigma_floor: float = 0.75
    min_move: int = 2
    max_move: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.band_low < self.band_high <= 1:
            raise ValueError(f"safe band must satisfy 0 <= low < high <= 1, got {self.band_low}..{self.band_high}")
        if self.step_min < 1 or self.horizon_min < self.step_min or self.horizon_min % self.step_min:
            raise ValueError(
                f"horizon_min ({self.horizon_min}) must be a positive multiple of step_min ({self.step_min})"
            )
        if self.sigma_floor <= 0:
            raise ValueError("sigma_floor must be > 0")
        if self.min_move < 1 or self.max_move < self.min_move:
            raise ValueError(f"need 1 <= min_move <= max_move, got {self.min_move}, {self.max_move}")

    @property
    def samples(self) -> int:
        return self.horizon_min // self.step_min


@dataclass(frozen=True)
class Curves:
    """Per-station forecast curves on the plan grid (rows follow ``stations``)."""

    stations: pd.DataFrame  # validated station frame, one row per curve row
    mu: np.ndarray  # (n, K) expected bikes
    sigma: np.ndarray  # (n, K)
    p0: np.ndarray  # (n, K) probability of being short with no action
    slots: np.ndarray  # (n,) usable slots = bikes + docks now
    params: NeedParams
    missing_forecast: tuple[str, ...]  # stations planned on persistence because the forecast lacked them

    @property
    def samples(self) -> int:
        return self.params.samples

    def model_probability(self, rows: np.ndarray, shift: np.ndarray | float = 0.0) -> np.ndarray:
        """P(short) at every sample for ``rows`` with ``shift`` bikes added to the mean."""
        shift = np.asarray(shift, dtype="float64").reshape(-1, 1) if np.ndim(shift) else float(shift)
        return short_probability(self.mu[rows] + shift, self.sigma[rows], self.slots[rows, None], self.params.threshold)

    def avoided_curves(self, rows: np.ndarray, qty: np.ndarray) -> np.ndarray:
        """Expected stockout minutes avoided by moving ``qty`` bikes at row ``rows``, per arrival sample.

        Column ``m`` (0..K) is the value when the truck arrives at a minute ``a`` with
        ``floor(a / step) == m``: samples ``k > m`` are shifted. Column K is 0.
        """
        rows = np.asarray(rows, dtype="int64")
        qty = np.asarray(qty, dtype="float64")
        if rows.size == 0:
            return np.zeros((0, self.samples + 1))
        before = self.model_probability(rows)
        after = self.model_probability(rows, qty)
        p0 = self.p0[rows]
        with_move = np.clip(p0 - (before - after), 0.0, 1.0)
        gain = (p0 - with_move) * self.params.step_min  # (m, K) minutes saved per sample
        tail = np.cumsum(gain[:, ::-1], axis=1)[:, ::-1]  # tail[:, j] = sum_{k >= j} (0-based samples)
        return np.concatenate([tail, np.zeros((len(rows), 1))], axis=1)

    def stockout_minutes(self) -> np.ndarray:
        """Expected stockout minutes over the horizon with no action, per station."""
        return self.p0.sum(axis=1) * self.params.step_min


def short_probability(mu: np.ndarray, sigma: np.ndarray, slots: np.ndarray, threshold: int) -> np.ndarray:
    """P(bikes <= threshold or docks <= threshold) for Normal(mu, sigma) bikes in ``slots`` usable slots."""
    no_bikes = ndtr((threshold + 0.5 - mu) / sigma)
    no_docks = ndtr((mu - (slots - threshold - 0.5)) / sigma)
    return np.clip(no_bikes + no_docks, 0.0, 1.0)


def build_curves(stations: pd.DataFrame, forecast: pd.DataFrame, params: NeedParams) -> Curves:
    """Put the forecast on the plan grid; stations it lacks are planned on persistence."""
    stations = validate_stations(stations)
    forecast = validate_forecast(forecast)
    unknown = sorted(set(forecast["station_id"]) - set(stations["station_id"]))
    if unknown and len(unknown) == forecast["station_id"].nunique():
        raise ForecastInputError(f"forecast names none of the stations (e.g. {unknown[:3]})")
    n, k_count = len(stations), params.samples
    grid = np.arange(1, k_count + 1, dtype="float64") * params.step_min
    bikes = stations["bikes"].to_numpy(dtype="float64")
    slots = bikes + stations["docks"].to_numpy(dtype="float64")
    mu = np.repeat(bikes[:, None], k_count, axis=1)
    sigma = np.zeros((n, k_count))
    p_given = np.full((n, k_count), np.nan)
    missing: list[str] = []
    by_station = dict(tuple(forecast.groupby("station_id", sort=False)))
    for i, station_id in enumerate(stations["station_id"]):
        rows = by_station.get(station_id)
        if rows is None:
            missing.append(station_id)
            continue
        h = np.concatenate([[0.0], rows["horizon_min"].to_numpy()])
        mu[i] = np.interp(grid, h, np.concatenate([[bikes[i]], rows["expected_bikes"].to_numpy()]))
        spread = (rows["bikes_hi"] - rows["bikes_lo"]).to_numpy() / (2 * Z80)
        if np.isfinite(spread).all():
            sigma[i] = np.interp(grid, h, np.concatenate([[0.0], spread]))
        probs = (rows["p_no_bikes"] + rows["p_no_docks"]).to_numpy()
        if np.isfinite(probs).all():
            now = float(bikes[i] <= params.threshold or slots[i] - bikes[i] <= params.threshold)
            p_given[i] = np.clip(np.interp(grid, h, np.concatenate([[now], probs])), 0.0, 1.0)
    sigma = np.maximum(sigma, params.sigma_floor)
    p_model = short_probability(mu, sigma, slots[:, None], params.threshold)
    p0 = np.where(np.isfinite(p_given), p_given, p_model)
    return Curves(
        stations=stations,
        mu=mu,
        sigma=sigma,
        p0=p0,
        slots=slots,
        params=params,
        missing_forecast=tuple(missing),
    )


def need_quantities(curves: Curves) -> np.ndarray:
    """Signed bikes to move per station (+ unload, - load) to keep expected bikes inside the safe band.

    add = ceil(low * S - min_k mu_k), remove = ceil(max_k mu_k - high * S) over now and the horizon.
    When only one is positive it is the need; when both are (the curve is wider than the band), the
    need is the shift in [-remove, add] with the fewest expected stockout minutes if done now. It is
    capped by the bikes and free docks there now and by ``max_move``; below ``min_move`` it is 0.
    """
    p = curves.params
    stations = curves.stations
    bikes = stations["bikes"].to_numpy(dtype="float64")
    docks = stations["docks"].to_numpy(dtype="float64")
    lowest = np.minimum(curves.mu.min(axis=1), bikes)
    highest = np.maximum(curves.mu.max(axis=1), bikes)
    add = np.maximum(0.0, np.ceil(p.band_low * curves.slots - lowest - 1e-9))
    remove = np.maximum(0.0, np.ceil(highest - p.band_high * curves.slots - 1e-9))
    need = np.where(add > 0, add, -remove)
    for i in np.flatnonzero((add > 0) & (remove > 0)):
        options = np.arange(-remove[i], add[i] + 1)
        rows = np.full(len(options), i)
        saved = curves.avoided_curves(rows, options)[:, 0]
        best = np.flatnonzero(saved >= saved.max() - 1e-9)
        need[i] = options[best[np.argmin(np.abs(options[best]))]]
    need = np.minimum(need, docks)
    need = np.maximum(need, -bikes)
    need = np.clip(need, -p.max_move, p.max_move)
    need[np.abs(need) < p.min_move] = 0
    return need.astype("int64")


def compute_need(stations: pd.DataFrame, forecast: pd.DataFrame, params: NeedParams) -> tuple[pd.DataFrame, Curves]:
    """Each station's need and its expected stockout minutes with no action and if served now.

    Columns: station_id, name, bikes, docks, slots, band_low_bikes, band_high_bikes, expected_min,
    expected_max, need (signed: + bikes to unload, - bikes to load), stockout_min_no_action,
    stockout_min_served_now, avoided_min_served_now, first_short_min (first horizon minute where
    P(short) >= 0.5 with no action, NaN if none).
    """
    curves = build_curves(stations, forecast, params)
    need = need_quantities(curves)
    rows = np.arange(len(curves.stations))
    avoided_now = curves.avoided_curves(rows, need)[:, 0] if len(rows) else np.zeros(0)
    no_action = curves.stockout_minutes()
    short = curves.p0 >= 0.5
    first = np.where(short.any(axis=1), (short.argmax(axis=1) + 1) * params.step_min, np.nan)
    out = pd.DataFrame(
        {
            "station_id": curves.stations["station_id"],
            "name": curves.stations["name"],
            "bikes": curves.stations["bikes"],
            "docks": curves.stations["docks"],
            "slots": curves.slots.astype("int64"),
            "band_low_bikes": np.ceil(params.band_low * curves.slots - 1e-9),
            "band_high_bikes": np.floor(params.band_high * curves.slots + 1e-9),
            "expected_min": curves.mu.min(axis=1) if len(rows) else np.zeros(0),
            "expected_max": curves.mu.max(axis=1) if len(rows) else np.zeros(0),
            "need": need,
            "stockout_min_no_action": no_action,
            "stockout_min_served_now": no_action - avoided_now,
            "avoided_min_served_now": avoided_now,
            "first_short_min": first,
        }
    )
    return out, curves
