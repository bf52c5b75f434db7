"""Drills: a feed outage injected through the replay server's fault API ends in an alert routed to a
real webhook receiver and a real SMTP server, detected within two evaluations; the drift proxy
moves bikes to docks without breaking the feed's contract."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pandas as pd
import pytest

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.lake.tables import INFERENCE_BATCHES, INGEST_LOG
from bikeshare.monitoring.sinks import EmailSink, LogSink, WebhookSink
from bikeshare.monitoring.store import AlertStore
from bikeshare.orchestration.drills import (
    DETECTION_GOAL_CYCLES,
    DrillPlan,
    DrillWorld,
    FeedShiftProxy,
    ReplayLoop,
    ThreadedEndpoint,
    registry_provider,
    run_drill,
)
from bikeshare.resources import Resources

from .conftest import HttpReceiver, SmtpInbox
from .drill_world import WORLD_START, copy_world, drill_world, world_plan  # noqa: F401 - the fixture


def test_feed_outage_drill_ends_in_a_routed_alert(
    drill_world: DrillWorld,  # noqa: F811
    tmp_path: Path,
    http_receiver: HttpReceiver,
    smtp_inbox: SmtpInbox,
) -> None:
    env = copy_world(drill_world, tmp_path)
    plan = world_plan("feed-outage", score=False, ack_after_min=3)
    sinks = [
        LogSink(),
        WebhookSink(url=http_receiver.url, retries=0),
        EmailSink(host=smtp_inbox.host, port=smtp_inbox.port, sender="drill@localhost", recipients=["oncall@lo"]),
    ]
    report = run_drill(plan, world=env.world, sinks=sinks)

    fault = WORLD_START + pd.Timedelta(minutes=plan.cycle_min * plan.warmup_cycles + 1)
    assert report.fault_started_at == fault
    d = report.detection
    assert d is not None, report.table()
    assert d.rule == "dead_feed" and not report.false_alarms
    assert 1 <= d.ttd_cycles <= DETECTION_GOAL_CYCLES
    assert d.ttd_min == pytest.approx((d.fired_at - fault).total_seconds() / 60)
    assert {r.sink for r in d.routes} == {"log", "webhook", "email"}
    assert all(r.ok and 0 <= r.seconds < 5 for r in d.routes), d.routes
    assert d.mtta_s == pytest.approx(180.0) and d.resolved_at is not None
    assert report.met_goal

    # what the sinks received
    fired = [b for b in http_receiver.bodies if "dead_feed firing" in b["text"]]
    resolved = [b for b in http_receiver.bodies if "dead_feed resolved" in b["text"]]
    assert len(fired) == 1 and len(resolved) == 1
    subjects = [m["Subject"] for m in smtp_inbox.messages]
    assert any("dead_feed firing" in s for s in subjects) and smtp_inbox.recipients[0] == ["oncall@lo"]

    # the stored alert agrees, and the lake shows the outage the alert was about
    alert = AlertStore(env.lake, city="sf").get(d.alert_id)
    assert alert.status == "resolved" and alert.mtta_s == pytest.approx(180.0)
    assert alert.ttd_s == pytest.approx(d.ttd_min * 60)
    log = env.lake.read(INGEST_LOG, city="sf").to_pandas()
    during = log[(log["fetched_at"] >= fault) & (log["fetched_at"] <= report.fault_cleared_at)]
    assert len(during) > 0 and (during["outcome"] == "fetch_failed").all()
    last_commit = log.loc[(log["outcome"] == "committed") & (log["fetched_at"] < fault), "committed_at"].max()
    assert (d.fired_at - last_commit).total_seconds() > 900  # the dead-feed warning threshold
    assert report.table().count("\n") > 8 and "time to detect" in report.table()


def test_drift_proxy_moves_bikes_to_docks_within_the_contract() -> None:
    recording = Recording.open(default_recording_path())
    with ReplayServer(recording, start=WORLD_START, paused=True) as replay:
        proxy = FeedShiftProxy(replay.url, factor=0.5).start()
        try:
            discovery = httpx.get(f"{proxy.url}/gbfs.json").json()
            urls = [feed["url"] for feed in discovery["data"]["en"]["feeds"]]
            status_url = next(u for u in urls if u.endswith("/station_status.json"))
            doc = httpx.get(status_url).json()  # inactive: passed through as served
            proxy.active = True
            shifted = httpx.get(status_url).json()
        finally:
            proxy.stop()
        assert all(u.startswith(proxy.url) for u in urls)  # every feed is fetched through the proxy
        assert doc == replay.document("station_status")
    assert proxy.shifted_documents == 1
    before = {s["station_id"]: s for s in doc["data"]["stations"]}
    moved = 0
    for station in shifted["data"]["stations"]:
        old = before[station["station_id"]]
        if "num_bikes_available" not in old:
            continue
        bikes, docks = station["num_bikes_available"], station.get("num_docks_available")
        # each vehicle type keeps half (rounded down), so the total may lose one more bike
        assert old["num_bikes_available"] // 2 - 1 <= bikes <= old["num_bikes_available"] // 2
        if docks is not None:
            assert bikes + docks == old["num_bikes_available"] + old["num_docks_available"]
        types = station.get("vehicle_types_available") or []
        if sum(t["count"] for t in old.get("vehicle_types_available") or []) == old["num_bikes_available"]:
            assert not types or sum(t["count"] for t in types) == bikes
        assert station.get("num_ebikes_available", 0) <= bikes
        moved += old["num_bikes_available"] - bikes
    assert moved > 100


def test_a_drill_plan_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="unknown drill"):
        DrillPlan(kind="meteor")
    with pytest.raises(ValueError, match="needs inference"):
        DrillPlan(kind="latency", score=False)
    with pytest.raises(ValueError, match="outage must be one of"):
        DrillPlan(kind="feed-outage", outage="fire")


def test_the_drill_loop_runs_the_due_jobs_in_order_each_replay_minute_and_honours_stop(
    drill_world: DrillWorld,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = copy_world(drill_world, tmp_path)
    stop = threading.Event()
    with ReplayServer(env.world.recording, start=WORLD_START, paused=True) as replay:
        provider = registry_provider(env.settings, Resources.build(env.settings).registry)
        endpoint = ThreadedEndpoint(env.settings, provider, env.lake).start()
        loop = ReplayLoop(
            settings=env.settings,
            lake=env.lake,
            replay=replay,
            feed_url=replay.discovery_url,
            endpoint_url=endpoint.url,
            probes_per_min=1,
            stop=stop,
        )
        try:
            assert [job.name for job in loop.jobs] == ["ingest", "probe", "infer", "actuals"]
            assert loop.advance(10) == WORLD_START + pd.Timedelta(minutes=10)
            stop.set()
            assert loop.advance(5) == WORLD_START + pd.Timedelta(minutes=10)  # stopped: no step
        finally:
            loop.close()
            endpoint.stop()
    every = env.settings.infer_interval_min
    by_job: dict[str, list[pd.Timestamp]] = {}
    for run in loop.runs:
        by_job.setdefault(run.job, []).append(run.started_at)
        assert run.scheduled_at == run.started_at and run.lag_s == 0  # a stepped clock is never late
    minutes = [WORLD_START + pd.Timedelta(minutes=m) for m in range(1, 11)]
    assert by_job["ingest"] == minutes and by_job["probe"] == minutes
    boundaries = [m for m in minutes if m == m.floor(f"{every}min")]
    assert by_job["infer"] == boundaries and by_job["actuals"] == boundaries
    order = [run.job for run in loop.runs if run.started_at == boundaries[0]]
    assert order == ["ingest", "probe", "infer", "actuals"]
    assert all(run.status == "ok" for run in loop.runs if run.job in ("ingest", "infer")), loop.runs
    batches = env.lake.read(INFERENCE_BATCHES, city="sf").to_pandas()
    assert len(batches) == len(boundaries)  # one batch per boundary, production only (the drill profile)
    assert set(batches["alias"]) == {"production"} and set(batches["status"]) == {"ok"}


def test_a_drill_ends_early_when_its_stop_is_set(drill_world: DrillWorld, tmp_path: Path) -> None:  # noqa: F811
    env = copy_world(drill_world, tmp_path)
    stop = threading.Event()
    stop.set()
    report = run_drill(world_plan("feed-outage", score=False), world=env.world, sinks=[LogSink()], stop=stop)
    assert report.stopped and not report.cycles and report.fault_started_at is None
    assert "stopped early" in report.table()
