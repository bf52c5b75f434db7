"""The whole loop, once per module: two hours of the shipped slice replayed through every job.

1. History: 2023-03-07 11:00-15:00 UTC of the shipped recording is backfilled into a temp lake.
2. The training pipeline runs on it (v1 of each target, small boosting), then runs again on the
   same window (it must register nothing).
3. ``bikeshare promote --to production --force --note`` puts v1 in production (staging has no
   online hours yet, so admission refuses and the override is recorded).
4. A quickly fitted challenger (v2) is logged and put in ``staging``, so inference scores it in
   shadow and the actuals give it online hours.
5. The real endpoint (create_app on uvicorn, models from the temp MLflow store) listens on a
   loopback port; a replay server serves the recording from 15:00 at ``SPEED``x; the runner runs all
   six jobs on the replay clock until 17:00 (retrain hourly, plans every 30 min).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bikeshare.lake.store import Lake
from bikeshare.settings import Settings
from support.worlds import EndpointServer, QuickRun, fit_quick_run

CITY = "sf"
HISTORY_START = pd.Timestamp("2023-03-07T11:00Z")
LIVE_START = pd.Timestamp("2023-03-07T15:00Z")  # 07:00 in San Francisco
LIVE_END = LIVE_START + pd.Timedelta(hours=2)
SPEED = 120.0  # virtual seconds per real second: two hours in 60 s (a batch every 2.5 s leaves room on a shared core)
TARGETS = ("bikes", "docks")


@dataclass
class LoopWorld:
    settings: Settings
    lake: Lake
    client: Any  # MlflowClient
    first: Any  # PipelineReport of the first pipeline run
    again: Any  # PipelineReport of the second run on the same window
    versions_after_again: dict[str, list[str]]
    forced_output: dict[str, str]  # CLI output of promote --force per target
    challenger: dict[str, str]  # target -> staging version scored in shadow
    report: Any  # RunnerReport of the loop
    runs: list[Any]  # JobRun seen by on_run
    loop_wall_s: float


def loop_settings(root: Path) -> Settings:
    # The multi-horizon forecast model has its own tests; here the pipeline trains the two targets.
    extra = {"pipeline_train_forecast": False} if "pipeline_train_forecast" in Settings.model_fields else {}
    return Settings(
        **extra,
        city=CITY,
        lake_uri=str(root / "lake"),
        state_dir=root / "state",
        weather_enabled=False,
        train_num_trees=8,
        train_num_leaves=7,
        kpi_min_pr_auc=0.0,
        kpi_min_f1=0.0,
        staging_min_online_hours=1.0,
        retrain_interval_h=1,
        rebalance_interval_min=30,
        rebalance_time_limit_s=1.0,
        rebalance_history_days=1,
        serve_model_poll_s=1.0,
        infer_timeout_s=20.0,
        infer_retry_base_delay_s=0.0,
        run_record_flush_s=2.0,
        alert_webhook_url=None,
        alert_smtp_host=None,
    )


def quick_challenger(frame: pd.DataFrame, target: str, settings: Settings) -> QuickRun:
    """A small LightGBM bundle on the pipeline's features (seconds, not a full training run)."""
    from bikeshare.lake.tables import FEATURE_VERSION

    return fit_quick_run(
        frame,
        target,
        rounds=15,
        seed=3,
        features=("bikes", "docks", "capacity", "fill_ratio", "net_flow_30", "net_flow_60", "hour_local"),
        horizon_min=settings.horizon_min,
        shortage_threshold=settings.shortage_threshold,
        feature_version=FEATURE_VERSION,
        params={"rounds": 15, "challenger": True},
    )


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "BIKESHARE_CITY": settings.city,
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
        "BIKESHARE_STAGING_MIN_ONLINE_HOURS": str(settings.staging_min_online_hours),
        "BIKESHARE_KPI_MIN_PR_AUC": "0",
        "BIKESHARE_KPI_MIN_F1": "0",
    }


@pytest.fixture(scope="module")
def loop_world(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> Iterator[LoopWorld]:
    from typer.testing import CliRunner

    from bikeshare.cli import app
    from bikeshare.gbfs.recording import Recording, default_recording_path
    from bikeshare.gbfs.replay import ReplayServer
    from bikeshare.ingest.backfill import backfill
    from bikeshare.orchestration.clocks import ReplayClock
    from bikeshare.orchestration.jobs import LoopEndpoints, run_loop
    from bikeshare.orchestration.pipeline import run_pipeline, training_frame
    from bikeshare.registry.client import list_versions, model_name, open_client
    from bikeshare.registry.promotion import promote
    from bikeshare.registry.tracking import log_training_run

    root = tmp_path_factory.mktemp("loop")
    settings = loop_settings(root)
    settings.state_dir.mkdir(parents=True)
    shutil.copyfile(mlflow_db_template, settings.state_dir / "mlflow.db")
    lake = Lake.open(settings.lake_uri)
    shipped = Recording.open(default_recording_path())
    history = shipped.cut(root / "history", start=HISTORY_START, end=LIVE_START)
    backfill(recording=history, lake=lake, settings=settings, workers=2, clock=lambda: LIVE_START)

    client = open_client(settings)
    first = run_pipeline(lake=lake, client=client, settings=settings, end=LIVE_START)
    again = run_pipeline(lake=lake, client=client, settings=settings, end=LIVE_START)
    versions = {t: [v.version for v in list_versions(client, model_name(CITY, t))] for t in TARGETS}

    runner = CliRunner()
    forced = {}
    for target in TARGETS:
        result = runner.invoke(
            app,
            ["promote", "--target", target, "--to", "production", "--version", first.targets[target].version,
             "--force", "--note", "loop test: production before any online soak", "--actor", "tests"],
            env=cli_env(settings),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        forced[target] = result.output

    frame = training_frame(lake=lake, settings=settings, end=LIVE_START)
    challenger = {}
    for target in TARGETS:
        logged = log_training_run(
            client=client, result=quick_challenger(frame, target, settings), settings=settings, commit="tests"
        )
        assert logged.version is not None
        challenger[target] = str(logged.version.version)
        outcome = promote(
            client=client,
            lake=lake,
            settings=settings,
            target=target,
            alias="staging",
            version=challenger[target],
            note="loop test: challenger scored in shadow",
            evaluator=None,
            actor="tests",
            force=True,
        )
        assert outcome.moved, outcome.message

    runs: list[Any] = []
    with (
        EndpointServer(settings) as endpoint,
        ReplayServer(shipped, speed=SPEED, start=LIVE_START, paused=True, port=0) as replay,
    ):
        clock = ReplayClock(replay.url)
        try:
            replay.clock.pause(False)
            t0 = time.monotonic()
            report = run_loop(
                settings=settings,
                lake=lake,
                clock=clock,
                endpoints=LoopEndpoints(feed_url=replay.discovery_url, endpoint_url=endpoint.url),
                stop=threading.Event(),
                until=LIVE_END,
                on_run=runs.append,
                registry=lambda: client,
            )
            wall = time.monotonic() - t0
        finally:
            clock.close()
    yield LoopWorld(
        settings=settings,
        lake=lake,
        client=client,
        first=first,
        again=again,
        versions_after_again=versions,
        forced_output=forced,
        challenger=challenger,
        report=report,
        runs=runs,
        loop_wall_s=wall,
    )
