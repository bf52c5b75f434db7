"""A small world for the dashboard pages, built once per session through the real stages.

From the shipped slice, 2023-03-07 14:00-18:00 UTC (morning in San Francisco): backfill, features,
two small LightGBM versions per target in a temp MLflow store (production v1, staging v2, promoted
through the gate), the real endpoint on a loopback port, an hour of inference batches (production
served, staging in shadow), actuals, a drift evaluation, an alert cycle, a rebalancing plan, a live
snapshot with its ingest latency and a quarantined payload. ``job_runs`` and ``endpoint_metrics``
have no writer yet (runner and monitor job): a few rows are written in their schemas.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import ENDPOINT_METRICS, JOB_RUNS, Grain
from bikeshare.settings import Settings
from support.worlds import (
    EndpointServer,
    fit_quick_run,
    free_loopback_port,
    register_production_and_staging,
)

CITY = "sf"
CUT_START = pd.Timestamp("2023-03-07T14:00Z")
CUT_END = pd.Timestamp("2023-03-07T18:00Z")
TRAIN_START, TRAIN_END = pd.Timestamp("2023-03-07T15:00Z"), pd.Timestamp("2023-03-07T16:25Z")
FIRST_SLOT, LAST_SLOT = pd.Timestamp("2023-03-07T16:50Z"), pd.Timestamp("2023-03-07T17:40Z")
SLOT_EVERY = "10min"  # the inference interval of this world
ACTUALS_AT = pd.Timestamp("2023-03-07T18:00Z")
LIVE_PUBLISHED = pd.Timestamp("2023-03-07T18:02Z")
LIVE_LATENCY_S = 35.0


@dataclass(frozen=True)
class World:
    lake_dir: Path
    state_dir: Path
    settings: Settings

    def env(self) -> dict[str, str]:
        """The BIKESHARE_* variables that point a dashboard at this world."""
        return {
            "BIKESHARE_CITY": CITY,
            "BIKESHARE_LAKE_URI": str(self.lake_dir),
            "BIKESHARE_STATE_DIR": str(self.state_dir),
            "BIKESHARE_WEATHER_ENABLED": "false",
        }


def live_status_payload(lake: Lake, *, published: pd.Timestamp) -> bytes:
    """A GBFS 1.x station_status document with the lake's newest counts, published at ``published``."""
    con = lake.connect()
    rows = con.execute(
        """
        SELECT * FROM station_status
        QUALIFY last_updated = max(last_updated) OVER ()
        """
    ).df()
    con.close()
    stamp = int(published.timestamp())
    stations = [
        {
            "station_id": str(r.station_id),
            "num_bikes_available": int(r.bikes),
            "num_ebikes_available": int(r.ebikes) if pd.notna(r.ebikes) else 0,
            "num_docks_available": int(r.docks),
            "num_bikes_disabled": int(r.bikes_disabled) if pd.notna(r.bikes_disabled) else 0,
            "num_docks_disabled": int(r.docks_disabled) if pd.notna(r.docks_disabled) else 0,
            "is_installed": int(bool(r.is_installed)),
            "is_renting": int(bool(r.is_renting)),
            "is_returning": int(bool(r.is_returning)),
            "last_reported": stamp - 60,
        }
        for r in rows.itertuples(index=False)
    ]
    return json.dumps({"last_updated": stamp, "ttl": 60, "data": {"stations": stations}}).encode()


def write_ops_records(lake: Lake) -> None:
    """job_runs and endpoint_metrics rows (their writers, the runner and the monitor job, come later)."""
    runs = []
    for i, slot in enumerate(pd.date_range(FIRST_SLOT, LAST_SLOT, freq=SLOT_EVERY)):
        failed = i == 3
        runs.append(
            {
                "run_id": f"infer-{i}",
                "job": "infer",
                "scheduled_at": slot,
                "started_at": slot + pd.Timedelta(seconds=2),
                "finished_at": slot + pd.Timedelta(seconds=4),
                "duration_s": 2.0,
                "lag_s": 2.0,
                "status": "failed" if failed else "ok",
                "error": "endpoint timed out" if failed else None,
                "details": "{}",
            }
        )
    runs.append(
        {
            "run_id": "monitor-0",
            "job": "monitor",
            "scheduled_at": ACTUALS_AT,
            "started_at": ACTUALS_AT + pd.Timedelta(seconds=1),
            "finished_at": ACTUALS_AT + pd.Timedelta(seconds=9),
            "duration_s": 8.0,
            "lag_s": 1.0,
            "status": "ok",
            "error": None,
            "details": "{}",
        }
    )
    frame = pd.DataFrame(runs)
    lake.write(JOB_RUNS, frame, city=CITY, dt=partition_value(FIRST_SLOT, Grain.DAY), name="runs")
    windows = pd.date_range(pd.Timestamp("2023-03-07T15:00Z"), ACTUALS_AT, freq="1h")
    metrics = pd.DataFrame(
        {
            "observed_at": windows,
            "window_start": windows - pd.Timedelta(hours=1),
            "window_end": windows,
            "route": "all",
            "requests": [120 + 10 * i for i in range(len(windows))],
            "errors": [0, 0, 1, 0][: len(windows)],
            "p50_ms": [11.0 + i for i in range(len(windows))],
            "p95_ms": [40.0 + 5 * i for i in range(len(windows))],
            "p99_ms": [80.0 + 5 * i for i in range(len(windows))],
            "model_versions": "{}",
        }
    )
    metrics["error_rate"] = metrics["errors"] / metrics["requests"]
    lake.write(ENDPOINT_METRICS, metrics, city=CITY, dt=partition_value(ACTUALS_AT, Grain.DAY), name="metrics")


def build_world(root: Path, *, mlflow_template: Path | None = None) -> World:
    """Run the real stages once (see the module docstring)."""
    from typer.testing import CliRunner

    from bikeshare.cli import app
    from bikeshare.features.build import build_features
    from bikeshare.inference.actuals import run_actuals
    from bikeshare.inference.batch import run_inference_batch
    from bikeshare.inference.endpoint_client import EndpointClient
    from bikeshare.ingest.backfill import backfill
    from bikeshare.ingest.poller import ingest_status_payload
    from bikeshare.monitoring.alerts import Signal
    from bikeshare.monitoring.cycle import run_alert_cycle
    from bikeshare.monitoring.drift import drift_table
    from bikeshare.monitoring.rules import load_rules
    from bikeshare.monitoring.store import AlertStore, write_drift_scores
    from bikeshare.registry.client import model_name, open_client

    cut = Recording.open(default_recording_path()).cut(root / "cut", start=CUT_START, end=CUT_END)
    lake_dir, state_dir = root / "lake", root / "state"
    settings = Settings(
        city=CITY,
        lake_uri=str(lake_dir),
        state_dir=state_dir,
        weather_enabled=False,
        infer_retry_attempts=2,
        infer_retry_base_delay_s=0.0,
        infer_timeout_s=10.0,
        serve_model_poll_s=60.0,
        rebalance_time_limit_s=1.0,
    )
    lake = Lake.open(settings.lake_uri)
    if mlflow_template is not None:  # an initialised store: skips MLflow's migrations
        state_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mlflow_template, state_dir / "mlflow.db")
    backfill(recording=cut, lake=lake, settings=settings, workers=2)

    frame = build_features(lake=lake, start=TRAIN_START, end=TRAIN_END, settings=settings)
    client = open_client(settings)
    baselines = {}
    window = (TRAIN_START.isoformat(), TRAIN_END.isoformat())
    for target in ("bikes", "docks"):
        runs = [  # v1, then v2
            fit_quick_run(frame, target, rounds=rounds, seed=rounds, decision_threshold=0.4, data_window=window)
            for rounds in (15, 30)
        ]
        baselines[target], _ = register_production_and_staging(
            frame, target, runs=runs, client=client, lake=lake, settings=settings,
            note="dashboard test world", actor="tests", created_at=TRAIN_END,
        )  # fmt: skip

    with EndpointServer(settings, free_loopback_port()) as server:
        endpoint_settings = settings.with_values(endpoint_url=server.url)
        with EndpointClient.from_settings(endpoint_settings) as endpoint:
            for slot in pd.date_range(FIRST_SLOT, LAST_SLOT, freq=SLOT_EVERY):
                record = run_inference_batch(
                    lake=lake,
                    endpoint=endpoint,
                    settings=endpoint_settings,
                    now=slot + pd.Timedelta(seconds=20),
                    aliases=("production", "staging"),
                )
                assert record.ok, record.summary()
    run_actuals(lake=lake, settings=settings, now=ACTUALS_AT)

    live = build_features(lake=lake, start=FIRST_SLOT, end=LAST_SLOT, settings=settings, with_labels=False)
    for target in ("bikes", "docks"):
        scores = drift_table(baselines[target], live)
        write_drift_scores(
            lake,
            scores,
            city=CITY,
            evaluated_at=ACTUALS_AT.to_pydatetime(),
            window_start=FIRST_SLOT.to_pydatetime(),
            window_end=LAST_SLOT.to_pydatetime(),
            model_name=model_name(CITY, target),
            model_version="1",
            target=target,
        )

    store = AlertStore(lake, city=CITY)
    signals = [Signal("endpoint_p95_ms", 450.0, {}), Signal("inference_failure_rate", 0.0, {})]
    run_alert_cycle(store=store, rules=load_rules(None), signals=signals, sinks=[], now=ACTUALS_AT.to_pydatetime())

    write_ops_records(lake)
    result = CliRunner().invoke(
        app,
        ["rebalance", "plan", "--as-of", LAST_SLOT.isoformat(), "--time-limit-s", "1"],
        env=World(lake_dir, state_dir, settings).env(),
    )
    assert result.exit_code == 0, result.output

    payload = live_status_payload(lake, published=LIVE_PUBLISHED)
    outcome = ingest_status_payload(
        payload=payload,
        fetched_at=LIVE_PUBLISHED + pd.Timedelta(seconds=5),
        lake=lake,
        settings=settings,
        clock=lambda: LIVE_PUBLISHED + pd.Timedelta(seconds=LIVE_LATENCY_S),
        source="test-live",
    )
    assert outcome.outcome == "committed", outcome.summary()
    bad = ingest_status_payload(
        payload=b"{not json",
        fetched_at=LIVE_PUBLISHED + pd.Timedelta(seconds=65),
        lake=lake,
        settings=settings,
        source="test-live",
    )
    assert bad.outcome == "quarantined", bad.summary()
    return World(lake_dir=lake_dir, state_dir=state_dir, settings=settings)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> World:
    return build_world(tmp_path_factory.mktemp("dashboard-world"), mlflow_template=mlflow_db_template)


@pytest.fixture
def world_env(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Point Settings() (and so the pages) at the world."""
    for name, value in world.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BIKESHARE_CONFIG", raising=False)
    yield world


OSLO = "oslo"
OSLO_CUT = (pd.Timestamp("2023-06-09T12:00Z"), pd.Timestamp("2023-06-09T14:00Z"))
OSLO_STALE_BY = pd.Timedelta(hours=3)  # the runner kept running this long after Oslo's last snapshot


def build_fleet_world(world: World, root: Path) -> World:
    """The world's lake (copied) with a second city: 2 h of the shipped Oslo slice (GBFS 2.2), whose
    feed then stopped: an ingest run of the runner failed 3 h after its last snapshot (a stale city)."""
    from bikeshare.ingest.backfill import backfill

    lake_dir = root / "lake"
    shutil.copytree(world.lake_dir, lake_dir)
    oslo_slice = default_recording_path().parent / "oslo-2023-06-08_16"
    cut = Recording.open(oslo_slice).cut(root / "oslo", start=OSLO_CUT[0], end=OSLO_CUT[1])
    settings = world.settings.with_values(lake_uri=str(lake_dir))
    lake = Lake.open(str(lake_dir))
    report = backfill(recording=cut, lake=lake, settings=settings.with_values(city=OSLO), workers=1)
    assert report.committed > 0, report.summary()
    con = lake.connect()
    last = pd.Timestamp(con.execute("SELECT max(last_updated) FROM station_status WHERE city = 'oslo'").fetchone()[0])
    con.close()
    at = last + OSLO_STALE_BY
    run = {
        "run_id": "ingest-oslo-late",
        "job": "ingest",
        "scheduled_at": at,
        "started_at": at,
        "finished_at": at + pd.Timedelta(seconds=30),
        "duration_s": 30.0,
        "lag_s": 0.0,
        "status": "failed",
        "error": "feed timed out",
        "details": "{}",
    }
    lake.write(JOB_RUNS, pd.DataFrame([run]), city=OSLO, dt=partition_value(at, Grain.DAY), name="runs")
    return World(lake_dir=lake_dir, state_dir=world.state_dir, settings=settings)


@pytest.fixture(scope="session")
def fleet_world(world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_fleet_world(world, tmp_path_factory.mktemp("dashboard-fleet"))
