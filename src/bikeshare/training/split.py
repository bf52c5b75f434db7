"""Time-ordered train / validation / test split with gaps of at least the horizon."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bikeshare.settings import Settings


@dataclass(frozen=True)
class TimeSplit:
    """Inclusive slot bounds (UTC) of each part; consecutive parts are separated by ``gap``."""

    train: tuple[pd.Timestamp, pd.Timestamp]
    validation: tuple[pd.Timestamp, pd.Timestamp]
    test: tuple[pd.Timestamp, pd.Timestamp]
    gap: pd.Timedelta

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in ("train", "validation", "test"):
            lo, hi = getattr(self, part)
            out[f"{part}_start"] = lo.isoformat()
            out[f"{part}_end"] = hi.isoformat()
        out["gap_min"] = str(int(self.gap.total_seconds() // 60))
        return out


def plan_split(
    slots: pd.Series,
    *,
    settings: Settings,
    test_start: pd.Timestamp | None = None,
    validation_start: pd.Timestamp | None = None,
) -> TimeSplit:
    """Split the slots that hold rows in time: train, then validation, then test.

    By default the test part is the last ``test_fraction`` of the distinct slots and validation the
    last ``validation_fraction`` of the distinct slots before it, so a gap in the data (an outage, a
    missing month) shrinks no part to nothing: the fractions count slots with rows, not time. A row
    whose label (slot + horizon) would fall in the next part is left out: each gap is the horizon
    plus one slot.
    """
    if slots.empty:
        raise ValueError("cannot split zero feature rows")
    held = pd.DatetimeIndex(slots.drop_duplicates()).sort_values()
    first, last = held[0], held[-1]
    grid = pd.Timedelta(minutes=settings.grid_minutes)
    gap = pd.Timedelta(minutes=settings.horizon_min) + grid
    if test_start is None:
        test_start = _last_fraction_start(held, settings.test_fraction)
    if validation_start is None:
        before = held[held <= test_start - gap]
        validation_start = _last_fraction_start(before, settings.validation_fraction) if len(before) else test_start
    train = (first, validation_start - gap)
    validation = (validation_start, test_start - gap)
    test = (test_start, last)
    for name, (lo, hi) in (("train", train), ("validation", validation), ("test", test)):
        if hi < lo:
            raise ValueError(f"the {name} part is empty ({lo} .. {hi}): {first} .. {last} is too short for this split")
    return TimeSplit(train=train, validation=validation, test=test, gap=gap)


def _last_fraction_start(held: pd.DatetimeIndex, fraction: float) -> pd.Timestamp:
    """The first of the last ``fraction`` of the (sorted, distinct) slots ``held``: at least one slot."""
    count = max(1, math.ceil(len(held) * fraction))
    return pd.Timestamp(held[len(held) - count])


def split_frame(frame: pd.DataFrame, split: TimeSplit) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The rows of each part (rows inside a gap belong to none)."""
    parts = []
    for lo, hi in (split.train, split.validation, split.test):
        parts.append(frame[(frame["slot"] >= lo) & (frame["slot"] <= hi)])
    return parts[0], parts[1], parts[2]
