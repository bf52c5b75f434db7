"""The replay evaluation loop on the shipped slice: honest inputs, per-plan outcomes, the table."""

from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.rebalancing.evaluation import RecordedCounts, plan_times, run_replay, summary_table
from bikeshare.rebalancing.fleet import Fleet
from bikeshare.rebalancing.plan import PlanParams


@pytest.fixture(scope="module")
def recording() -> Recording:
    return Recording.open(default_recording_path())


def test_replay_evaluation_of_two_plans(recording: Recording) -> None:
    days = recording.iter_status(start="2023-03-07T00:00Z", end="2023-03-09T20:00Z", chunk=256)
    status = pd.concat([rows for _, rows in days], ignore_index=True)
    counts = RecordedCounts.from_status(status, step_min=5, max_age_min=30)
    fleet = Fleet(trucks=2, capacity=15, timezone="America/Los_Angeles")
    times = plan_times(pd.Timestamp("2023-03-09T16:10Z"), pd.Timestamp("2023-03-09T18:00Z"), 60)
    assert times == [pd.Timestamp("2023-03-09T17:00Z"), pd.Timestamp("2023-03-09T18:00Z")]
    outcomes = run_replay(
        plan_times=times,
        snapshot_at=recording.status_at,
        information_at=recording.information_at,
        counts=counts,
        fleet=fleet,
        params=PlanParams(time_limit_s=1.0),
        region_ids=["3"],
        lookback_days=2,
    )
    assert len(outcomes) == 2
    assert (outcomes["stations"] > 200).all()
    assert (outcomes["replay_plan"] <= outcomes["replay_no_action"]).all()
    assert (outcomes["replay_greedy"] <= outcomes["replay_no_action"]).all()
    assert (outcomes["expected_plan"] <= outcomes["expected_greedy"] + 1e-9).all()
    assert (outcomes["moved_plan"] > 0).all()
    table = summary_table(outcomes, travel_cost=0.2)
    assert table.columns.tolist() == ["metric", "no action", "greedy", "optimised"]
    assert table.iloc[0]["optimised"] == "2"


def test_plans_outside_the_shift_are_skipped(recording: Recording) -> None:
    status = recording.status_at("2023-03-09T12:00Z").assign(last_updated=pd.Timestamp("2023-03-09T12:00Z"))
    counts = RecordedCounts.from_status(status, step_min=5, max_age_min=30)
    fleet = Fleet(trucks=1, timezone="America/Los_Angeles")  # 12:00Z is 04:00 in San Francisco
    outcomes = run_replay(
        plan_times=[pd.Timestamp("2023-03-09T12:00Z")],
        snapshot_at=recording.status_at,
        information_at=recording.information_at,
        counts=counts,
        fleet=fleet,
        params=PlanParams(time_limit_s=0.5),
    )
    assert outcomes.empty
    with pytest.raises(ValueError, match="no plan was evaluated"):
        summary_table(outcomes, travel_cost=0.2)
