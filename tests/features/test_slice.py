"""The feature store on the shipped slice: schema, missing rate, online == offline, CLI build/report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.features.build import load_features, online_features
from bikeshare.features.schema import (
    FEATURE_COLUMNS,
    MAX_MISSING_RATE,
    feature_schema,
    missing_rates,
    overall_missing_rate,
)
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import FEATURES
from bikeshare.settings import Settings


def test_schema_and_missing_rate_on_the_slice(slice_day_features: pd.DataFrame) -> None:
    frame = slice_day_features
    assert frame["station_id"].nunique() > 400
    assert frame["slot"].nunique() >= 140  # 144 slots; the feed has a short gap that day
    feature_schema().validate(frame, lazy=True)
    rate = overall_missing_rate(frame)
    assert rate < MAX_MISSING_RATE, missing_rates(frame).head(10)
    # Labels are known for all but the slots whose horizon has no snapshot.
    assert frame["y_bikes"].notna().mean() > 0.97
    assert 0.02 < frame["y_bikes"].dropna().astype(bool).mean() < 0.3


def test_a_broken_row_fails_the_schema(slice_day_features: pd.DataFrame) -> None:
    broken = slice_day_features.head(50).copy()
    broken.loc[broken.index[0], "fill_ratio"] = 1.7
    with pytest.raises(Exception, match="fill_ratio"):
        feature_schema().validate(broken, lazy=True)


@pytest.mark.parametrize("slot", ["2023-03-09T12:35Z", "2023-03-09T16:00Z", "2023-03-09T23:55Z"])
def test_online_rows_equal_offline_rows(slice_settings: Settings, slice_day_features: pd.DataFrame, slot: str) -> None:
    t = pd.Timestamp(slot)
    lake = Lake.open(slice_settings.lake_uri)
    started = time.perf_counter()
    online = online_features(lake=lake, at=t + pd.Timedelta(minutes=2), settings=slice_settings)
    elapsed = time.perf_counter() - started
    offline = slice_day_features[slice_day_features["slot"] == t]
    columns = ["station_id", "slot", *FEATURE_COLUMNS]
    pd.testing.assert_frame_equal(
        online[columns].sort_values("station_id").reset_index(drop=True),
        offline[columns].sort_values("station_id").reset_index(drop=True),
    )
    assert len(online) > 400
    assert elapsed < 10  # measured well under 1 s on an idle machine (docs/feature_store.md)


def _env(settings: Settings) -> dict[str, str]:
    return {
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
    }


def test_cli_builds_a_day_and_reports(slice_settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    args = [
        "features",
        "build",
        "--start",
        "2023-03-02",
        "--end",
        "2023-03-02",
    ]  # the first day: little history to read
    result = runner.invoke(app, args, env=_env(slice_settings))
    assert result.exit_code == 0, result.output
    assert "1 day partitions written (2023-03-02..2023-03-02)" in result.output
    lake = Lake.open(slice_settings.lake_uri)
    assert len(lake.files(FEATURES, city="sf", dts=["2023-03-02"])) == 1
    stored = load_features(lake=lake, city="sf")
    assert stored["slot"].dt.strftime("%Y-%m-%d").unique().tolist() == ["2023-03-02"]
    feature_schema().validate(stored, lazy=True)

    out = tmp_path / "report"
    report = runner.invoke(app, ["features", "report", "--out", str(out)], env=_env(slice_settings))
    assert report.exit_code == 0, report.output
    text = (out / "report.md").read_text()
    for section in ("## Label rates", "## Distributions", "## Correlations", "## Time-leakage check"):
        assert section in text
    assert "Pandera feature schema: **valid**" in text
    for png in ("distributions.png", "correlations.png", "label_rate_by_hour.png"):
        assert (out / png).stat().st_size > 1000
    # The recomputed sample slots match the stored rows exactly.
    leak_rows = [line for line in text.splitlines() if line.startswith("| 2023-03-02")]
    assert len(leak_rows) == 3
    assert all(line.split("|")[4].strip() == "0" for line in leak_rows)


def test_cli_refuses_a_bad_window(slice_settings: Settings) -> None:
    result = CliRunner().invoke(
        app, ["features", "build", "--start", "2023-03-09", "--end", "2023-03-01"], env=_env(slice_settings)
    )
    assert result.exit_code != 0
    assert "after end" in result.output


def test_feature_matrix_keeps_the_order_of_names(slice_day_features: pd.DataFrame) -> None:
    from bikeshare.features.schema import feature_matrix

    rows = slice_day_features.head(5)
    matrix = feature_matrix(rows, ["docks", "bikes"])
    np.testing.assert_array_equal(matrix[:, 1], rows["bikes"].to_numpy(dtype=np.float32))
    with pytest.raises(ValueError, match="lack columns"):
        feature_matrix(rows, ["no_such_feature"])
