"""Time-ordered split with gaps of at least the horizon."""

from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.settings import Settings
from bikeshare.training.split import plan_split, split_frame


def _slots(days: int) -> pd.Series:
    return pd.Series(pd.date_range("2023-03-01", periods=days * 288, freq="5min", tz="UTC"))


def test_parts_are_ordered_and_separated_by_more_than_the_horizon(settings: Settings) -> None:
    slots = _slots(28)
    split = plan_split(slots, settings=settings)
    horizon = pd.Timedelta(minutes=settings.horizon_min)
    assert split.train[1] + horizon < split.validation[0]
    assert split.validation[1] + horizon < split.test[0]
    span = slots.max() - slots.min()
    assert split.test[1] - split.test[0] == pytest.approx(span * settings.test_fraction, abs=pd.Timedelta("5min"))
    frame = pd.DataFrame({"slot": slots})
    train, validation, test = split_frame(frame, split)
    # A training label (slot + horizon) never reaches into validation, nor validation's into test.
    assert train["slot"].max() + horizon < validation["slot"].min()
    assert validation["slot"].max() + horizon < test["slot"].min()
    assert len(train) > len(test) > len(validation) > 0


def test_explicit_test_start(settings: Settings) -> None:
    slots = _slots(28)
    start = pd.Timestamp("2023-03-22T00:00Z")
    split = plan_split(slots, settings=settings, test_start=start)
    assert split.test == (start, slots.max())
    assert split.as_dict()["test_start"] == start.isoformat()


def test_too_short_a_span_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="too short"):
        plan_split(_slots(1).head(10), settings=settings)
    with pytest.raises(ValueError, match="zero feature rows"):
        plan_split(pd.Series([], dtype="datetime64[us, UTC]"), settings=settings)


def test_a_gap_in_the_data_splits_by_the_slots_that_hold_rows(settings: Settings) -> None:
    # Ten days, a month without rows, then four days: the split follows the rows, not the span.
    before = pd.date_range("2023-01-01", periods=10 * 288, freq="5min", tz="UTC")
    after = pd.date_range("2023-02-11", periods=4 * 288, freq="5min", tz="UTC")
    slots = pd.Series(before.append(after))
    split = plan_split(slots, settings=settings)
    train, validation, test = split_frame(pd.DataFrame({"slot": slots}), split)
    n = len(slots)
    left_out = split.gap // pd.Timedelta("5min") - 1  # slots of each gap whose labels reach the next part
    assert len(test) == pytest.approx(n * settings.test_fraction, abs=1)
    candidates = n - len(test) - left_out
    assert len(validation) == pytest.approx(candidates * settings.validation_fraction, abs=1)
    assert len(train) == n - len(test) - len(validation) - 2 * left_out
    horizon = pd.Timedelta(minutes=settings.horizon_min)
    assert train["slot"].max() + horizon < validation["slot"].min()
    assert validation["slot"].max() + horizon < test["slot"].min()
    assert validation["slot"].min() == split.validation[0] and test["slot"].min() == split.test[0]


def test_validation_before_an_explicit_test_start_skips_the_gap(settings: Settings) -> None:
    before = pd.date_range("2023-01-01", periods=10 * 288, freq="5min", tz="UTC")
    after = pd.date_range("2023-02-11", periods=4 * 288, freq="5min", tz="UTC")
    slots = pd.Series(before.append(after))
    split = plan_split(slots, settings=settings, test_start=after[0])  # the test starts right after the gap
    _, validation, test = split_frame(pd.DataFrame({"slot": slots}), split)
    assert len(test) == len(after)
    assert len(validation) == pytest.approx(len(before) * settings.validation_fraction, abs=1)
    assert validation["slot"].max() == before[-1]
