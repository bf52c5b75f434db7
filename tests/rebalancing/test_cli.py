"""`bikeshare rebalance plan` end to end on a lake backfilled from the shipped Bay Wheels slice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import Lake
from bikeshare.rebalancing.storage import read_plan
from bikeshare.settings import Settings


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("rebalance-cli")
    settings = Settings(lake_uri=str(root / "lake"), state_dir=root / "state", weather_enabled=False)
    backfill(recording=Recording.open(default_recording_path()), lake=Lake.open(settings.lake_uri), settings=settings)
    return {
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_REBALANCE_HISTORY_DAYS": "2",
        "BIKESHARE_REBALANCE_REGION_IDS": '["3"]',
    }


def test_plan_is_printed_stored_and_queryable(backfilled: dict[str, str]) -> None:
    runner = CliRunner()
    args = ["rebalance", "plan", "--as-of", "2023-03-09T17:00Z", "--trucks", "2", "--truck-capacity", "15"]
    result = runner.invoke(app, [*args, "--time-limit-s", "2"], env=backfilled)
    assert result.exit_code == 0, result.output
    assert "plan 2023-03-09T17:00Z" in result.output and "truck 2:" in result.output
    assert "stored " in result.output

    stored = read_plan(Lake.open(backfilled["BIKESHARE_LAKE_URI"]), city="sf", dt="2023-03-09-17-00")
    assert stored is not None
    assert stored.summary["trucks"] == 2 and stored.summary["truck_capacity"] == 15
    assert stored.summary["forecaster"] == "flow_profile"
    routes = stored.routes()
    assert not routes.empty and set(routes["truck"]) <= {1, 2}
    assert (routes["load_after"].between(0, 15)).all()
    assert stored.summary["stockout_min_plan"] <= stored.summary["stockout_min_greedy"] + 1e-9
    assert stored.summary["stockout_min_plan"] < stored.summary["stockout_min_no_action"]

    query = "SELECT count(*) AS n, min(avoided_vs_no_action) AS saved FROM plan_summary"
    out = runner.invoke(app, ["sql", query, "--format", "json"], env=backfilled)
    assert out.exit_code == 0, out.output
    row = json.loads(out.output)[0]
    assert row["n"] == 1 and row["saved"] > 0

    again = runner.invoke(app, [*args, "--time-limit-s", "1"], env=backfilled)
    assert again.exit_code == 0 and "already stored" in again.output


def test_plan_on_an_empty_lake_names_the_problem(tmp_path: Path) -> None:
    env = {
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "400",
    }
    result = CliRunner().invoke(app, ["rebalance", "plan"], env=env)
    assert result.exit_code != 0
    assert "no station_status" in result.output


def test_plan_refuses_a_bad_time(backfilled: dict[str, str]) -> None:
    env = {**backfilled, "COLUMNS": "400"}
    result = CliRunner().invoke(app, ["rebalance", "plan", "--as-of", "yesterday-ish"], env=env)
    assert result.exit_code != 0
    assert "not an ISO date" in result.output
