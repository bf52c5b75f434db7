"""`bikeshare rebalance plan` end to end on a lake backfilled from the shipped Bay Wheels slice."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import Lake
from bikeshare.orchestration.clocks import WallClock
from bikeshare.orchestration.jobs import LoopEndpoints, standard_jobs
from bikeshare.orchestration.records import JobRunRecorder
from bikeshare.rebalancing.storage import read_plan
from bikeshare.settings import Settings
from bikeshare.training.forecast import ForecastTrainingResult

from .test_model_forecast import _store_forecasts as store_forecasts


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


def test_the_cli_and_the_runners_plan_job_make_the_same_plan(
    slice_settings: Settings, forecast_run: ForecastTrainingResult, tmp_path: Path
) -> None:
    """Same lake, same time: `bikeshare rebalance plan` and the runner's plan job both plan from the
    stored model forecasts (the flow profile only where none is fresh), so they store the same plan."""
    as_of = pd.Timestamp("2023-03-09T17:00Z")
    plans = {}
    for who in ("cli", "runner"):
        root = tmp_path / who
        shutil.copytree(slice_settings.lake_uri, root / "lake")
        settings = Settings(
            lake_uri=str(root / "lake"),
            state_dir=root / "state",
            weather_enabled=False,
            rebalance_history_days=2,
            rebalance_region_ids=["3"],
            rebalance_time_limit_s=1.0,
        )
        lake = Lake.open(settings.lake_uri)
        store_forecasts(lake, settings, forecast_run.bundle, as_of - pd.Timedelta(minutes=10))
        if who == "cli":
            env = {
                "BIKESHARE_LAKE_URI": settings.lake_uri,
                "BIKESHARE_STATE_DIR": str(settings.state_dir),
                "BIKESHARE_WEATHER_ENABLED": "false",
                "BIKESHARE_REBALANCE_HISTORY_DAYS": "2",
                "BIKESHARE_REBALANCE_REGION_IDS": '["3"]',
                "BIKESHARE_REBALANCE_TIME_LIMIT_S": "1.0",
            }
            result = CliRunner().invoke(app, ["rebalance", "plan", "--as-of", as_of.isoformat()], env=env)
            assert result.exit_code == 0, result.output
        else:
            with contextlib.ExitStack() as stack:
                [job] = standard_jobs(
                    names=["plan"],
                    settings=settings,
                    lake=lake,
                    clock=WallClock(),
                    endpoints=LoopEndpoints(feed_url="", endpoint_url=""),
                    recorder=JobRunRecorder(lake, city=settings.city),
                    resources=stack,
                )
                outcome = job.run(as_of, threading.Event())
            assert outcome is not None and outcome.status == "ok", outcome
        plans[who] = read_plan(lake, city="sf", dt="2023-03-09-17-00")
    cli, runner = plans["cli"], plans["runner"]
    assert cli is not None and runner is not None
    assert runner.summary["forecaster"].startswith("model:bikeshare-sf-forecast v7")
    assert cli.summary["forecaster"] == runner.summary["forecaster"]
    # What the forecast decides (need, and the stock-outs with no action) is the same; the routes are
    # the solver's, within its time limit.
    assert cli.summary["stations_in_need"] == runner.summary["stations_in_need"]
    assert cli.summary["stockout_min_no_action"] == pytest.approx(runner.summary["stockout_min_no_action"])
    assert cli.summary["trucks"] == runner.summary["trucks"]
