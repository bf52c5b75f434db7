"""Training rows: easy negatives sampled and weighted, and one float32 matrix of several row masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bikeshare.settings import Settings
from bikeshare.training.evaluate import label_column

# A row is an easy negative when its label is negative and its count is at least this far above the
# shortage threshold now: a station with that many bikes (docks) is all but never short 30 min later.
EASY_NEGATIVE_MARGIN = 8


@dataclass(frozen=True)
class Sampling:
    """Which training rows are kept and the weight of each kept row (1/rate for sampled easy negatives)."""

    kept: np.ndarray  # bool mask over the frame's rows
    weight: np.ndarray  # float32, one per kept row, in frame order
    rate: float
    rows: int  # training rows kept
    rows_before: int  # training rows before sampling

    def params(self) -> dict[str, float | int]:
        """What a run logs, so the weights that keep probabilities calibrated are on record."""
        out: dict[str, float | int] = {"easy_negative_rate": self.rate}
        if self.rate < 1.0:
            out |= {"easy_negative_margin": EASY_NEGATIVE_MARGIN, "train_rows_before_sampling": self.rows_before}
        return out


def easy_negatives(frame: pd.DataFrame, *, target: str, settings: Settings) -> np.ndarray:
    """Rows with a negative label whose current count is far from the shortage threshold."""
    label = frame[label_column(target)].to_numpy(dtype=bool, na_value=True)
    current = frame[target].to_numpy(dtype=float, na_value=np.nan)
    return ~label & (current >= settings.shortage_threshold + EASY_NEGATIVE_MARGIN)


def easy_negative_sampling(frame: pd.DataFrame, rows: np.ndarray, *, target: str, settings: Settings) -> Sampling:
    """Keep each easy negative among ``rows`` with probability ``train_easy_negative_rate``, weight 1/rate.

    The expected weighted count of every kind of row is unchanged, so the model's scores (and the
    calibration fitted on unsampled validation rows) stay calibrated. Seeded: the same rows each run.
    """
    rate = settings.train_easy_negative_rate
    before = int(rows.sum())
    if rate >= 1.0:
        return Sampling(kept=rows, weight=np.ones(before, np.float32), rate=1.0, rows=before, rows_before=before)
    easy = easy_negatives(frame, target=target, settings=settings) & rows
    draw = np.random.default_rng(settings.random_seed).random(len(frame)) < rate
    kept = rows & (~easy | draw)
    weight = np.where(easy[kept], np.float32(1.0 / rate), np.float32(1.0)).astype(np.float32)
    return Sampling(kept=kept, weight=weight, rate=rate, rows=int(kept.sum()), rows_before=before)


def stacked_matrix(frame: pd.DataFrame, masks: list[np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """The float32 matrix of the rows of each mask in turn (frame order within a mask), NaN for missing.

    Built column by column from the frame, so no copy of the selected rows' frame is made.
    """
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"feature rows lack columns {missing}")
    out = np.empty((sum(int(m.sum()) for m in masks), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        column = frame[name].to_numpy(dtype=np.float32, na_value=np.nan)
        out[:, j] = np.concatenate([column[m] for m in masks])
    return out
