"""The monitor job end to end on a small real world: the loop's stages on a replay clock, the real
endpoint scraped, signals checked against the lake rows they come from, an alert that fires when
the endpoint goes down and resolves when it is back; baselines stored at training."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.lake.tables import INFERENCE, INGEST_LOG
from bikeshare.monitoring.baseline import baselines_from_json
from bikeshare.monitoring.drift import PREDICTION_FEATURE, psi
from bikeshare.monitoring.model_baselines import BASELINE_ARTIFACT, training_baselines
from bikeshare.monitoring.store import AlertStore, read_baselines
from bikeshare.orchestration.drills import DrillWorld, ReplayLoop, ThreadedEndpoint
from bikeshare.registry.client import model_name, open_client
from bikeshare.resources import Resources
from bikeshare.serving.models import RegistryModelProvider
from bikeshare.settings import Settings
from bikeshare.training.bundle import BundleMeta, IsotonicCalibration, LightGBMScorer, ModelBundle
from bikeshare.training.split import TimeSplit

from .conftest import HttpReceiver
from .drill_world import WORLD_START, WorldCopy, copy_world, drill_world  # noqa: F401 - the fixture

CITY = "sf"


@pytest.fixture
def env(drill_world: DrillWorld, tmp_path: Path, http_receiver: HttpReceiver) -> WorldCopy:  # noqa: F811
    return copy_world(
        drill_world,
        tmp_path,
        alert_webhook_url=http_receiver.url,
        alert_webhook_retries=0,
        monitor_latency_min_requests=2,
    )


@pytest.fixture
def replay(env: WorldCopy) -> Iterator[ReplayServer]:
    server = ReplayServer(env.world.recording, start=WORLD_START, paused=True).start()
    yield server
    server.stop()


def start_endpoint(env: WorldCopy) -> ThreadedEndpoint:
    provider = RegistryModelProvider(settings=env.settings, registry=Resources.build(env.settings).registry)
    provider.load()
    return ThreadedEndpoint(env.settings, provider, env.lake).start()


def live_log(env: WorldCopy) -> pd.DataFrame:
    frame = env.lake.read(INGEST_LOG, city=CITY).to_pandas()
    return frame[~frame["source"].str.startswith("recording:")]


def test_monitor_job_end_to_end(env: WorldCopy, replay: ReplayServer, http_receiver: HttpReceiver) -> None:
    endpoint = start_endpoint(env)
    loop = ReplayLoop(
        settings=env.settings, lake=env.lake, replay=replay, feed_url=replay.discovery_url, endpoint_url=endpoint.url
    )
    try:
        loop.advance(10)
        first = loop.monitor(window_min=10)
        loop.advance(10)
        second = loop.monitor(window_min=10)
        endpoint.stop()  # the endpoint goes away: the next batches fail
        loop.advance(10)
        third = loop.monitor(window_min=10)
        endpoint = start_endpoint(env)
        loop.set_endpoint(endpoint.url)
        loop.advance(10)
        fourth = loop.monitor(window_min=10)
    finally:
        loop.close()
        endpoint.stop()

    # data quality, from the ingest_log rows of the window
    log = live_log(env)
    window = log[(log["fetched_at"] > second.window.start) & (log["fetched_at"] <= second.window.end)]
    committed = window[window["outcome"] == "committed"]
    assert len(committed) >= 1
    delay = second.signal("data_delay_s", feed="station_status")
    assert delay is not None and delay.value == pytest.approx(committed["ingest_latency_s"].max())
    alive = second.signal("feed_snapshot_committed", feed="station_status")
    done = log[(log["outcome"] == "committed") & (log["committed_at"] <= second.evaluated_at)]
    assert alive is not None and pd.Timestamp(alive.observed_at) == done["committed_at"].max()
    assert second.metric("data_quality", "batches", subject="station_status") == len(window)

    # inference batches: two served batches per 10 min, all ok, then all failed while the endpoint is down
    assert second.metric("inference", "batches_ok") == 2
    assert second.signal("inference_failure_rate").value == 0.0  # type: ignore[union-attr]
    assert third.metric("inference", "batches_failed") == 2
    assert third.signal("inference_failure_rate").value == 1.0  # type: ignore[union-attr]

    # drift of the probabilities, recomputed from the stored baseline and the window's inference rows
    predictions = env.lake.read(INFERENCE, city=CITY).to_pandas()
    for result in second.drift:
        rows = predictions[
            (predictions["target"] == result.target)
            & (predictions["feature_time"] > second.window.start)
            & (predictions["feature_time"] <= second.window.end)
        ]
        baseline = read_baselines(
            env.lake,
            city=CITY,
            model_name=result.model_name,
            model_version=result.model_version,
            target=result.target,
        )[PREDICTION_FEATURE]
        stored = result.scores.set_index("feature").loc[PREDICTION_FEATURE]
        assert stored["psi"] == pytest.approx(psi(baseline, rows["probability"]))
        assert stored["live_rows"] == len(rows)
        signal = second.signal("prediction_psi", target=result.target)
        assert signal is not None and signal.value == pytest.approx(stored["psi"])
    assert {r.target for r in second.drift} == {"bikes", "docks"}
    con = env.lake.connect()
    try:
        drift_rows = con.sql("SELECT target, count(*) FROM drift_latest GROUP BY ALL").fetchall()
        endpoint_rows = con.sql(
            "SELECT window_end, route, requests, errors, p95_ms FROM endpoint_metrics ORDER BY window_end"
        ).df()
        latest = con.sql("SELECT DISTINCT run_id FROM monitor_metrics_latest").fetchall()
        runs = con.sql("SELECT count(*) FROM monitoring_runs").fetchall()
    finally:
        con.close()
    assert {t for t, n in drift_rows if n > 1} == {"bikes", "docks"}
    assert latest == [(fourth.run_id,)] and runs == [(4,)]

    # the endpoint, scraped: the second window holds exactly the two batch calls made in it
    invocations = endpoint_rows[
        (endpoint_rows["route"] == "/invocations") & (endpoint_rows["window_end"] == second.evaluated_at)
    ]
    assert invocations[["requests", "errors"]].values.tolist() == [[2, 0]]
    assert first.endpoint is not None and first.endpoint.start is None  # the first scrape: since start
    assert second.endpoint is not None and second.endpoint.start == first.evaluated_at
    p95 = second.signal("endpoint_p95_ms", route="/invocations")
    assert p95 is not None and p95.value == pytest.approx(invocations["p95_ms"].iloc[0])
    assert third.signal("endpoint_up").value == 0.0  # type: ignore[union-attr]
    assert any("endpoint: GET" in note for note in third.notes)

    # the alert: fired and routed while the batches failed, resolved once they succeed again
    assert [e.rule for e in third.cycle.fired] == ["inference_failures"]
    assert all(r.ok for r in third.cycle.routes)
    resolved = [e for e in fourth.cycle.events if e.event == "resolved"]
    assert [e.rule for e in resolved] == ["inference_failures"]
    alert = AlertStore(env.lake, city=CITY).get(third.cycle.fired[0].alert_id)
    assert alert.status == "resolved" and alert.fired_at == third.evaluated_at
    texts = [b["text"] for b in http_receiver.bodies if "inference_failures" in b["text"]]
    assert len(texts) == 2 and texts[0].startswith("[CRITICAL] inference_failures firing")
    assert texts[1].startswith("[RESOLVED] inference_failures resolved")
    assert alert.fired_at is not None
    con = env.lake.connect()
    try:
        ((routed,),) = con.sql("SELECT max(time_to_route_s) FROM alerts WHERE rule = 'inference_failures'").fetchall()
    finally:
        con.close()
    assert routed is not None and 0 <= routed < 5

    # a few replayed minutes give no 24 h quality yet: not measured, and said why
    assert second.signal("model_pr_auc_24h", target="bikes").value is None  # type: ignore[union-attr]
    assert any("model quality bikes" in note for note in second.notes)

    # the CLI wires the same job
    result = CliRunner().invoke(
        app,
        ["monitor", "--once", "--no-endpoint", "--at", (fourth.evaluated_at + pd.Timedelta(minutes=5)).isoformat()],
        env={"BIKESHARE_LAKE_URI": env.settings.lake_uri, "BIKESHARE_STATE_DIR": str(env.settings.state_dir)},
    )
    assert result.exit_code == 0, result.output
    assert "monitor 2023-03-09T20:45Z" in result.output and "inference failure rate" in result.output


def test_training_baselines_are_stored_with_the_model_version(drill_world: DrillWorld, tmp_path: Path) -> None:  # noqa: F811
    settings = drill_world.settings
    from bikeshare.lake.store import Lake

    lake = Lake.open(settings.lake_uri)
    client = open_client(settings)
    for target, version in drill_world.model_versions.items():
        name = model_name(CITY, target)
        stored = read_baselines(lake, city=CITY, model_name=name, model_version=version, target=target)
        assert PREDICTION_FEATURE in stored and "bikes" in stored and len(stored) > 50
        run_id = client.get_model_version(name, version).run_id
        local = client.download_artifacts(run_id, BASELINE_ARTIFACT, str(tmp_path))
        assert baselines_from_json(Path(local).read_text()) == stored


def test_training_baselines_take_features_from_the_fit_rows_and_scores_from_the_test_rows() -> None:
    rng = np.random.default_rng(3)
    slots = pd.date_range("2023-03-09T00:00Z", periods=120, freq="5min")
    frame = pd.DataFrame(
        {
            "station_id": np.tile(["a", "b", "c", "d"], len(slots)),
            "slot": np.repeat(slots, 4),
            "bikes": rng.integers(0, 20, len(slots) * 4).astype("float32"),
            "docks": rng.integers(0, 20, len(slots) * 4).astype("float32"),
        }
    )
    frame["y_bikes"] = frame["bikes"] <= 3
    x = frame[["bikes", "docks"]].to_numpy(np.float64)
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4, "min_data_in_leaf": 5},
        lightgbm.Dataset(x, label=frame["y_bikes"].astype(int)),
        num_boost_round=10,
    )
    meta = BundleMeta(
        target="bikes",
        horizon_min=30,
        shortage_threshold=2,
        algo="lightgbm",
        feature_names=("bikes", "docks"),
        decision_threshold=0.4,
        calibration=IsotonicCalibration.identity(),
        feature_version="1",
        booster_file=LightGBMScorer.FILE,
    )
    bundle = ModelBundle(meta=meta, scorer=LightGBMScorer(booster=booster))
    split = TimeSplit(
        train=(slots[0], slots[59]),
        validation=(slots[67], slots[85]),
        test=(slots[93], slots[119]),
        gap=pd.Timedelta(minutes=35),
    )
    out = training_baselines(frame, bundle=bundle, split=split, target="bikes", settings=Settings())
    fit_rows = frame[(frame["slot"] <= slots[85]) & ~frame["slot"].between(slots[60], slots[66])]
    test = frame[frame["slot"] >= slots[93]]
    assert out["bikes"].rows == len(fit_rows) and out[PREDICTION_FEATURE].rows == len(test)
    proba = bundle.predict_proba(test[["bikes", "docks"]].to_numpy(np.float32))
    labels = test["y_bikes"].to_numpy()
    stats = out[PREDICTION_FEATURE].stats
    assert stats["brier"] == pytest.approx(np.mean((proba - labels) ** 2))
    assert stats["trigger_rate"] == pytest.approx(np.mean(proba >= 0.4))
    assert stats["positive_rate"] == pytest.approx(labels.mean())


def test_cli_train_stores_the_baselines_with_the_version(
    drill_world: DrillWorld,  # noqa: F811
    tmp_path: Path,
    mlflow_db_template: Path,
) -> None:
    from bikeshare.features.build import build_features
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import FEATURES

    env = copy_world(drill_world, tmp_path)
    (tmp_path / "state" / "mlflow.db").unlink()
    shutil.copyfile(mlflow_db_template, tmp_path / "state" / "mlflow.db")  # an empty registry
    end = WORLD_START - pd.Timedelta(minutes=35)
    frame = build_features(lake=env.lake, start=end - pd.Timedelta(hours=4), end=end, settings=env.settings)
    env.lake.write(FEATURES, frame, city=CITY, dt="2023-03-09", name="features")
    variables = {
        "BIKESHARE_LAKE_URI": env.settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(env.settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
        "BIKESHARE_TRAIN_NUM_TREES": "15",
        "BIKESHARE_TRAIN_THREADS": "1",
        "BIKESHARE_TRAIN_MIN_ROWS_PER_LEAF": "100",
    }
    result = CliRunner().invoke(app, ["train", "--target", "docks", "--out", str(tmp_path / "run")], env=variables)
    assert result.exit_code == 0, result.output
    assert "drift baselines of" in result.output and "stored with version 1" in result.output
    stored = read_baselines(
        Lake.open(env.settings.lake_uri),
        city=CITY,
        model_name=model_name(CITY, "docks"),
        model_version="1",
        target="docks",
    )
    assert PREDICTION_FEATURE in stored and stored["docks"].rows > 0
    client = open_client(env.settings)
    run_id = client.get_model_version(model_name(CITY, "docks"), "1").run_id
    local = client.download_artifacts(run_id, BASELINE_ARTIFACT, str(tmp_path / "artifact"))
    assert baselines_from_json(Path(local).read_text()) == stored


def test_job_run_signals_come_from_the_job_runs_rows(tmp_path: Path) -> None:
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import JOB_RUNS
    from bikeshare.monitoring.signals import Window, measure_jobs

    lake = Lake.open(str(tmp_path / "lake"))
    start = pd.Timestamp("2023-03-09T20:00Z")
    rows = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d", "e"],
            "job": ["infer", "infer", "infer", "ingest", "infer"],
            "scheduled_at": [start + pd.Timedelta(minutes=m) for m in (5, 10, 15, 15, -30)],
            "status": ["ok", "failed", "ok", "ok", "failed"],
            "duration_s": [1.0, 3.0, 2.0, 0.5, 9.0],
            "lag_s": [0.5, 4.0, 1.0, 0.2, 60.0],
        }
    )
    rows["started_at"] = rows["scheduled_at"] + pd.to_timedelta(rows["lag_s"], unit="s")
    lake.write(JOB_RUNS, rows, city=CITY, dt="2023-03-09", name="runs")
    part = measure_jobs(lake, city=CITY, window=Window(start, start + pd.Timedelta(minutes=20)))
    signals = {(s.name, s.labels["job"]): s.value for s in part.signals}
    # run 'e' started before the window: left out
    assert signals[("job_failure_rate", "infer")] == pytest.approx(1 / 3)
    assert signals[("job_lag_s", "infer")] == pytest.approx(4.0)
    assert signals[("job_duration_p95_s", "infer")] == pytest.approx(np.quantile([1.0, 3.0, 2.0], 0.95))
    assert signals[("job_failure_rate", "ingest")] == 0.0
