"""The canonical grid: as-of the latest unmasked snapshot, missing after max_snapshot_age_min."""

from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.features.build import build_features, needed_ranges, online_features, slot_index, slot_time
from bikeshare.features.sql import HISTORY_SMOOTH_MIN, RECENT_LOOKBACK_MIN
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings

from .lakebuild import Obs, new_lake, ts, write_snapshot


@pytest.fixture
def grid_lake(settings: Settings) -> Lake:
    """Station a: irregular snapshots with a 57-minute hole, then a masked snapshot."""
    lake = new_lake(settings.lake_uri)
    for at, bikes in (("10:02", 5), ("10:13", 7), ("11:10", 3)):
        write_snapshot(lake, f"2023-03-07T{at}", [Obs("a", bikes, 20 - bikes)])
    write_snapshot(lake, "2023-03-07T11:21", [Obs("a", 0, 20, masked=True)])
    return lake


def _by_slot(frame: pd.DataFrame) -> dict[str, tuple[int, float]]:
    return {
        f"{s:%H:%M}": (int(b), float(a))
        for s, b, a in zip(frame["slot"], frame["bikes"], frame["snapshot_age_min"], strict=True)
    }


def test_grid_is_as_of_the_latest_snapshot_and_missing_after_the_age_limit(grid_lake: Lake, settings: Settings) -> None:
    frame = build_features(lake=grid_lake, start=ts("2023-03-07T10:00"), end=ts("2023-03-07T11:55"), settings=settings)
    got = _by_slot(frame)
    assert "10:00" not in got  # before the first snapshot
    assert got["10:05"] == (5, 3.0)
    assert got["10:10"] == (5, 8.0)
    assert got["10:15"] == (7, 2.0)
    assert got["10:40"] == (7, 27.0)  # 27 minutes old: still valid
    for missing in ("10:45", "10:50", "11:05"):  # older than max_snapshot_age_min (30): missing, no endless fill
        assert missing not in got
    assert got["11:10"] == (3, 0.0)
    # The masked 11:21 snapshot is skipped: the slot keeps the 11:10 counts until they are too old.
    assert got["11:25"] == (3, 15.0)
    assert got["11:40"] == (3, 30.0)
    assert "11:45" not in got
    assert frame["slot"].is_monotonic_increasing
    assert (frame["slot"].dt.minute % settings.grid_minutes == 0).all()


def test_a_shorter_age_limit_drops_more_slots(grid_lake: Lake, settings: Settings) -> None:
    strict = settings.model_copy(update={"max_snapshot_age_min": 10})
    frame = build_features(lake=grid_lake, start=ts("2023-03-07T10:00"), end=ts("2023-03-07T11:55"), settings=strict)
    assert set(_by_slot(frame)) == {"10:05", "10:10", "10:15", "10:20", "11:10", "11:15", "11:20"}


def test_a_ten_minute_grid(grid_lake: Lake, settings: Settings) -> None:
    ten = settings.model_copy(update={"grid_minutes": 10})
    frame = build_features(lake=grid_lake, start=ts("2023-03-07T10:00"), end=ts("2023-03-07T11:00"), settings=ten)
    assert _by_slot(frame) == {"10:10": (5, 8.0), "10:20": (7, 7.0), "10:30": (7, 17.0), "10:40": (7, 27.0)}


def test_online_rows_are_the_latest_slot(grid_lake: Lake, settings: Settings) -> None:
    frame = online_features(lake=grid_lake, at=ts("2023-03-07T10:18:59"), settings=settings)
    assert list(frame["slot"]) == [ts("2023-03-07T10:15")]
    assert frame["y_bikes"].isna().all()  # online rows carry no label


def test_slot_arithmetic_and_ranges(settings: Settings) -> None:
    t = ts("2023-03-07T10:17")
    idx = slot_index(t, 5)
    assert slot_time(idx, 5) == ts("2023-03-07T10:15")
    ranges = needed_ranges(idx, idx, settings, with_labels=False)
    day = 1440 // 5
    smooth = HISTORY_SMOOTH_MIN // 5
    # The recent lookback plus one short range per history day, none overlapping.
    assert ranges[-1] == (idx - RECENT_LOOKBACK_MIN // 5, idx)
    assert (idx - 7 * day - smooth, idx - 7 * day + 6 + smooth) in ranges
    assert len(ranges) == settings.history_days + 1
    labelled = needed_ranges(idx, idx + 10, settings, with_labels=True)
    assert labelled[-1] == (idx - RECENT_LOOKBACK_MIN // 5, idx + 10 + 30 // 5)


def test_naive_times_are_refused(grid_lake: Lake, settings: Settings) -> None:
    with pytest.raises(ValueError, match="no timezone"):
        build_features(
            lake=grid_lake,
            start=pd.Timestamp("2023-03-07T10:00"),
            end=pd.Timestamp("2023-03-07T11:00"),
            settings=settings,
        )


def test_a_lake_without_system_information_is_a_clear_error(settings: Settings) -> None:
    lake = Lake.open(settings.lake_uri)
    write_snapshot(lake, "2023-03-07T10:02", [Obs("a", 5, 15)])
    with pytest.raises(ValueError, match="no system_information"):
        build_features(lake=lake, start=ts("2023-03-07T10:00"), end=ts("2023-03-07T11:00"), settings=settings)
