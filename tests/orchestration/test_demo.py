"""The demo's plan on the replay clock and its summary (pure parts; the whole demo is `make demo`)."""

from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.orchestration.demo import SOAK_MARGIN, DemoError, DemoPlan, DemoSummary, demo_settings, quality_table
from bikeshare.profiles import profile_values
from bikeshare.settings import Settings

REC_START, REC_END = pd.Timestamp("2023-03-02T00:28Z"), pd.Timestamp("2023-03-09T23:50Z")


def test_the_soak_leaves_time_for_the_hours_admission_needs(tmp_path) -> None:
    base = Settings(demo_live_start="2023-03-08T12:00:00Z", demo_live_hours=8.0)
    settings = demo_settings(base, workspace=tmp_path)
    assert settings.staging_min_online_hours == 2.0  # the demo's admission asks for its soak
    plan = DemoPlan.from_settings(settings, recording_start=REC_START, recording_end=REC_END)
    start = pd.Timestamp("2023-03-08T12:00Z")
    # the last of 2 h of target times (first = start + horizon) is joined after settle + one actuals run
    last_needed = start + pd.Timedelta(minutes=30) + pd.Timedelta(hours=2) - pd.Timedelta(minutes=5)
    assert plan.soak_end >= last_needed + pd.Timedelta(minutes=2 + 5) + SOAK_MARGIN
    assert plan.live_end == plan.soak_end + pd.Timedelta(hours=8)
    assert str(settings.state_dir).startswith(str(tmp_path)) and settings.weather_enabled is False
    # demo-sized boosting for both model families, so that the batch part stays within minutes
    assert settings.train_num_trees == profile_values("demo")["train_num_trees"] < base.train_num_trees
    assert settings.forecast_num_trees < base.forecast_num_trees
    assert settings.forecast_train_max_rows < base.forecast_train_max_rows


def test_a_live_start_without_a_day_of_history_is_refused(tmp_path) -> None:
    base = Settings(demo_live_start="2023-03-02T12:00:00Z")
    with pytest.raises(DemoError, match="a day of history"):
        DemoPlan.from_settings(
            demo_settings(base, workspace=tmp_path), recording_start=REC_START, recording_end=REC_END
        )
    late = Settings(demo_live_start="2023-03-09T22:00:00Z")
    with pytest.raises(DemoError, match="after the recording's end"):
        DemoPlan.from_settings(
            demo_settings(late, workspace=tmp_path), recording_start=REC_START, recording_end=REC_END
        )


def test_quality_table_puts_the_model_beside_persistence() -> None:
    rows = pd.DataFrame(
        {
            "target": ["bikes"] * 6,
            "probability": [0.9, 0.8, 0.7, 0.1, 0.2, 0.05],
            "decision": [True, True, True, False, False, False],
            "current_count": [0, 1, 5, 9, 1, 12],
            "actual_label": [True, True, True, False, False, False],
        }
    )
    table = quality_table(rows, threshold=2).set_index("scope")
    assert table.loc["all", "rows"] == 6 and table.loc["all", "positives"] == 3
    assert table.loc["all", "model_pr_auc"] == pytest.approx(1.0)
    assert table.loc["all", "model_f1"] == pytest.approx(1.0)
    # persistence says "short" for counts <= 2: it misses the station at 5 and flags the one at 1
    assert table.loc["all", "persistence_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert table.loc["onsets", "rows"] == 3 and table.loc["onsets", "positives"] == 1


def test_the_summary_explains_alerts_on_a_fast_replay() -> None:
    alerts = pd.DataFrame({"rule": ["data_delay"], "severity": ["warning"], "status": ["resolved"], "count": [1]})
    jobs = pd.DataFrame({"job": ["ingest"], "runs": [10], "max_lag_s": [40.0]})
    summary = DemoSummary(
        urls={"endpoint": "http://127.0.0.1:1"},
        quality=pd.DataFrame(),
        latency={"requests": 3, "p50": 10.0},
        batches={"served ok": 3},
        alerts=alerts,
        jobs=jobs,
        promotions=["promoted bikeshare-sf-bikes v1 to 'production'"],
        timings={"batch_total": 300.0},
        replay_speed=120.0,
    )
    text = summary.text()
    assert "data_delay" in text and "replayed at 120x" in text and "2 min late" in text
    assert "(no joined predictions)" in text and "p50 10.0 ms" in text and "(nothing compacted)" in text
    quiet = DemoSummary(**{**summary.__dict__, "alerts": pd.DataFrame()}).text()
    assert "(none fired)" in quiet and "replayed at" not in quiet
