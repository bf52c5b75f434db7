"""Offline writes: one partition per day, a rebuilt day replaces the old rows."""

from __future__ import annotations

import pandas as pd

from bikeshare.features.build import build_features, load_features, status_span, write_features
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import FEATURES
from bikeshare.settings import Settings

from .lakebuild import Obs, new_lake, ts, write_snapshot


def _lake(settings: Settings) -> Lake:
    lake = new_lake(settings.lake_uri)
    for k in range(24):  # 23:00 .. 00:55 across two UTC days, every 5 minutes
        at = ts("2023-03-07T23:00") + pd.Timedelta(minutes=5 * k)
        write_snapshot(lake, at, [Obs("a", 5 + k % 3, 15 - k % 3), Obs("b", 2, 18)])
    return lake


def test_write_features_splits_days_and_rebuilding_replaces(settings: Settings) -> None:
    lake = _lake(settings)
    first, last = status_span(lake=lake, city="sf")
    assert (first, last) == (ts("2023-03-07T23:00"), ts("2023-03-08T00:56"))
    written = write_features(lake=lake, start=first, end=last, settings=settings)
    assert written == ["2023-03-07", "2023-03-08"]
    stored = load_features(lake=lake, city="sf")
    # Whole days are built: slots after the last snapshot stay valid up to max_snapshot_age_min.
    direct = build_features(lake=lake, start=ts("2023-03-07T00:00"), end=ts("2023-03-08T23:55"), settings=settings)
    pd.testing.assert_frame_equal(stored, direct)
    assert stored["slot"].max() == ts("2023-03-08T01:25")
    # Late data arrives: the labels of the last slots become known once the day is rebuilt.
    assert stored[stored["slot"] == ts("2023-03-08T01:00")]["y_bikes"].isna().all()
    for k in range(24, 32):
        write_snapshot(lake, ts("2023-03-07T23:00") + pd.Timedelta(minutes=5 * k), [Obs("a", 0, 20), Obs("b", 2, 18)])
    files_before = lake.files(FEATURES, city="sf", dts=["2023-03-08"])
    write_features(lake=lake, start=ts("2023-03-08T00:00"), end=ts("2023-03-08T00:00"), settings=settings)
    assert lake.files(FEATURES, city="sf", dts=["2023-03-08"]) == files_before  # replaced, not added
    rebuilt = load_features(lake=lake, city="sf", start=ts("2023-03-08T01:00"), end=ts("2023-03-08T01:00"))
    assert rebuilt["y_bikes"].tolist() == [True, True]
    assert len(load_features(lake=lake, city="sf", start=ts("2023-03-07T00:00"), end=ts("2023-03-07T23:59"))) == 24


def test_load_features_of_an_empty_lake(settings: Settings) -> None:
    frame = load_features(lake=Lake.open(settings.lake_uri), city="sf")
    assert frame.empty and list(frame.columns) == FEATURES.schema.names
