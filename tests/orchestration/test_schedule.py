"""Schedules: interval boundaries since the epoch, the first run, and coalescing after an overrun."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bikeshare.orchestration.schedule import Every, boundary_at_or_before, first_due, next_due

T = pd.Timestamp
FIVE = pd.Timedelta(minutes=5)


def test_boundaries_are_multiples_of_the_interval_since_the_epoch() -> None:
    assert boundary_at_or_before(T("2023-03-08T12:07:31Z"), FIVE) == T("2023-03-08T12:05Z")
    assert boundary_at_or_before(T("2023-03-08T12:05Z"), FIVE) == T("2023-03-08T12:05Z")
    assert boundary_at_or_before(T("2023-03-08T12:04:59.999999Z"), FIVE) == T("2023-03-08T12:00Z")
    # hourly at :00 and daily at midnight UTC, whatever the start time
    assert boundary_at_or_before(T("2023-03-08T12:59Z"), pd.Timedelta(hours=1)) == T("2023-03-08T12:00Z")
    assert boundary_at_or_before(T("2023-03-08T23:59Z"), pd.Timedelta(days=1)) == T("2023-03-08T00:00Z")


def test_first_run_is_the_next_boundary_or_at_once() -> None:
    every = Every(FIVE)
    assert first_due(T("2023-03-08T12:07Z"), every) == T("2023-03-08T12:10Z")
    assert first_due(T("2023-03-08T12:10Z"), every) == T("2023-03-08T12:10Z")  # on a boundary: now
    assert first_due(T("2023-03-08T12:07Z"), Every(FIVE, at_start=True)) == T("2023-03-08T12:07Z")


def test_a_run_within_its_interval_keeps_the_next_boundary() -> None:
    due, skipped = next_due(T("2023-03-08T12:05Z"), T("2023-03-08T12:06:30Z"), Every(FIVE))
    assert (due, skipped) == (T("2023-03-08T12:10Z"), 0)
    # an at-start run off the grid goes back on it
    due, skipped = next_due(T("2023-03-08T12:07Z"), T("2023-03-08T12:07:10Z"), Every(FIVE, at_start=True))
    assert (due, skipped) == (T("2023-03-08T12:10Z"), 0)


def test_an_overrun_runs_once_late_and_coalesces_the_missed_boundaries() -> None:
    # scheduled 12:05, finished 12:23: 12:10 and 12:15 passed unrun, 12:20 is the latest passed boundary
    due, skipped = next_due(T("2023-03-08T12:05Z"), T("2023-03-08T12:23Z"), Every(FIVE))
    assert (due, skipped) == (T("2023-03-08T12:20Z"), 2)
    # finishing exactly on the next boundary: that boundary runs at once, nothing skipped
    due, skipped = next_due(T("2023-03-08T12:05Z"), T("2023-03-08T12:10Z"), Every(FIVE))
    assert (due, skipped) == (T("2023-03-08T12:10Z"), 0)


@given(
    scheduled_min=st.integers(min_value=0, max_value=10_000),
    run_s=st.floats(min_value=0, max_value=3 * 3600, allow_nan=False),
    interval_min=st.sampled_from([1, 5, 15, 60]),
)
def test_next_due_is_a_passed_or_next_boundary_never_a_queue(
    scheduled_min: int, run_s: float, interval_min: int
) -> None:
    interval = pd.Timedelta(minutes=interval_min)
    scheduled = boundary_at_or_before(T("2023-03-01T00:00Z") + pd.Timedelta(minutes=scheduled_min), interval)
    finished = scheduled + pd.Timedelta(seconds=run_s)
    due, skipped = next_due(scheduled, finished, Every(interval))
    assert due == boundary_at_or_before(due, interval)  # on the grid
    assert due > scheduled
    assert due <= max(finished, scheduled + interval)  # never later than needed
    assert due > finished - interval  # the latest passed boundary, not an older one
    missed = (
        len(pd.date_range(scheduled + interval, finished, freq=interval)) if finished >= scheduled + interval else 0
    )
    assert skipped == max(missed - 1, 0)


def test_schedule_validation_and_description() -> None:
    with pytest.raises(ValueError, match="positive"):
        Every(pd.Timedelta(0))
    assert Every.minutes(5).describe() == "every 5 min"
    assert Every(pd.Timedelta(hours=24)).describe() == "every 24 h"
    assert Every.seconds(90).describe() == "every 90 s"
    assert Every.seconds(60, at_start=True).at_start
