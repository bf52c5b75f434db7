"""No leakage: whatever happens after t, no feature at t changes (hypothesis)."""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bikeshare.features.build import build_features, online_features
from bikeshare.features.schema import FEATURE_COLUMNS, LABEL_COLUMNS
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings

from .lakebuild import STATIONS, Obs, new_lake, ts, write_snapshot

T = ts("2023-03-07T16:00")
# Snapshot times (minutes from T): irregular, with some from the day before (history features).
PAST = [-1440 - 5, -1440 + 12, -1440 + 25, -150, -118, -95, -71, -52, -40, -27, -13, -4, 0]
FUTURE = [3, 9, 21, 34, 48, 60]

counts = st.lists(st.integers(min_value=0, max_value=20), min_size=len(STATIONS), max_size=len(STATIONS))


def _write(lake: Lake, minutes: list[int], values: list[list[int]], *, masked: set[int] | None = None) -> None:
    for i, (m, row) in enumerate(zip(minutes, values, strict=True)):
        obs = [Obs(sid, b, 20 - b, masked=i in (masked or set())) for sid, b in zip(STATIONS, row, strict=True)]
        write_snapshot(lake, T + pd.Timedelta(minutes=m), obs)


def _features_at_t(lake: Lake, settings: Settings) -> pd.DataFrame:
    frame = build_features(lake=lake, start=T - pd.Timedelta(minutes=10), end=T, settings=settings)
    frame = frame[frame["slot"] <= T].drop(columns=list(LABEL_COLUMNS))
    return frame.sort_values(["slot", "station_id"]).reset_index(drop=True)


@hsettings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    past=st.lists(counts, min_size=len(PAST), max_size=len(PAST)),
    future_a=st.lists(counts, min_size=len(FUTURE), max_size=len(FUTURE)),
    future_b=st.lists(counts, min_size=len(FUTURE), max_size=len(FUTURE)),
    masked_b=st.sets(st.integers(min_value=0, max_value=len(FUTURE) - 1)),
    drop_b=st.integers(min_value=0, max_value=len(FUTURE)),
)
def test_data_after_t_changes_no_feature_at_t(
    past: list[list[int]],
    future_a: list[list[int]],
    future_b: list[list[int]],
    masked_b: set[int],
    drop_b: int,
) -> None:
    with tempfile.TemporaryDirectory() as root_a, tempfile.TemporaryDirectory() as root_b:
        frames = []
        for root, future, masked, keep in (
            (root_a, future_a, set(), len(FUTURE)),
            (root_b, future_b, masked_b, len(FUTURE) - drop_b),
        ):
            settings = Settings(lake_uri=f"{root}/lake", state_dir=f"{root}/state", weather_enabled=False)
            lake = new_lake(settings.lake_uri)
            _write(lake, PAST, past)
            _write(lake, FUTURE[:keep], future[:keep], masked=masked)
            frames.append(_features_at_t(lake, settings))
        a, b = frames
        assert not a.empty
        pd.testing.assert_frame_equal(a, b)


def test_the_future_does_change_the_labels(settings: Settings) -> None:
    """The check above can fail: the same change after t does move the labels at t."""
    lake = new_lake(settings.lake_uri)
    _write(lake, PAST, [[5, 5, 5]] * len(PAST))
    _write(lake, FUTURE, [[5, 5, 5]] * len(FUTURE))
    before = build_features(lake=lake, start=T, end=T, settings=settings)
    _write(lake, FUTURE, [[0, 0, 0]] * len(FUTURE))
    after = build_features(lake=lake, start=T, end=T, settings=settings)
    assert not before["y_bikes"].any() and after["y_bikes"].all()
    features = list(FEATURE_COLUMNS)
    np.testing.assert_array_equal(
        before[features].to_numpy(dtype=float, na_value=np.nan), after[features].to_numpy(dtype=float, na_value=np.nan)
    )
    online = online_features(lake=lake, at=T, settings=settings)
    np.testing.assert_array_equal(
        online[features].to_numpy(dtype=float, na_value=np.nan), after[features].to_numpy(dtype=float, na_value=np.nan)
    )
