"""Two replayed hours through the whole loop (see conftest.py), then what each part left behind.

The admission test moves ``production``: it stays the last test of this module.
"""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.orchestration.jobs import JOB_NAMES
from bikeshare.orchestration.pipeline import PIPELINE_KEY_TAG
from bikeshare.registry.audit import read_events
from bikeshare.registry.client import alias_holder, get_version, list_versions, model_name
from bikeshare.registry.gate import staging_online_hours
from bikeshare.registry.online import online_quality
from bikeshare.registry.promotion import lake_window_evaluator, promote

from .conftest import CITY, LIVE_END, LIVE_START, TARGETS, LoopWorld, cli_env


def query(world: LoopWorld, sql: str, **params: object) -> pd.DataFrame:
    con = world.lake.connect()
    try:
        return con.execute(sql, params).df()
    finally:
        con.close()


def test_every_job_ran_on_its_schedule_on_the_replay_clock(loop_world: LoopWorld) -> None:
    runs = query(loop_world, "SELECT * FROM job_runs")
    assert len(runs) == len(loop_world.runs) == sum(loop_world.report.runs.values())  # every run recorded
    by_job = runs.groupby("job")["status"].value_counts().unstack(fill_value=0)
    assert set(by_job.index) == set(JOB_NAMES) - {"retention"}  # retention runs at 00:00 UTC
    assert "failed" not in by_job.columns, runs.loc[runs["status"] == "failed", ["job", "error"]].to_string()
    ok = by_job["ok"]
    # two hours: ingest polls every minute, infer every 5 min (overruns coalesce, so fewer), plans every
    # 30 min, monitor and retrain at the 16:00 boundary
    assert ok["ingest"] >= 60
    assert ok["infer"] >= 12
    assert ok["actuals"] >= 6
    assert ok["plan"] >= 2
    assert ok["monitor"] == 1 and ok["retrain"] == 1
    assert runs["started_at"].min() >= LIVE_START
    assert runs["started_at"].max() < LIVE_END + pd.Timedelta(minutes=10)
    for job in ("monitor", "retrain"):
        scheduled = runs.loc[runs["job"] == job, "scheduled_at"]
        assert list(scheduled) == [pd.Timestamp("2023-03-07T16:00Z")]
    # a late run records its lag on the job clock; a run on time has a small one
    assert (runs["lag_s"] >= 0).all()
    assert (runs["started_at"] - runs["scheduled_at"]).dt.total_seconds().round(3).eq(runs["lag_s"].round(3)).all()


def test_ingest_polled_the_replay_server_over_http(loop_world: LoopWorld) -> None:
    log = query(
        loop_world,
        """
        SELECT * FROM ingest_log
        WHERE feed = 'station_status' AND outcome = 'committed' AND source NOT LIKE 'recording:%'
        """,
    )
    assert len(log) >= 10  # the recording's ~10-minute snapshots of two hours
    assert log["source"].str.match(r"http://127\.0\.0\.1:\d+/gbfs\.json").all()
    assert log["published_at"].min() >= LIVE_START - pd.Timedelta(minutes=15)
    assert log["published_at"].max() < LIVE_END
    # processing inside a run counts in real seconds, not times the replay speed
    processing = (log["committed_at"] - log["fetched_at"]).dt.total_seconds()
    assert processing.max() < 30, processing.describe()
    status = query(
        loop_world,
        "SELECT count(DISTINCT last_updated) AS snapshots FROM station_status WHERE last_updated >= $start",
        start=LIVE_START.to_pydatetime(),
    )
    live = log.loc[log["published_at"] >= LIVE_START, "published_at"]
    assert int(status["snapshots"].iloc[0]) == live.nunique()  # every live snapshot came through ingest


def test_inference_served_production_and_scored_staging_in_shadow(loop_world: LoopWorld) -> None:
    batches = query(loop_world, "SELECT alias, shadow, status, model_versions FROM inference_batches")
    served = batches[~batches["shadow"]]
    assert (served["alias"] == "production").all() and not (served["status"] == "failed").any()
    served = served[served["status"] == "ok"]
    assert len(served) >= 12
    assert {json.loads(v)["bikes"] for v in served["model_versions"]} == {"1"}
    shadow = batches[batches["shadow"] & (batches["status"] == "ok")]
    assert len(shadow) >= 12 and (shadow["alias"] == "staging").all()
    rows = query(
        loop_world,
        """
        SELECT alias, shadow, model_version, target, count(*) AS rows,
               count(DISTINCT station_id) AS stations,
               min(target_time - feature_time) AS ahead_min, max(target_time - feature_time) AS ahead_max
        FROM inference GROUP BY ALL ORDER BY ALL
        """,
    )
    production = rows[rows["alias"] == "production"]
    assert set(production["model_version"]) == {"1"} and not production["shadow"].any()
    staging = rows[rows["alias"] == "staging"]
    assert staging["shadow"].all()
    # the challenger, and the retrained version if the 16:00 pipeline's gate gave it staging
    assert loop_world.challenger["bikes"] in set(staging["model_version"])
    assert set(staging["model_version"]) <= {loop_world.challenger["bikes"], "3"}
    assert (rows["stations"] > 400).all()
    assert (rows["ahead_min"] == pd.Timedelta(minutes=30)).all() and (
        rows["ahead_max"] == pd.Timedelta(minutes=30)
    ).all()


def test_actuals_joined_both_aliases_with_what_happened(loop_world: LoopWorld) -> None:
    quality = query(
        loop_world,
        """
        SELECT alias, target, status, count(*) AS rows, count(DISTINCT target_time) AS times,
               min(target_time) AS first, max(target_time) AS last,
               bool_and(actual_label = (actual_count <= 2)) AS labels_match
        FROM quality GROUP BY ALL
        """,
    )
    joined = quality[quality["status"] == "joined"]
    assert set(zip(joined["alias"], joined["target"], strict=True)) == {
        (a, t) for a in ("production", "staging") for t in TARGETS
    }
    assert (joined["times"] >= 8).all() and (joined["rows"] >= 8 * 400).all()
    assert joined["labels_match"].all()
    assert (joined["first"] >= LIVE_START + pd.Timedelta(minutes=30)).all()
    assert (joined["last"] < LIVE_END).all()


def test_retrain_ran_the_pipeline_on_the_replayed_data(loop_world: LoopWorld) -> None:
    retrain = query(loop_world, "SELECT details FROM job_runs WHERE job = 'retrain'")
    details = json.loads(retrain["details"].iloc[0])
    assert pd.Timestamp(details["train_window"][1]) > LIVE_START  # it trained on what ingest brought
    assert details["feature_days"] == ["2023-03-07"]  # the day built at 15:00 was incomplete: rebuilt
    for target in TARGETS:
        outcome = details["targets"][target]
        assert outcome["trained"] is True
        info = get_version(loop_world.client, model_name(CITY, target), outcome["version"])
        assert info.tags.get(PIPELINE_KEY_TAG)
        assert outcome["staging"] in {"promoted", "refused"}
    assert details["exit_code"] in (0, 1)


def test_monitor_and_plans_wrote_their_records(loop_world: LoopWorld) -> None:
    monitor = query(loop_world, "SELECT * FROM monitoring_runs")
    assert len(monitor) == 1
    metrics = query(loop_world, "SELECT DISTINCT family FROM monitor_metrics")
    assert {"data_quality", "inference", "jobs"} <= set(metrics["family"])
    plans = query(loop_world, "SELECT DISTINCT as_of FROM plans ORDER BY as_of")
    assert len(plans) >= 2
    offsets = plans["as_of"] - plans["as_of"].dt.floor("30min")
    assert (offsets < pd.Timedelta(minutes=5)).all()  # planned at the half-hour boundaries (minus lag)


def test_a_second_pipeline_run_on_the_same_window_registers_nothing(loop_world: LoopWorld) -> None:
    first, again = loop_world.first, loop_world.again
    assert sorted(first.registered) == [f"{model_name(CITY, t)} v1" for t in TARGETS]
    assert again.registered == []
    assert again.feature_days == ()
    for target in TARGETS:
        assert not again.targets[target].trained
        assert again.targets[target].version == first.targets[target].version
        assert again.targets[target].data_window == first.targets[target].data_window
    assert loop_world.versions_after_again == {t: ["1"] for t in TARGETS}


def test_promote_force_with_a_note_is_recorded_in_the_audit_history(loop_world: LoopWorld) -> None:
    for target in TARGETS:
        assert loop_world.forced_output[target].startswith(f"FORCED {model_name(CITY, target)} v1 to 'production'")
        events = read_events(loop_world.lake, city=CITY, model_name=model_name(CITY, target), alias="production")
        forced = events[events["action"] == "forced"]
        assert len(forced) == 1
        row = forced.iloc[0]
        assert (row["version"], row["actor"], row["verdict"]) == ("1", "tests", "fail")
        assert row["note"] == "loop test: production before any online soak"
        checks = {c["name"]: c for c in json.loads(row["checks"])}
        assert checks["staging_online_hours"]["passed"] is False
    # --force without a reason is refused before anything moves
    result = CliRunner().invoke(
        app,
        ["promote", "--target", "bikes", "--to", "production", "--version", "2", "--force", "--note", " "],
        env=cli_env(loop_world.settings),
    )
    assert result.exit_code == 2 and "--note" in result.output


def test_admission_refuses_without_enough_online_hours_and_passes_with_them(loop_world: LoopWorld) -> None:
    target = "bikes"
    name = model_name(CITY, target)
    candidate = loop_world.challenger[target]
    measured = online_quality(
        loop_world.lake, city=CITY, model_name=name, version=candidate, alias="staging", interval_min=5
    )
    assert 0.5 <= measured.hours < 2.0  # shadow predictions joined during the replayed two hours
    args = {
        "client": loop_world.client,
        "lake": loop_world.lake,
        "target": target,
        "alias": "production",
        "version": candidate,
        "actor": "tests",
    }
    short = loop_world.settings.model_copy(update={"staging_min_online_hours": measured.hours + 0.25})
    refused = promote(
        settings=short,
        note="not soaked long enough",
        evaluator=lake_window_evaluator(lake=loop_world.lake, settings=short),
        **args,
    )
    assert refused.action == "refused" and not refused.moved
    failed = {c.name for c in refused.verdict.failed}
    assert "staging_online_hours" in failed
    assert alias_holder(loop_world.client, name, "production").version == "1"

    enough = loop_world.settings.model_copy(update={"staging_min_online_hours": measured.hours})
    passed = promote(settings=enough, note="soaked", evaluator=None, checks=[staging_online_hours], **args)
    assert passed.moved and passed.action == "promote", passed.message
    check = passed.verdict.checks[0]
    assert check.passed and check.observed == measured.hours
    assert alias_holder(loop_world.client, name, "production").version == candidate
    events = read_events(loop_world.lake, city=CITY, model_name=name, alias="production")
    assert list(events.sort_values("at")["action"]) == ["forced", "refused", "promote"]
    assert [v.version for v in list_versions(loop_world.client, name)][:1] == ["3"]  # newest first
