"""Every feature family on a small exact lake whose values can be worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bikeshare.features.build import build_features
from bikeshare.features.schema import FEATURE_COLUMNS, feature_matrix, feature_schema
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings

from .lakebuild import Obs, new_lake, ts, write_snapshot, write_weather

T = ts("2023-03-07T10:00")  # a Tuesday, 02:00 in San Francisco (PST)


def a_bikes(k: int) -> int:
    """Station a loses one bike every 15 minutes from 12 at 08:00 (k = 5-minute steps)."""
    return max(0, 12 - k // 3)


@pytest.fixture(scope="module")
def family_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("families")
    return Settings(lake_uri=str(root / "lake"), state_dir=root / "state", weather_enabled=False)


@pytest.fixture(scope="module")
def family_lake(family_settings: Settings) -> Lake:
    lake = new_lake(family_settings.lake_uri)
    start = ts("2023-03-07T08:00")
    for k in range(49):  # 08:00 .. 12:00, one snapshot per slot
        at = start + pd.Timedelta(minutes=5 * k)
        b = a_bikes(k)
        write_snapshot(lake, at, [Obs("a", b, 20 - b, ebikes=b // 2), Obs("b", 4, 16), Obs("far", 9, 11)])
    # The day before: station b had 10 bikes at 10:00 and 7 at 10:30.
    write_snapshot(lake, "2023-03-06T10:00", [Obs("b", 10, 10)])
    write_snapshot(lake, "2023-03-06T10:30", [Obs("b", 7, 13)])
    write_weather(lake, {"2023-03-07T09:00": 11.0, "2023-03-07T10:00": 12.5})
    return lake


@pytest.fixture(scope="module")
def rows(family_lake: Lake, family_settings: Settings) -> pd.DataFrame:
    frame = build_features(lake=family_lake, start=ts("2023-03-07T09:55"), end=T, settings=family_settings)
    return frame.set_index(["station_id", "slot"])


def test_current_state_and_capacity(rows: pd.DataFrame) -> None:
    a = rows.loc[("a", T)]
    assert (a["bikes"], a["docks"], a["capacity"], a["ebikes"]) == (4, 16, 20, 2)
    assert a["fill_ratio"] == pytest.approx(0.2)
    assert a["ebike_share"] == pytest.approx(0.5)
    assert a["snapshot_age_min"] == 0


def test_rolling_net_flow_and_stats(rows: pd.DataFrame) -> None:
    a = rows.loc[("a", T)]  # k = 24
    assert a["net_flow_15"] == a_bikes(24) - a_bikes(21) == -1
    assert a["net_flow_30"] == a_bikes(24) - a_bikes(18) == -2
    assert a["net_flow_60"] == a_bikes(24) - a_bikes(12) == -4
    assert a["net_flow_120"] == a_bikes(24) - a_bikes(0) == -8
    assert a["docks_change_30"] == 2
    window = np.array([a_bikes(k) for k in range(13, 25)], dtype=float)  # the 12 slots of the last hour
    assert a["bikes_mean_60"] == pytest.approx(window.mean(), rel=1e-6)
    assert a["bikes_std_60"] == pytest.approx(window.std(), rel=1e-5)
    assert (a["bikes_min_60"], a["bikes_max_60"]) == (window.min(), window.max())
    slope_per_slot = np.polyfit(np.arange(12), window, 1)[0]
    assert a["bikes_trend_60"] == pytest.approx(slope_per_slot * 12, rel=1e-4)
    assert a["slots_seen_60"] == 12
    assert a["turnover_60"] == 4  # one bike left four times within the hour
    b = rows.loc[("b", T)]
    assert (b["net_flow_30"], b["bikes_std_60"], b["turnover_60"]) == (0, 0, 0)
    assert b["short_bikes_slots_60"] == 0


def test_place(rows: pd.DataFrame) -> None:
    a, b, far = rows.loc[("a", T)], rows.loc[("b", T)], rows.loc[("far", T)]
    assert a["region_code"] == 3
    assert (a["lat"], a["lon"]) == (37.775, -122.419)
    assert a["geo_cell"] == b["geo_cell"] != far["geo_cell"]


def test_neighbourhood_within_the_radius(rows: pd.DataFrame) -> None:
    a, far = rows.loc[("a", T)], rows.loc[("far", T)]
    # b is ~111 m from a, far ~2.2 km: only b counts, weighted by 1 - distance / radius.
    assert (a["nb_count"], a["nb_bikes"], a["nb_docks"]) == (1, 4, 16)
    weight = 1 - 111.2 / 500.0
    assert a["nb_bikes_w"] == pytest.approx(4 * weight, rel=2e-3)
    assert a["nb_docks_w"] == pytest.approx(16 * weight, rel=2e-3)
    assert a["nb_fill_ratio"] == pytest.approx(0.2)
    assert (far["nb_count"], far["nb_bikes"], far["nb_docks"]) == (0, 0, 0)
    b = rows.loc[("b", T)]
    assert b["nb_net_flow_30"] == -2  # a's net flow
    assert b["nb_short_bikes"] == 0


def test_wider_areas(rows: pd.DataFrame) -> None:
    a = rows.loc[("a", T)]
    assert a["sys_net_flow_30"] == pytest.approx(-2 / 3)
    assert a["cell_net_flow_30"] == -2  # a and b share a cell, far does not
    assert (a["cell_bikes"], a["cell_docks"]) == (8, 32)
    assert a["sys_fill_ratio"] == pytest.approx((4 + 4 + 9) / 60)


def test_calendar_in_the_system_time_zone(rows: pd.DataFrame) -> None:
    a = rows.loc[("a", T)]
    assert (a["hour_local"], a["weekday"], a["is_weekend"], a["is_holiday"]) == (2.0, 2, 0, 0)
    assert rows.loc[("a", ts("2023-03-07T09:55")), "hour_local"] == pytest.approx(1 + 55 / 60)


def test_station_history_at_this_time_of_day(rows: pd.DataFrame) -> None:
    b = rows.loc[("b", T)]
    # One past day known: 10 bikes at 10:00, 7 at 10:30 the day before.
    assert (b["hist_days"], b["hist_flow_h"], b["hist_bikes_h"]) == (1, -3, 7)
    assert (b["hist_short_bikes_h"], b["hist_any_short_bikes_h"]) == (0, 0)
    assert b["daytype_flow_h"] == -3  # Monday and Tuesday are both workdays
    # Smoothed over +-30 minutes of that day: 10:00-10:25 lose 3 bikes in the next 30 minutes, 10:30
    # loses none, 09:30-09:55 had no data.
    assert b["hist_smooth_flow_h"] == pytest.approx(-18 / 7, rel=1e-5)
    a = rows.loc[("a", T)]
    assert a["hist_days"] == 0 and np.isnan(a["hist_flow_h"])


def test_weather_as_of_the_latest_hour(rows: pd.DataFrame) -> None:
    assert rows.loc[("a", T), "temp_c"] == 12.5
    assert rows.loc[("a", ts("2023-03-07T09:55")), "temp_c"] == 11.0
    assert rows.loc[("a", T), "precip_mm"] == 0.5


def test_labels_at_the_horizon(rows: pd.DataFrame) -> None:
    a = rows.loc[("a", T)]
    assert (a["bikes_t_h"], a["docks_t_h"], a["y_bikes"], a["y_docks"]) == (a_bikes(30), 18, True, False)
    earlier = rows.loc[("a", ts("2023-03-07T09:55"))]
    assert (earlier["bikes_t_h"], earlier["y_bikes"]) == (a_bikes(29), False)


def test_labels_are_null_where_the_horizon_is_missing(family_lake: Lake, family_settings: Settings) -> None:
    frame = build_features(
        lake=family_lake, start=ts("2023-03-07T11:30"), end=ts("2023-03-07T11:40"), settings=family_settings
    )
    late = frame[frame["slot"] == ts("2023-03-07T11:40")]
    # 12:10 is 10 minutes past the last snapshot (12:00): still valid; 11:40 + 30 = 12:10.
    assert late["y_bikes"].notna().all()
    frame = build_features(
        lake=family_lake, start=ts("2023-03-07T12:00"), end=ts("2023-03-07T12:00"), settings=family_settings
    )
    # 12:30 is exactly 30 minutes after 12:00: still within the age limit.
    assert frame["y_bikes"].notna().all()
    frame = build_features(
        lake=family_lake, start=ts("2023-03-07T12:05"), end=ts("2023-03-07T12:30"), settings=family_settings
    )
    assert frame["y_bikes"].isna().all() and frame["bikes_t_h"].isna().all()


def test_without_weather_the_columns_are_null(tmp_path: Path, settings: Settings) -> None:
    lake = new_lake(settings.lake_uri)
    for k in range(4):
        write_snapshot(lake, T + pd.Timedelta(minutes=5 * k), [Obs("a", 5, 15)])
    frame = build_features(lake=lake, start=T, end=T + pd.Timedelta(minutes=15), settings=settings)
    assert len(frame) == 4
    assert frame[["temp_c", "precip_mm", "wind_kmh", "condition_code"]].isna().all().all()
    assert np.isnan(feature_matrix(frame, FEATURE_COLUMNS)).any()  # NaN reaches the model, which handles it


def test_public_holidays_of_the_country(settings: Settings) -> None:
    lake = new_lake(settings.lake_uri)
    for day in ("2023-07-04", "2023-07-14"):
        write_snapshot(lake, f"{day}T18:00", [Obs("a", 5, 15)])
    us = build_features(
        lake=lake, start=ts("2023-07-04T18:00"), end=ts("2023-07-14T18:00"), settings=settings
    ).set_index("slot")
    assert us.loc[ts("2023-07-04T18:00"), "is_holiday"] == 1  # US Independence Day (country from the time zone)
    assert us.loc[ts("2023-07-14T18:00"), "is_holiday"] == 0
    france = settings.model_copy(update={"holiday_country": "FR"})
    fr = build_features(lake=lake, start=ts("2023-07-04T18:00"), end=ts("2023-07-14T18:00"), settings=france).set_index(
        "slot"
    )
    assert fr.loc[ts("2023-07-04T18:00"), "is_holiday"] == 0
    assert fr.loc[ts("2023-07-14T18:00"), "is_holiday"] == 1  # Fête nationale


def test_rows_pass_the_feature_schema(rows: pd.DataFrame) -> None:
    feature_schema().validate(rows.reset_index(), lazy=True)
