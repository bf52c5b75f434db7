"""End to end on a replayed clock: ingest from a replay server, score through the real endpoint,
join the actuals once the replayed clock passes the horizon, check them against the recorded counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.gbfs.client import GbfsClient, RetryPolicy
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.inference.actuals import run_actuals
from bikeshare.inference.batch import run_inference_batch
from bikeshare.inference.endpoint_client import EndpointClient
from bikeshare.ingest.poller import IngestState, ingest_once
from bikeshare.lake.tables import INFERENCE, QUALITY, STATION_STATUS
from bikeshare.orchestration.clocks import ReplayClock
from support.worlds import EndpointServer

from .conftest import HISTORY_END, Env, World


@pytest.fixture
def replay(world: World) -> Iterator[ReplayServer]:
    server = ReplayServer(world.cut, speed=1.0, start=HISTORY_END - pd.Timedelta(minutes=1), paused=True)
    server.start()
    yield server
    server.stop()


def recorded_counts(env: Env, at: pd.Timestamp) -> pd.DataFrame:
    """Per station, the latest unmasked snapshot at or before ``at`` within max_snapshot_age_min (pandas)."""
    frame = env.lake.read(STATION_STATUS, city="sf").to_pandas()
    age = pd.Timedelta(minutes=env.settings.max_snapshot_age_min)
    frame = frame[~frame["masked"] & (frame["last_updated"] <= at) & (frame["last_updated"] >= at - age)]
    return frame.sort_values("last_updated").groupby("station_id").tail(1).set_index("station_id")


def test_infer_then_actuals_on_the_replayed_clock(env: Env, replay: ReplayServer, endpoint: EndpointServer) -> None:
    settings = env.settings
    clock = ReplayClock(replay.url, resync_s=0).now  # read on every call: the test moves the paused clock
    feed = GbfsClient.from_settings(settings, discovery_url=replay.discovery_url, utc_now=clock)
    state = IngestState()

    def step(minutes: int) -> pd.Timestamp:
        replay.clock.advance(minutes * 60)
        ingest_once(client=feed, lake=env.lake, settings=settings, clock=clock, state=state)
        return clock()

    with feed, EndpointClient.from_settings(settings, sleep=lambda _s: None) as client:
        ingest_once(client=feed, lake=env.lake, settings=settings, clock=clock, state=state)
        now = clock()
        record = run_inference_batch(lake=env.lake, endpoint=client, settings=settings, now=now)
        assert record.status == "ok" and record.feature_time == now.floor("5min")
        target = record.feature_time + pd.Timedelta(minutes=settings.horizon_min)
        predictions = env.lake.read(INFERENCE, city="sf").to_pandas()

        reports = []
        while clock() < target + pd.Timedelta(minutes=settings.actuals_settle_min + 10):
            now = step(5)
            reports.append((now, run_actuals(lake=env.lake, settings=settings, now=now)))

    before = [r for t, r in reports if t < target + pd.Timedelta(minutes=settings.actuals_settle_min)]
    assert before and all(r.due == 0 and r.files_written == 0 for r in before)
    joined = sum(r.joined for _, r in reports)
    assert joined > 0.9 * len(predictions)

    quality = env.lake.read(QUALITY, city="sf").to_pandas()
    assert len(quality) == joined and (quality["status"] == "joined").all()
    counts = recorded_counts(env, target)
    for kind in ("bikes", "docks"):
        mine = quality[quality["target"] == kind].set_index("station_id")
        assert (mine["actual_count"].astype(int) == counts.loc[mine.index, kind].astype(int)).all()
        assert (mine["actual_time"] == counts.loc[mine.index, "last_updated"]).all()
        assert (mine["actual_label"] == (mine["actual_count"] <= settings.shortage_threshold)).all()
        rows = predictions[predictions["target"] == kind].set_index("station_id").loc[mine.index]
        assert (mine["probability"] == rows["probability"]).all()
    # The replayed counts really moved between the prediction and the target time.
    then = quality.set_index(["station_id", "target"])
    assert (then["current_count"] != then["actual_count"]).any()

    con = env.lake.connect()
    rolling = con.sql("SELECT target, rows, pr_auc, f1 FROM quality_rolling_24h ORDER BY target").fetchall()
    assert [r[0] for r in rolling] == ["bikes", "docks"]
    assert sum(r[1] for r in rolling) == joined


def test_cli_infer_once_and_actuals_once(env: Env, endpoint: EndpointServer) -> None:
    runner = CliRunner()
    environ = {
        "BIKESHARE_LAKE_URI": env.settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(env.settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
        "BIKESHARE_CITY": "sf",
    }
    scored = runner.invoke(
        app, ["infer", "--once", "--endpoint", endpoint.url, "--at", "2023-03-07T16:22Z"], env=environ
    )
    assert scored.exit_code == 0, scored.output
    assert "2023-03-07 16:20Z production: ok" in scored.output
    joined = runner.invoke(app, ["actuals", "--once", "--at", "2023-03-07T16:56Z"], env=environ)
    assert joined.exit_code == 0, joined.output
    assert " joined" in joined.output and env.lake.files(QUALITY, city="sf")

    down = runner.invoke(
        app,
        ["infer", "--once", "--endpoint", "http://127.0.0.1:9", "--at", "2023-03-07T16:32Z"],
        env={**environ, "BIKESHARE_INFER_RETRY_ATTEMPTS": "1"},
    )
    assert down.exit_code == 1 and "failed" in down.output
    loop_at = runner.invoke(app, ["infer", "--at", "2023-03-07T16:32Z"], env=environ)
    assert loop_at.exit_code != 0 and "--at needs --once" in loop_at.output


def test_the_loops_follow_the_replay_clock_and_stop_cleanly_on_sigterm(
    env: Env, replay: ReplayServer, endpoint: EndpointServer
) -> None:
    environ = {
        **os.environ,
        "BIKESHARE_LAKE_URI": env.settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(env.settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
        "BIKESHARE_CITY": "sf",
        "BIKESHARE_ENDPOINT_URL": endpoint.url,
    }
    command = [str(Path(sys.executable).with_name("bikeshare"))]
    outputs = {}
    for job, first, expect in (
        ("infer", "16:55Z production: ", "16:55Z production: ok"),
        ("actuals", "predictions due", "predictions due"),
    ):
        proc = subprocess.Popen(
            [*command, job, "--replay-clock", replay.url],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if first in line:  # the first run's summary
                proc.send_signal(signal.SIGTERM)
                break
        out, _ = proc.communicate(timeout=30)
        outputs[job] = "".join(lines) + out
        assert expect in outputs[job] and proc.returncode == 0, outputs[job]
        assert out.strip().splitlines()[-1].startswith("stopped after 1 "), outputs[job]
    assert env.lake.partitions(INFERENCE, city="sf") == ["2023-03-07-16-55"]


def test_the_product_api_serves_the_batch_the_job_wrote(env: Env, world: World, free_port: int) -> None:
    import httpx

    settings = env.settings.model_copy(update={"serve_risk_refresh_s": 0.05})
    server = EndpointServer(settings, free_port).start()
    try:
        before = httpx.get(f"{server.url}/v1/risk", params={"target": "docks"}, timeout=10)
        assert before.status_code == 503 and "bikeshare infer" in before.json()["detail"]
        with EndpointClient(server.url, retry=RetryPolicy(attempts=1)) as client:
            record = run_inference_batch(
                lake=env.lake, endpoint=client, settings=settings, now=HISTORY_END - pd.Timedelta(minutes=1)
            )
        assert record.status == "ok"
        rows = env.lake.read(INFERENCE, city="sf").to_pandas()
        docks = rows[rows["target"] == "docks"].sort_values(["probability", "station_id"], ascending=[False, True])
        time.sleep(0.1)
        top = httpx.get(f"{server.url}/v1/risk", params={"target": "docks", "top": 3}, timeout=10).json()
        assert top["batch_id"] == record.batch_id
        assert [s["station_id"] for s in top["stations"]] == docks["station_id"].head(3).tolist()
        station = docks["station_id"].iloc[0]
        one = httpx.get(f"{server.url}/v1/stations/{station}/risk", timeout=10).json()
        assert one["docks"]["probability"] == pytest.approx(docks["probability"].iloc[0])
    finally:
        server.stop()
