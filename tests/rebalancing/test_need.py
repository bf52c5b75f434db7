"""Need computation: the safe band, caps, conflicting curves, and expected stockout minutes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bikeshare.rebalancing.forecast import ForecastInputError
from bikeshare.rebalancing.need import NeedParams, build_curves, compute_need, short_probability

from .conftest import flat_forecast, station

PARAMS = NeedParams(band_low=0.2, band_high=0.8, threshold=2, step_min=5, horizon_min=60, sigma_floor=0.5, min_move=2)


def _need(
    stations: list[dict[str, object]], curves: dict[str, list[float]], params: NeedParams = PARAMS
) -> pd.DataFrame:
    frame = pd.DataFrame(stations)
    need, _ = compute_need(frame, flat_forecast(frame, curves), params)
    return need.set_index("station_id")


def test_station_running_empty_needs_bikes_up_to_the_band() -> None:
    # 20 slots: band 4..16 bikes. 6 bikes now, expected to fall by 1 every 10 minutes to 0.
    curve = [max(0.0, 6 - k / 2) for k in range(1, 13)]
    need = _need([station("s", km_east=0, bikes=6, docks=14)], {"s": curve})
    row = need.loc["s"]
    assert row["band_low_bikes"] == 4 and row["band_high_bikes"] == 16
    assert row["need"] == 4  # ceil(4 - min(curve)) with min(curve) = 0
    assert row["stockout_min_no_action"] > 20
    assert row["avoided_min_served_now"] == pytest.approx(
        row["stockout_min_no_action"] - row["stockout_min_served_now"]
    )
    assert row["avoided_min_served_now"] > 0.8 * row["stockout_min_no_action"]
    assert row["first_short_min"] == 35  # expected bikes reach 2.5 at 35 min, where P(bikes <= 2) = 0.5


def test_station_filling_up_needs_bikes_removed() -> None:
    curve = [min(20.0, 14 + k) for k in range(1, 13)]
    need = _need([station("s", km_east=0, bikes=14, docks=6)], {"s": curve})
    assert need.loc["s", "need"] == -4  # ceil(max 20 - band high 16)


def test_station_inside_the_band_needs_nothing_and_is_never_short() -> None:
    need = _need([station("s", km_east=0, bikes=10, docks=10)], {"s": [10.0] * 12})
    assert need.loc["s", "need"] == 0
    assert need.loc["s", "stockout_min_no_action"] == pytest.approx(0.0, abs=1e-6)


def test_need_is_capped_by_free_docks_and_dropped_below_min_move() -> None:
    # 9 bikes + 1 free dock, expected to empty: the band asks for 2 bikes but there is room for 1 only.
    need = _need([station("s", km_east=0, bikes=9, docks=1)], {"s": [0.0] * 12})
    assert need.loc["s", "need"] == 0
    looser = NeedParams(threshold=2, sigma_floor=0.5, min_move=1)
    assert _need([station("s", km_east=0, bikes=9, docks=1)], {"s": [0.0] * 12}, looser).loc["s", "need"] == 1


def test_curve_wider_than_the_band_gets_the_shift_with_fewest_stockout_minutes() -> None:
    # 20 slots: expected bikes swing from 1 to 19 within the hour; both adding and removing are asked.
    curve = [1, 1, 1, 1, 19, 19, 19, 19, 19, 19, 19, 19]
    frame = pd.DataFrame([station("s", km_east=0, bikes=10, docks=10)])
    need, curves = compute_need(frame, flat_forecast(frame, {"s": curve}), PARAMS)
    chosen = int(need.loc[0, "need"])
    options = np.arange(-3, 4)  # add = ceil(4 - 1) = 3, remove = ceil(19 - 16) = 3
    saved = curves.avoided_curves(np.zeros(len(options), dtype=int), options)[:, 0]
    assert saved[options == chosen][0] == pytest.approx(saved.max())
    assert chosen < 0  # 8 samples near full outweigh 4 near empty


def test_short_probability_covers_both_ends() -> None:
    p = short_probability(np.array([0.0, 10.0, 20.0]), np.array([0.5, 0.5, 0.5]), np.array([20.0, 20.0, 20.0]), 2)
    assert p[0] == pytest.approx(1.0) and p[2] == pytest.approx(1.0)
    assert p[1] == pytest.approx(0.0, abs=1e-9)


def test_given_probabilities_set_the_no_action_stockout_minutes() -> None:
    frame = pd.DataFrame([station("s", km_east=0, bikes=10, docks=10)])
    forecast = flat_forecast(frame, {"s": [10.0] * 12}).assign(p_no_bikes=0.25, p_no_docks=0.05)
    need, _ = compute_need(frame, forecast, PARAMS)
    assert need.loc[0, "stockout_min_no_action"] == pytest.approx(0.30 * 60, rel=0.05)


def test_sparse_horizons_are_interpolated_and_missing_stations_use_persistence() -> None:
    frame = pd.DataFrame([station("a", km_east=0, bikes=8, docks=12), station("b", km_east=1, bikes=1, docks=19)])
    forecast = pd.DataFrame({"station_id": ["a", "a"], "horizon_min": [30, 60], "expected_bikes": [4.0, 0.0]})
    curves = build_curves(frame, forecast, PARAMS)
    assert curves.mu[0, 2] == pytest.approx(6.0)  # 15 min: halfway from 8 (now) to 4 (30 min)
    assert curves.mu[0, -1] == pytest.approx(0.0)
    assert curves.missing_forecast == ("b",)
    assert np.allclose(curves.mu[1], 1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["expected_bikes"]), "lacks columns"),
        (lambda f: f.assign(horizon_min=-5), "horizon_min"),
        (lambda f: pd.concat([f, f.head(1)]), "repeats"),
        (lambda f: f.assign(bikes_lo=5.0, bikes_hi=1.0), "bikes_lo"),
        (lambda f: f.assign(p_no_bikes=1.5), "p_no_bikes"),
    ],
)
def test_bad_forecasts_are_refused_with_the_reason(change, message: str) -> None:
    frame = pd.DataFrame([station("s", km_east=0, bikes=10, docks=10)])
    with pytest.raises(ForecastInputError, match=message):
        compute_need(frame, change(flat_forecast(frame, {"s": [10.0] * 12})), PARAMS)


def test_bad_stations_are_refused_with_the_reason() -> None:
    frame = pd.DataFrame([station("s", km_east=0, bikes=-1, docks=10)])
    with pytest.raises(ForecastInputError, match="negative"):
        compute_need(frame, flat_forecast(frame, {"s": [1.0] * 12}), PARAMS)
    with pytest.raises(ForecastInputError, match="lat"):
        compute_need(frame.drop(columns=["lat"]), flat_forecast(frame, {"s": [1.0] * 12}), PARAMS)


def test_band_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="band"):
        NeedParams(band_low=0.8, band_high=0.2)
