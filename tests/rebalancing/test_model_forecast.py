"""The planner's ModelForecaster: interpolation of the stored model horizons, and plan_at using the
newest fresh forecasts (falling back to the flow profile when none are fresh), on a copy of the
shipped slice's lake with forecasts written by the inference job's row builder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bikeshare.features.build import online_features
from bikeshare.inference.batch import forecast_rows
from bikeshare.inference.endpoint_client import ForecastAnswer
from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import FORECASTS, Grain
from bikeshare.rebalancing.forecast import validate_forecast
from bikeshare.rebalancing.job import plan_at
from bikeshare.rebalancing.model_forecast import ModelForecaster, interpolate_curves, latest_forecasts
from bikeshare.rebalancing.storage import read_plan
from bikeshare.settings import Settings
from bikeshare.training.forecast import ForecastTrainingResult

AS_OF = pd.Timestamp("2023-03-09T17:00Z")


def test_interpolation_anchors_at_the_feature_slot_and_holds_the_last_horizon() -> None:
    rows = pd.DataFrame(
        {
            "station_id": ["a", "a"],
            "horizon_min": [15, 30],
            "expected_bikes": [10.0, 4.0],
            "bikes_lo": [8.0, 1.0],
            "bikes_hi": [12.0, 6.0],
            "p_no_bikes": [0.1, 0.5],
            "p_no_docks": [0.0, 0.0],
            "current_bikes": [12, 12],
            "current_docks": [3, 3],
        }
    )
    out = interpolate_curves(rows, offsets_min=[7.5, 15, 22.5, 60], threshold=2).set_index("offset_min")
    assert out.loc[7.5, "expected_bikes"] == pytest.approx(11.0)  # between 12 now and 10 at 15 min
    assert out.loc[7.5, "p_no_bikes"] == pytest.approx(0.05)  # 0 now (12 > 2 bikes)
    assert out.loc[15, "bikes_lo"] == pytest.approx(8.0)
    assert out.loc[22.5, "expected_bikes"] == pytest.approx(7.0)
    assert out.loc[60, "expected_bikes"] == pytest.approx(4.0) and out.loc[60, "p_no_bikes"] == pytest.approx(0.5)


@pytest.fixture
def plan_lake(slice_settings: Settings, tmp_path: Path) -> Settings:
    """A writable copy of the slice lake, history of 2 days, one region (small, fast plans)."""
    shutil.copytree(slice_settings.lake_uri, tmp_path / "lake")
    return slice_settings.model_copy(
        update={
            "lake_uri": str(tmp_path / "lake"),
            "state_dir": tmp_path / "state",
            "rebalance_history_days": 2,
            "rebalance_region_ids": ["3"],
            "rebalance_time_limit_s": 1.0,
        }
    )


def _store_forecasts(lake: Lake, settings: Settings, bundle: object, slot: pd.Timestamp) -> pd.DataFrame:
    features = online_features(lake=lake, at=slot, settings=settings)
    curve = bundle.curve(features)  # type: ignore[attr-defined]
    answer = ForecastAnswer(alias="production", model={"name": "bikeshare-sf-forecast", "version": "7"}, curve=curve,
                            attempts=1)  # fmt: skip
    rows = forecast_rows(answer, features, batch_id="b", prediction_time=slot, slot=slot, alias="production")
    lake.write(FORECASTS, rows, city=settings.city, dt=partition_value(slot, Grain.MINUTE), name="production")
    return rows


def test_plan_at_uses_fresh_model_forecasts_and_falls_back_when_stale(
    plan_lake: Settings, forecast_run: ForecastTrainingResult
) -> None:
    lake = Lake.open(plan_lake.lake_uri)
    slot = AS_OF - pd.Timedelta(minutes=10)
    stored = _store_forecasts(lake, plan_lake, forecast_run.bundle, slot)
    assert len(latest_forecasts(lake, city="sf", alias="production", as_of=AS_OF, max_age_min=30)) == len(stored)

    run = plan_at(lake=lake, settings=plan_lake, as_of=AS_OF, trucks=2, truck_capacity=15)
    assert run.plan is not None, run.skipped
    assert run.plan.forecaster.startswith("model:bikeshare-sf-forecast v7")
    assert run.details()["forecaster"] == run.plan.forecaster
    again = read_plan(lake, city="sf", dt=partition_value(AS_OF, Grain.MINUTE))
    assert again is not None and again.summary["forecaster"] == run.plan.forecaster

    # The forecast the planner saw: every station and grid horizon, taken from the stored curve.
    from bikeshare.rebalancing.forecast import FlowProfileForecaster

    empty_history = pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="slot"), dtype="float64")
    forecaster = ModelForecaster(
        lake, city="sf", alias="production", max_age_min=30, threshold=2,
        fallback=FlowProfileForecaster(empty_history, timezone="UTC", step_min=5),
    )  # fmt: skip
    ids = stored["station_id"].unique()[:20]
    now = stored[stored["station_id"].isin(ids)].drop_duplicates("station_id")
    stations = pd.DataFrame(
        {"station_id": now["station_id"], "lat": 37.7, "lon": -122.4, "bikes": now["current_bikes"].astype(int),
         "docks": now["current_docks"].astype(int)}
    )  # fmt: skip
    frame = validate_forecast(
        forecaster.forecast(stations, as_of=slot + pd.Timedelta(minutes=15), horizons_min=[15, 45])
    )
    assert len(frame) == 2 * len(stations) and forecaster.used["model_stations"] == len(stations)
    at30 = stored[(stored["horizon_min"] == 30) & stored["station_id"].isin(ids)].set_index("station_id")
    got = frame[frame["horizon_min"] == 15].set_index("station_id")  # 15 min after a 15-min-old slot = horizon 30
    assert np.allclose(got.loc[at30.index, "expected_bikes"], at30["expected_bikes"])
    assert np.allclose(got.loc[at30.index, "p_no_docks"], at30["p_no_docks"])

    late = AS_OF + pd.Timedelta(hours=2)
    stale = plan_at(lake=lake, settings=plan_lake, as_of=late, trucks=2, truck_capacity=15)
    assert stale.plan is not None and stale.plan.forecaster == "flow_profile"
