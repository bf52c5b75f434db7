"""Online quality of a model version: its predictions joined with what happened (the ``quality`` table).

Production admission reads it: the ``staging`` version's own predictions (served, or scored in
shadow next to production) give its online PR-AUC and F1, and the ``production`` holder's
predictions for the same target times give the comparison. Metrics follow the lake's quality views:
PR-AUC is average precision over probabilities rounded to 0.001, F1 is at each bundle's decision.

Online hours are the distinct target times joined, times ``infer_interval_min``: the time covered
by scored batches (a gap in scoring does not count).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bikeshare.lake.store import Lake


@dataclass(frozen=True)
class OnlineQuality:
    """Joined predictions of one model version under one alias, summed up."""

    model_name: str
    version: str
    alias: str
    target_times: tuple[pd.Timestamp, ...]  # distinct joined target times, sorted
    hours: float
    rows: int
    positives: int
    pr_auc: float | None  # None: no positive label in the rows
    f1: float | None  # None: no positive label and no positive decision

    @property
    def span(self) -> str:
        if not self.target_times:
            return "no joined predictions"
        return f"{self.target_times[0]:%Y-%m-%d %H:%M}Z..{self.target_times[-1]:%Y-%m-%d %H:%M}Z"


def average_precision(bins: pd.DataFrame) -> float | None:
    """Average precision over score bins (columns score, pos, neg), as the quality views compute it."""
    pos_total = float(bins["pos"].sum())
    if pos_total <= 0:
        return None
    grouped = bins.groupby("score", sort=False)[["pos", "neg"]].sum().sort_index(ascending=False)
    pos = grouped["pos"].to_numpy(dtype=float)
    seen = np.cumsum(pos + grouped["neg"].to_numpy(dtype=float))
    return float(np.sum(pos * np.cumsum(pos) / seen) / pos_total)


def summarise(bins: pd.DataFrame, *, model_name: str, version: str, alias: str, interval_min: int) -> OnlineQuality:
    """An :class:`OnlineQuality` from per-target-time bins (target_time, score, pos, neg, tp, fp, fn)."""
    times = tuple(sorted(pd.Timestamp(t) for t in bins["target_time"].unique())) if len(bins) else ()
    tp, fp, fn = (int(bins[c].sum()) if len(bins) else 0 for c in ("tp", "fp", "fn"))
    positives = int(bins["pos"].sum()) if len(bins) else 0
    rows = positives + (int(bins["neg"].sum()) if len(bins) else 0)
    f1 = 2.0 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None
    return OnlineQuality(
        model_name=model_name,
        version=str(version),
        alias=alias,
        target_times=times,
        hours=len(times) * interval_min / 60.0,
        rows=rows,
        positives=positives,
        pr_auc=average_precision(bins) if len(bins) else None,
        f1=f1,
    )


def quality_bins(lake: Lake, *, city: str, model_name: str, version: str, alias: str) -> pd.DataFrame:
    """Joined predictions of ``model_name`` v``version`` scored as ``alias``, binned per target time and score."""
    con = lake.connect(views=["quality"])
    try:
        return con.execute(
            """
            SELECT target_time, round(probability, 3) AS score,
                   count(*) FILTER (WHERE actual_label) AS pos,
                   count(*) FILTER (WHERE NOT actual_label) AS neg,
                   count(*) FILTER (WHERE decision AND actual_label) AS tp,
                   count(*) FILTER (WHERE decision AND NOT actual_label) AS fp,
                   count(*) FILTER (WHERE NOT decision AND actual_label) AS fn
            FROM quality
            WHERE status = 'joined' AND city = $city AND model_name = $name AND model_version = $version
              AND alias = $alias
            GROUP BY ALL
            """,
            {"city": city, "name": model_name, "version": str(version), "alias": alias},
        ).df()
    finally:
        con.close()


def online_quality(
    lake: Lake,
    *,
    city: str,
    model_name: str,
    version: str,
    alias: str,
    interval_min: int,
    target_times: Iterable[pd.Timestamp] | None = None,
) -> OnlineQuality:
    """Online quality of a version as ``alias`` (optionally only at ``target_times``: "the same hours")."""
    bins = quality_bins(lake, city=city, model_name=model_name, version=version, alias=alias)
    if target_times is not None and len(bins):
        wanted = {pd.Timestamp(t) for t in target_times}
        bins = bins[bins["target_time"].map(lambda t: pd.Timestamp(t) in wanted)]
    return summarise(bins, model_name=model_name, version=version, alias=alias, interval_min=interval_min)
