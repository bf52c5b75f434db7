"""Quality and batch views: PR-AUC (average precision) and F1 over 24 h agree with scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from bikeshare.inference.batch import batch_success_rate
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import INFERENCE_BATCHES, QUALITY

T0 = pd.Timestamp("2023-03-02T00:00Z")


def quality_rows(rng: np.random.Generator, rows: int, *, version: str, shift: float) -> pd.DataFrame:
    target_time = T0 + pd.to_timedelta(rng.integers(0, 36 * 12, rows) * 5, unit="min")
    probability = np.round(rng.random(rows), 3)  # on the views' 0.001 grid: exact average precision
    label = rng.random(rows) < np.clip(probability + shift, 0, 1) * 0.6
    return pd.DataFrame(
        {
            "target_time": target_time,
            "feature_time": target_time - pd.Timedelta(minutes=30),
            "station_id": [f"s{i}" for i in range(rows)],
            "target": "bikes",
            "alias": "production",
            "model_name": "bikeshare-sf-bikes",
            "model_version": version,
            "shadow": False,
            "probability": probability,
            "threshold": 0.4,
            "decision": probability >= 0.4,
            "actual_label": label,
            "actual_count": np.where(label, 1, 9),
            "status": "joined",
        }
    )


@pytest.fixture
def quality(lake: Lake) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.concat(
        [quality_rows(rng, 4000, version="1", shift=0.0), quality_rows(rng, 1500, version="2", shift=0.2)],
        ignore_index=True,
    )
    frame["actual_label"] = frame["actual_label"].astype("boolean")
    frame["actual_count"] = frame["actual_count"].astype("Int32")
    missing = frame.sample(200, random_state=1).index
    frame.loc[missing, "status"] = "missing"
    frame.loc[missing, ["actual_label", "actual_count"]] = pd.NA
    for day, part in frame.groupby(frame["target_time"].dt.strftime("%Y-%m-%d")):
        lake.write(QUALITY, part, city="sf", dt=str(day), name="rows")
    return frame


def test_quality_by_version_matches_sklearn(lake: Lake, quality: pd.DataFrame) -> None:
    got = lake.connect().sql("SELECT * FROM quality_by_version ORDER BY model_version").df().set_index("model_version")
    for version, rows in quality.groupby("model_version"):
        joined = rows[rows["status"] == "joined"]
        y, p = joined["actual_label"].astype(bool), joined["probability"]
        row = got.loc[version]
        assert (row["predictions"], row["joined"], row["missing"]) == (len(rows), len(joined), len(rows) - len(joined))
        assert row["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        assert row["f1"] == pytest.approx(f1_score(y, joined["decision"]), abs=1e-12)
        assert row["precision"] == pytest.approx(precision_score(y, joined["decision"]), abs=1e-12)
        assert row["recall"] == pytest.approx(recall_score(y, joined["decision"]), abs=1e-12)
        assert row["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)
    assert got.loc["2", "pr_auc"] > got.loc["1", "pr_auc"]  # version 2's labels follow its scores more


def test_rolling_24h_windows_match_sklearn(lake: Lake, quality: pd.DataFrame) -> None:
    got = lake.connect().sql("SELECT * FROM quality_rolling_24h WHERE model_version = '1' ORDER BY window_end").df()
    joined = quality[(quality["status"] == "joined") & (quality["model_version"] == "1")]
    assert len(got) == joined["target_time"].dt.floor("h").nunique()
    for _, row in got.iloc[[0, len(got) // 2, -1]].iterrows():
        assert row["window_end"] - row["window_start"] == pd.Timedelta(hours=24)
        inside = joined[(joined["target_time"] >= row["window_start"]) & (joined["target_time"] < row["window_end"])]
        y = inside["actual_label"].astype(bool)
        assert row["rows"] == len(inside)
        assert row["pr_auc"] == pytest.approx(average_precision_score(y, inside["probability"]), abs=1e-12)
        assert row["f1"] == pytest.approx(f1_score(y, inside["decision"]), abs=1e-12)


def test_success_rate_from_batch_records(lake: Lake) -> None:
    slots = pd.date_range("2023-03-02T10:00Z", periods=200, freq="5min")
    status = ["failed" if i in (7, 8) else "skipped" if i == 9 else "ok" for i in range(200)]
    frame = pd.DataFrame(
        {"batch_id": [f"b{i}" for i in range(200)], "feature_time": slots, "status": status, "shadow": False}
    )
    lake.write(INFERENCE_BATCHES, frame, city="sf", dt="2023-03-02", name="records")
    rate = batch_success_rate(lake=lake, city="sf", start=slots[0], end=slots[-1] + pd.Timedelta(minutes=5))
    assert (rate.ok, rate.failed, rate.skipped) == (197, 2, 1)
    assert rate.rate == pytest.approx(197 / 199)
    assert batch_success_rate(lake=lake, city="sf", start=slots[10], end=slots[20]).rate == 1.0
    assert batch_success_rate(lake=lake, city="nyc", start=slots[0], end=slots[-1]).rate is None
    days = lake.connect().sql("SELECT day, ok, failed, success_rate FROM inference_success ORDER BY day").fetchall()
    assert [d[0].strftime("%Y-%m-%d") for d in days] == ["2023-03-02", "2023-03-03"]  # 200 slots cross midnight
    assert (sum(d[1] for d in days), sum(d[2] for d in days)) == (197, 2)
    assert days[0][3] == pytest.approx(days[0][1] / (days[0][1] + 2)) and days[1][3] == 1.0
