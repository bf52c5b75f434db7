"""What the planner reads: the stations' current state and a forecast frame, and who makes it.

Station frame (one row per station the trucks may visit):

====================  =======  ==========================================================
column                type     meaning
====================  =======  ==========================================================
``station_id``        str      unique
``lat``, ``lon``      float    WGS84 degrees
``bikes``             int      bikes available now (>= 0)
``docks``             int      docks available now (>= 0); usable slots = bikes + docks
``name``              str      optional, carried into the plan
====================  =======  ==========================================================

Forecast frame (one row per station and horizon; the multi-horizon models fill it later):

====================  =======  ==========================================================
``station_id``        str      a station of the station frame
``horizon_min``       int      minutes after the plan time (> 0)
``expected_bikes``    float    expected bikes available at that horizon
``bikes_lo``          float    optional: 10% quantile (lower end of the 80% interval)
``bikes_hi``          float    optional: 90% quantile (upper end of the 80% interval)
``p_no_bikes``        float    optional: P(bikes <= shortage_threshold) at that horizon
``p_no_docks``        float    optional: P(docks <= shortage_threshold) at that horizon
====================  =======  ==========================================================

Any object with a :meth:`Forecaster.forecast` method can feed the planner. The interim one,
:class:`FlowProfileForecaster`, is persistence plus the station's mean net flow at that time of day
(weekdays and weekends apart), learned only from counts before the plan time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from bikeshare.utc import to_utc

Z80 = 1.2815515655446004  # standard normal quantile of 0.9: an 80% central interval is mean +/- Z80 sigma

STATION_COLUMNS: tuple[str, ...] = ("station_id", "lat", "lon", "bikes", "docks")
FORECAST_COLUMNS: tuple[str, ...] = ("station_id", "horizon_min", "expected_bikes")
FORECAST_OPTIONAL_COLUMNS: tuple[str, ...] = ("bikes_lo", "bikes_hi", "p_no_bikes", "p_no_docks")


class ForecastInputError(ValueError):
    """A station or forecast frame the planner cannot use; the message names the problem."""


class Forecaster(Protocol):
    """Anything that turns the current stations into a forecast frame (see the module doc)."""

    name: str

    def forecast(self, stations: pd.DataFrame, *, as_of: pd.Timestamp, horizons_min: Sequence[int]) -> pd.DataFrame:
        """Forecast rows for every station of ``stations`` at every horizon."""
        ...


def validate_stations(stations: pd.DataFrame) -> pd.DataFrame:
    """Check a station frame and return a clean copy (ints for counts, unique ids)."""
    missing = [c for c in STATION_COLUMNS if c not in stations.columns]
    if missing:
        raise ForecastInputError(f"station frame lacks columns {missing}; it needs {list(STATION_COLUMNS)}")
    frame = stations.copy()
    frame["station_id"] = frame["station_id"].astype(str)
    dup = frame["station_id"][frame["station_id"].duplicated()]
    if len(dup):
        raise ForecastInputError(f"station frame repeats station_id {sorted(set(dup))[:5]}")
    for col in ("lat", "lon", "bikes", "docks"):
        values = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        bad = frame["station_id"][~np.isfinite(values.to_numpy())]
        if len(bad):
            raise ForecastInputError(f"station frame: {col} is missing or not a number for {list(bad)[:5]}")
        frame[col] = values
    negative = frame["station_id"][(frame["bikes"] < 0) | (frame["docks"] < 0)]
    if len(negative):
        raise ForecastInputError(f"station frame: negative bikes or docks for {list(negative)[:5]}")
    if ((frame["lat"].abs() > 90) | (frame["lon"].abs() > 180)).any():
        raise ForecastInputError("station frame: lat/lon out of range (degrees expected)")
    frame["bikes"] = frame["bikes"].round().astype("int64")
    frame["docks"] = frame["docks"].round().astype("int64")
    if "name" not in frame.columns:
        frame["name"] = frame["station_id"]
    return frame.reset_index(drop=True)


def validate_forecast(forecast: pd.DataFrame) -> pd.DataFrame:
    """Check a forecast frame and return a clean copy with every optional column present (NaN if absent)."""
    missing = [c for c in FORECAST_COLUMNS if c not in forecast.columns]
    if missing:
        raise ForecastInputError(f"forecast frame lacks columns {missing}; it needs {list(FORECAST_COLUMNS)}")
    frame = forecast.copy()
    frame["station_id"] = frame["station_id"].astype(str)
    horizons = pd.to_numeric(frame["horizon_min"], errors="coerce")
    if horizons.isna().any() or (horizons <= 0).any():
        raise ForecastInputError("forecast frame: horizon_min must be a positive number of minutes on every row")
    frame["horizon_min"] = horizons.astype("float64")
    for col in ("expected_bikes", *FORECAST_OPTIONAL_COLUMNS):
        if col not in frame.columns:
            frame[col] = np.nan
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    if frame["expected_bikes"].isna().any():
        bad = frame.loc[frame["expected_bikes"].isna(), "station_id"].unique()[:5]
        raise ForecastInputError(f"forecast frame: expected_bikes is missing for {list(bad)}")
    if (frame["expected_bikes"] < 0).any():
        raise ForecastInputError("forecast frame: expected_bikes must be >= 0")
    both = frame["bikes_lo"].notna() & frame["bikes_hi"].notna()
    if (frame.loc[both, "bikes_lo"] > frame.loc[both, "bikes_hi"] + 1e-9).any():
        raise ForecastInputError("forecast frame: bikes_lo is above bikes_hi on some rows")
    for col in ("p_no_bikes", "p_no_docks"):
        values = frame[col].dropna()
        if ((values < 0) | (values > 1)).any():
            raise ForecastInputError(f"forecast frame: {col} must be a probability in [0, 1]")
    dup = frame.duplicated(["station_id", "horizon_min"])
    if dup.any():
        first = frame.loc[dup, ["station_id", "horizon_min"]].iloc[0].tolist()
        raise ForecastInputError(f"forecast frame repeats (station_id, horizon_min) {first}")
    return frame.sort_values(["station_id", "horizon_min"]).reset_index(drop=True)


def history_grid(
    status: pd.DataFrame,
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
    step_min: int,
    max_age_min: int,
) -> pd.DataFrame:
    """Bikes per station on a regular UTC grid ``start..end`` (as of the latest snapshot at each slot).

    ``status`` has ``station_id, last_updated, bikes``. A slot whose latest snapshot of the station
    is older than ``max_age_min`` is NaN. Returns a wide frame: index = slot, columns = station_id.
    """
    for col in ("station_id", "last_updated", "bikes"):
        if col not in status.columns:
            raise ForecastInputError(f"status frame lacks column {col!r}")
    step = pd.Timedelta(minutes=step_min)
    slots = pd.date_range(pd.Timestamp(start).ceil(step), pd.Timestamp(end).floor(step), freq=step, name="slot")
    rows = status[["station_id", "last_updated", "bikes"]].dropna()
    if rows.empty or len(slots) == 0:
        return pd.DataFrame(index=slots, dtype="float64")
    stamps_us = pd.to_datetime(rows["last_updated"], utc=True).dt.as_unit("us")
    rows = pd.DataFrame(
        {"station_id": rows["station_id"].astype(str).to_numpy(), "t": stamps_us.to_numpy(), "bikes": rows["bikes"]}
    ).sort_values("t", kind="stable")
    wide = rows.pivot_table(index="t", columns="station_id", values="bikes", aggfunc="last").astype("float64")
    times = pd.DatetimeIndex(wide.index).as_unit("us").asi8
    seen_at = np.where(wide.notna().to_numpy(), times[:, None].astype("float64"), np.nan)
    seen_at = pd.DataFrame(seen_at).ffill().to_numpy()
    values = wide.ffill().to_numpy()
    slot_us = slots.as_unit("us").asi8
    pos = np.searchsorted(times, slot_us, side="right") - 1
    ok = pos >= 0
    out = np.full((len(slots), wide.shape[1]), np.nan)
    out[ok] = values[pos[ok]]
    seen = np.full_like(out, np.nan)
    seen[ok] = seen_at[pos[ok]]
    max_age_us = max_age_min * 60_000_000
    with np.errstate(invalid="ignore"):
        stale = ~((slot_us[:, None].astype("float64") - seen) <= max_age_us)
    out[stale] = np.nan
    return pd.DataFrame(out, index=slots, columns=[str(c) for c in wide.columns])


class FlowProfileForecaster:
    """Interim forecaster: persistence plus the station's mean net flow at that time of day.

    For a plan at ``as_of`` and a future slot ``t``, the expected change of bikes during the slot is
    the mean, over the past ``lookback_days`` (only slots ending at or before ``as_of``), of the
    station's change of bikes during slots with the same local time of day and the same day type
    (weekday or weekend). Expected bikes are the current bikes plus the running sum of those means,
    clipped to ``[0, bikes + docks]``; the 80% interval assumes independent slot changes, so its
    variance is the running sum of the slot variances. With fewer than ``min_days`` past values the
    mean change is 0 (pure persistence) and the variance is the station's variance over all slots.
    """

    name = "flow_profile"

    def __init__(
        self,
        history: pd.DataFrame,
        *,
        timezone: str,
        step_min: int,
        lookback_days: int = 21,
        min_days: int = 3,
    ) -> None:
        if not isinstance(history.index, pd.DatetimeIndex) or history.index.tz is None:
            raise ForecastInputError("history must be indexed by UTC slot times (see history_grid)")
        if step_min < 1:
            raise ForecastInputError(f"step_min must be >= 1, got {step_min}")
        self.history = history.sort_index()
        self.timezone = timezone
        self.step_min = step_min
        self.lookback_days = lookback_days
        self.min_days = min_days

    def forecast(self, stations: pd.DataFrame, *, as_of: pd.Timestamp, horizons_min: Sequence[int]) -> pd.DataFrame:
        """Forecast frame (expected bikes and an 80% interval) for every station and horizon."""
        stations = validate_stations(stations)
        horizons = sorted({int(h) for h in horizons_min})
        if not horizons or horizons[0] <= 0:
            raise ForecastInputError(f"horizons must be positive minutes, got {list(horizons_min)}")
        if any(h % self.step_min for h in horizons):
            raise ForecastInputError(f"horizons {horizons} must be multiples of step_min={self.step_min}")
        as_of = to_utc(as_of, what="as_of")
        k_max = horizons[-1] // self.step_min
        mean, var = self.flow_stats(stations["station_id"].tolist(), as_of=as_of, k_max=k_max)
        slots = (stations["bikes"] + stations["docks"]).to_numpy(dtype="float64")[:, None]
        bikes = stations["bikes"].to_numpy(dtype="float64")[:, None]
        expected = np.clip(bikes + np.cumsum(mean, axis=1), 0, slots)
        sigma = np.sqrt(np.cumsum(var, axis=1))
        cols = [h // self.step_min - 1 for h in horizons]
        n = len(stations)
        return pd.DataFrame(
            {
                "station_id": np.repeat(stations["station_id"].to_numpy(), len(horizons)),
                "horizon_min": np.tile(np.asarray(horizons, dtype="int64"), n),
                "expected_bikes": expected[:, cols].ravel(),
                "bikes_lo": np.clip(expected - Z80 * sigma, 0, slots)[:, cols].ravel(),
                "bikes_hi": np.clip(expected + Z80 * sigma, 0, slots)[:, cols].ravel(),
            }
        )

    def flow_stats(self, station_ids: list[str], *, as_of: pd.Timestamp, k_max: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the change of bikes in each of the next ``k_max`` slots, per station.

        Only history slots at or before ``as_of`` are read.
        """
        n = len(station_ids)
        mean = np.zeros((n, k_max))
        var = np.zeros((n, k_max))
        step = pd.Timedelta(minutes=self.step_min)
        slot0 = to_utc(as_of, what="as_of").floor(step)
        lo = slot0 - pd.Timedelta(days=self.lookback_days)
        index = self.history.index
        past = self.history.loc[(index > lo) & (index <= as_of)]
        if len(past) < 2:
            return mean, var
        past = past.reindex(columns=station_ids)
        full = pd.date_range(past.index[0], past.index[-1], freq=step)
        delta = past.reindex(full).diff().to_numpy()  # change during (t - step, t], labelled t
        local = full.tz_convert(self.timezone)
        tod = np.asarray(local.hour * 60 + local.minute) // self.step_min
        weekend = np.asarray(local.dayofweek >= 5)
        pooled = _nan_moments(delta)[2]
        for k in range(1, k_max + 1):
            target = (slot0 + k * step).tz_convert(self.timezone)
            rows = (tod == (target.hour * 60 + target.minute) // self.step_min) & (weekend == (target.dayofweek >= 5))
            count, m, v = _nan_moments(delta[rows])
            enough = count >= self.min_days
            mean[:, k - 1] = np.where(enough, m, 0.0)
            var[:, k - 1] = np.where(enough, v, pooled)
        return mean, var


def _nan_moments(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column count, mean and (population) variance of the finite values; 0 where none."""
    finite = np.isfinite(sample)
    count = finite.sum(axis=0)
    values = np.where(finite, sample, 0.0)
    safe = np.maximum(count, 1)
    mean = values.sum(axis=0) / safe
    var = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0) / safe
    return count, mean, var
