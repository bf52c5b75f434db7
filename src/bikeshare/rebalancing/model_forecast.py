"""The planner's forecaster from the multi-horizon model: the newest stored forecasts, interpolated.

The batch job writes ``forecasts/city=<c>/dt=<slot>/<alias>.parquet`` (horizons 15..120 min after
the feature slot). For a plan at ``as_of`` the newest batch of the alias whose feature time is at
most ``max_age_min`` old (and not after ``as_of``) is read; a horizon ``h`` the planner asks for is
``h + (as_of - feature_time)`` after the feature slot and is linearly interpolated between the
stored horizons, with horizon 0 anchored at the counts of the feature slot (probabilities 0 or 1
from the counts then) and the last horizon held beyond the end. The curve is shifted by the change
of bikes between the feature slot and the station frame, then clipped to ``[0, bikes + docks]``.

Stations missing from the batch, and every station when no fresh batch exists, come from the
``fallback`` forecaster. :attr:`ModelForecaster.name` (stored with the plan) says which was used:
``model:<registered name> v<version>`` (plus the fallback's name for missing stations) or the fallback's name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import FORECASTS, Grain
from bikeshare.rebalancing.forecast import Forecaster, ForecastInputError, validate_stations
from bikeshare.utc import to_utc

CURVE_COLUMNS: tuple[str, ...] = ("expected_bikes", "bikes_lo", "bikes_hi", "p_no_bikes", "p_no_docks")


def latest_forecasts(lake: Lake, *, city: str, alias: str, as_of: pd.Timestamp, max_age_min: int) -> pd.DataFrame:
    """Rows of the newest forecast batch of ``alias`` with ``as_of - max_age_min <= feature_time <= as_of``."""
    as_of = to_utc(as_of, what="as_of")
    lo = as_of - pd.Timedelta(minutes=max_age_min)
    first, last = partition_value(lo, Grain.MINUTE), partition_value(as_of, Grain.MINUTE)
    dts = [dt for dt in lake.partitions(FORECASTS, city=city) if first <= dt <= last]
    if not dts:
        return pd.DataFrame(columns=FORECASTS.schema.names)
    frame = lake.read(FORECASTS, city=city, dts=dts).to_pandas()
    frame = frame[(frame["alias"] == alias) & (frame["feature_time"] >= lo) & (frame["feature_time"] <= as_of)]
    if frame.empty:
        return frame
    newest = frame.sort_values(["feature_time", "prediction_time", "batch_id"]).iloc[-1]["batch_id"]
    return frame[frame["batch_id"] == newest].reset_index(drop=True)


def interpolate_curves(rows: pd.DataFrame, *, offsets_min: Sequence[float], threshold: int) -> pd.DataFrame:
    """Per station, the curve at ``offsets_min`` after the feature slot (see the module doc).

    ``rows`` are one batch's forecast rows. Returns ``station_id, offset_min`` plus :data:`CURVE_COLUMNS`.
    """
    out = []
    offsets = np.asarray(offsets_min, dtype=float)
    for station, group in rows.groupby("station_id", sort=True):
        group = group.sort_values("horizon_min")
        bikes0 = float(group["current_bikes"].iloc[0]) if pd.notna(group["current_bikes"].iloc[0]) else np.nan
        docks0 = float(group["current_docks"].iloc[0]) if pd.notna(group["current_docks"].iloc[0]) else np.nan
        x = np.concatenate([[0.0], group["horizon_min"].to_numpy(dtype=float)])
        anchor = {
            "expected_bikes": bikes0,
            "bikes_lo": bikes0,
            "bikes_hi": bikes0,
            "p_no_bikes": float(bikes0 <= threshold) if np.isfinite(bikes0) else np.nan,
            "p_no_docks": float(docks0 <= threshold) if np.isfinite(docks0) else np.nan,
        }
        doc: dict[str, object] = {"station_id": np.repeat(str(station), len(offsets)), "offset_min": offsets}
        for col in CURVE_COLUMNS:
            y = group[col].to_numpy(dtype=float)
            if np.isfinite(anchor[col]):
                doc[col] = np.interp(offsets, x, np.concatenate([[anchor[col]], y]))
            else:
                doc[col] = np.interp(offsets, x[1:], y)
        out.append(pd.DataFrame(doc))
    if not out:
        return pd.DataFrame(columns=["station_id", "offset_min", *CURVE_COLUMNS])
    return pd.concat(out, ignore_index=True)


class ModelForecaster:
    """Implements :class:`bikeshare.rebalancing.forecast.Forecaster` from the stored model forecasts."""

    def __init__(
        self,
        lake: Lake,
        *,
        city: str,
        alias: str,
        max_age_min: int,
        threshold: int,
        fallback: Forecaster,
    ) -> None:
        self.lake = lake
        self.city = city
        self.alias = alias
        self.max_age_min = max_age_min
        self.threshold = threshold
        self.fallback = fallback
        self.name = "model"
        self.used: dict[str, object] = {}

    def forecast(self, stations: pd.DataFrame, *, as_of: pd.Timestamp, horizons_min: Sequence[int]) -> pd.DataFrame:
        """Forecast rows for every station and horizon; sets :attr:`name` to what was used."""
        stations = validate_stations(stations)
        horizons = sorted({int(h) for h in horizons_min})
        if not horizons or horizons[0] <= 0:
            raise ForecastInputError(f"horizons must be positive minutes, got {list(horizons_min)}")
        as_of = to_utc(as_of, what="as_of")
        rows = latest_forecasts(self.lake, city=self.city, alias=self.alias, as_of=as_of, max_age_min=self.max_age_min)
        if rows.empty:
            self.name = self.fallback.name
            self.used = {
                "forecaster": self.fallback.name,
                "reason": f"no {self.alias} forecast within {self.max_age_min} min",
                "model_stations": 0,
            }
            return self.fallback.forecast(stations, as_of=as_of, horizons_min=horizons)
        feature_time = pd.Timestamp(rows["feature_time"].iloc[0])
        lag = (as_of - feature_time).total_seconds() / 60.0
        known = stations[stations["station_id"].isin(set(rows["station_id"].astype(str)))]
        curves = interpolate_curves(
            rows[rows["station_id"].isin(set(known["station_id"]))],
            offsets_min=[h + lag for h in horizons],
            threshold=self.threshold,
        )
        curves["horizon_min"] = np.tile(np.asarray(horizons, dtype="int64"), len(curves) // len(horizons))
        then = rows.drop_duplicates("station_id").set_index("station_id")["current_bikes"].astype("float64")
        merged = curves.merge(known[["station_id", "bikes", "docks"]], on="station_id", how="left")
        shift = merged["bikes"].to_numpy(dtype=float) - merged["station_id"].map(then).to_numpy(dtype=float)
        shift = np.nan_to_num(shift, nan=0.0)
        top = (merged["bikes"] + merged["docks"]).to_numpy(dtype=float)
        for col in ("expected_bikes", "bikes_lo", "bikes_hi"):
            merged[col] = np.clip(merged[col].to_numpy(dtype=float) + shift, 0.0, top)
        model_part = merged[["station_id", "horizon_min", *CURVE_COLUMNS]]
        rest = stations[~stations["station_id"].isin(set(known["station_id"]))]
        parts = [model_part]
        if len(rest):
            parts.append(self.fallback.forecast(rest, as_of=as_of, horizons_min=horizons))
        version = f"{rows['model_name'].iloc[0]} v{rows['model_version'].iloc[0]}"
        self.name = f"model:{version}"
        if len(rest):
            self.name += f" (+{self.fallback.name} for {len(rest)} stations)"
        self.used = {
            "forecaster": "model",
            "model": version,
            "feature_time": feature_time.isoformat(),
            "model_stations": len(known),
            "fallback_stations": len(rest),
        }
        return pd.concat(parts, ignore_index=True)
