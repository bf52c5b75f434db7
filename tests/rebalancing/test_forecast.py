"""The history grid and the interim flow-profile forecaster (honest: only the past is read)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bikeshare.rebalancing.forecast import FlowProfileForecaster, ForecastInputError, history_grid

from .conftest import station


def test_history_grid_is_as_of_the_latest_snapshot_and_forgets_stale_ones() -> None:
    t0 = pd.Timestamp("2023-03-08T00:00Z")
    status = pd.DataFrame(
        {
            "station_id": ["a", "a", "b", "a"],
            "last_updated": [t0, t0 + pd.Timedelta(minutes=12), t0, t0 + pd.Timedelta(minutes=90)],
            "bikes": [5, 7, 3, 9],
        }
    )
    grid = history_grid(status, start=t0, end=t0 + pd.Timedelta(minutes=95), step_min=5, max_age_min=30)
    at = lambda m: grid.loc[t0 + pd.Timedelta(minutes=m)]  # noqa: E731
    assert at(5)["a"] == 5 and at(15)["a"] == 7 and at(40)["a"] == 7
    assert np.isnan(at(45)["a"])  # 33 minutes after its last snapshot
    assert at(90)["a"] == 9 and at(95)["a"] == 9
    assert at(30)["b"] == 3 and np.isnan(at(35)["b"])


def _daily_pattern(days: int) -> pd.DataFrame:
    """Station a: 5 bikes, +1 per 5 minutes from 08:00 to 09:00 UTC, back to 5 at 12:00; every day."""
    slots = pd.date_range("2023-03-01T00:00Z", periods=days * 288, freq="5min")
    minute = slots.hour * 60 + slots.minute
    bikes = 5 + np.clip((minute - 480) // 5, 0, 12) * (minute < 720)
    return pd.DataFrame({"a": bikes.astype("float64"), "b": 10.0}, index=slots)


def test_flow_profile_adds_the_mean_flow_of_the_same_time_of_day() -> None:
    history = _daily_pattern(8)
    forecaster = FlowProfileForecaster(history, timezone="UTC", step_min=5, lookback_days=7)
    as_of = pd.Timestamp("2023-03-08T08:00Z")  # a Wednesday: 5 past weekdays share the pattern
    stations = pd.DataFrame([station("a", km_east=0, bikes=5, docks=25), station("b", km_east=1, bikes=10, docks=10)])
    forecast = forecaster.forecast(stations, as_of=as_of, horizons_min=[30, 60]).set_index(
        ["station_id", "horizon_min"]
    )
    assert forecast.loc[("a", 30), "expected_bikes"] == pytest.approx(11.0)
    assert forecast.loc[("a", 60), "expected_bikes"] == pytest.approx(17.0)
    assert forecast.loc[("a", 60), "bikes_lo"] == pytest.approx(17.0)  # no day-to-day variation
    assert forecast.loc[("b", 60), "expected_bikes"] == pytest.approx(10.0)


def test_flow_profile_reads_nothing_after_the_plan_time() -> None:
    history = _daily_pattern(8)
    as_of = pd.Timestamp("2023-03-08T08:00Z")
    stations = pd.DataFrame([station("a", km_east=0, bikes=5, docks=25)])
    honest = FlowProfileForecaster(history, timezone="UTC", step_min=5).forecast(
        stations, as_of=as_of, horizons_min=[60]
    )
    tampered = history.copy()
    tampered.loc[tampered.index > as_of, "a"] = 0.0  # the future the forecaster must not see
    again = FlowProfileForecaster(tampered, timezone="UTC", step_min=5).forecast(
        stations, as_of=as_of, horizons_min=[60]
    )
    pd.testing.assert_frame_equal(honest, again)


def test_too_little_history_means_persistence() -> None:
    history = _daily_pattern(2)
    as_of = pd.Timestamp("2023-03-02T08:00Z")
    stations = pd.DataFrame([station("a", km_east=0, bikes=5, docks=25)])
    forecast = FlowProfileForecaster(history, timezone="UTC", step_min=5, min_days=3).forecast(
        stations, as_of=as_of, horizons_min=[60]
    )
    assert forecast["expected_bikes"].tolist() == [5.0]
    assert forecast["bikes_hi"].iloc[0] > 5.0  # the station's overall variance still widens the interval


def test_forecaster_refuses_horizons_off_its_grid_and_naive_history() -> None:
    history = _daily_pattern(1)
    stations = pd.DataFrame([station("a", km_east=0, bikes=5, docks=25)])
    forecaster = FlowProfileForecaster(history, timezone="UTC", step_min=5)
    with pytest.raises(ForecastInputError, match="multiples"):
        forecaster.forecast(stations, as_of=pd.Timestamp("2023-03-01T10:00Z"), horizons_min=[7])
    with pytest.raises(ForecastInputError, match="UTC"):
        FlowProfileForecaster(history.tz_localize(None), timezone="UTC", step_min=5)
