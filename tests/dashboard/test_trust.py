"""The trust signals of issue 17 on the world of conftest.py: the status bar (fresh, stale, live clock),
job staleness, honest notices, the fitted map and its pick, the Top-N bounds, ties and CSV."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from bikeshare.dashboard.app import PAGES_DIR
from bikeshare.dashboard.charts import fit_view, scale_bar, view_bounds
from bikeshare.dashboard.pages.top_risk import csv_table
from bikeshare.dashboard.status import (
    DATA_AGE_CRITICAL_S,
    DATA_AGE_WARNING_S,
    Clock,
    Level,
    data_age_level,
    is_replay_source,
    job_level,
    job_staleness,
)
from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import JOB_RUNS, Grain
from bikeshare.monitoring.rules import load_rules

from .conftest import World

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
STALE_GAP = pd.Timedelta(hours=2)  # the stale lake's runner kept going this long after the feed stopped


def run_page(file: str) -> AppTest:
    at = AppTest.from_file(str(PAGES_DIR / file), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def pills(at: AppTest) -> dict[str, tuple[str, str]]:
    """key -> (level, text) of the status bar's pills, from its rendered HTML."""
    bar = next(m.value for m in at.markdown if 'class="bs-status"' in m.value)
    found = re.findall(r'data-key="(\w+)" data-level="(\w+)"[^>]*>● ([^<]*)</span>', bar)
    return {key: (level, text) for key, level, text in found}


def lake_sql(lake_dir: Path, sql: str) -> pd.DataFrame:
    con = Lake.open(str(lake_dir)).connect()
    try:
        return con.execute(sql).df()
    finally:
        con.close()


@pytest.fixture
def stale_env(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the world where the runner went on recording job runs 2 h after the newest snapshot."""
    lake_dir = tmp_path / "lake"
    shutil.copytree(world.lake_dir, lake_dir)
    newest = lake_sql(lake_dir, "SELECT max(last_updated) AS t FROM station_status")["t"].iloc[0]
    at = pd.Timestamp(newest) + STALE_GAP
    run = {
        "run_id": "monitor-late",
        "job": "monitor",
        "scheduled_at": at,
        "started_at": at,
        "finished_at": at + pd.Timedelta(seconds=5),
        "duration_s": 5.0,
        "lag_s": 0.0,
        "status": "ok",
        "error": None,
        "details": "{}",
    }
    Lake.open(str(lake_dir)).write(
        JOB_RUNS, pd.DataFrame([run]), city="sf", dt=partition_value(at, Grain.DAY), name="late"
    )
    for name, value in {**world.env(), "BIKESHARE_LAKE_URI": str(lake_dir)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BIKESHARE_CONFIG", raising=False)
    yield lake_dir


# ---- pure rules -------------------------------------------------------------------------------


def test_data_age_colours_follow_the_data_delay_rule_in_force() -> None:
    rule = next(r for r in load_rules(None).rules if r.name == "data_delay")
    assert (rule.warning, rule.critical) == (DATA_AGE_WARNING_S, DATA_AGE_CRITICAL_S)
    kw = {"warning_s": DATA_AGE_WARNING_S, "critical_s": DATA_AGE_CRITICAL_S}
    assert data_age_level(60, **kw) == Level.GREEN
    assert data_age_level(DATA_AGE_WARNING_S + 1, **kw) == Level.AMBER
    assert data_age_level(DATA_AGE_CRITICAL_S + 1, **kw) == Level.RED
    assert data_age_level(None, **kw) == Level.RED


def test_a_job_is_amber_past_two_intervals_and_red_past_four() -> None:
    assert job_level(2 * 300, 300) == Level.GREEN
    assert job_level(2 * 300 + 1, 300) == Level.AMBER
    assert job_level(4 * 300 + 1, 300) == Level.RED
    now = pd.Timestamp("2023-03-07T18:00Z")
    runs = pd.DataFrame(
        {
            "job": ["infer", "monitor", "actuals"],
            "status": ["ok", "failed", "ok"],
            "started_at": [now - pd.Timedelta(minutes=21), now - pd.Timedelta(minutes=10), now],
        }
    )
    levels = job_staleness(runs, {"infer": 300.0, "monitor": 3600.0, "actuals": 300.0}, now).set_index("job")
    assert levels.loc["infer", "level"] == Level.RED  # 21 min > 4 x 5 min
    assert levels.loc["monitor", "level"] == Level.AMBER  # on time, but its last run failed
    assert levels.loc["actuals", "level"] == Level.GREEN


def test_the_clock_is_the_lake_s_own_in_a_replay_and_the_wall_clock_live() -> None:
    wall, lake_now = pd.Timestamp("2026-01-01T00:00Z"), pd.Timestamp("2023-03-07T18:03Z")
    assert is_replay_source("recording:baywheels") and is_replay_source("http://127.0.0.1:8765/gbfs.json")
    assert not is_replay_source("https://gbfs.baywheels.com/gbfs/gbfs.json")
    replay = Clock.of(wall=wall, lake_now=lake_now, source="http://127.0.0.1:8765/gbfs.json", mode="auto")
    assert replay.replay and replay.now == lake_now
    live = Clock.of(wall=wall, lake_now=lake_now, source="https://gbfs.baywheels.com/gbfs/gbfs.json", mode="auto")
    assert not live.replay and live.now == wall
    assert Clock.of(wall=wall, lake_now=lake_now, source="recording:x", mode="wall").now == wall


def test_the_fitted_view_holds_every_point_and_the_scale_is_round() -> None:
    rng = np.random.default_rng(3)
    lat, lon = pd.Series(rng.uniform(37.2, 37.9, 500)), pd.Series(rng.uniform(-122.5, -121.8, 500))
    view = fit_view(lat, lon, width_px=620, height_px=560)
    south, west, north, east = view_bounds(*view, width_px=620, height_px=560)
    assert south < lat.min() and lat.max() < north and west < lon.min() and lon.max() < east
    tighter = view_bounds(view[0], view[1], view[2] + 0.5, width_px=620, height_px=560)
    assert not (tighter[0] < lat.min() and lat.max() < tighter[2] and tighter[1] < lon.min() < lon.max() < tighter[3])
    px, label = scale_bar(37.5, view[2])
    assert 0 < px <= 120 and label.endswith(("km", "m"))


def test_the_csv_rounds_probabilities() -> None:
    table = pd.DataFrame({"station": ["a"], "probability": [0.123456], "P(no bikes)": [0.98765], "batch_time": ["x"]})
    out = csv_table(table)
    assert out["probability"].iloc[0] == 0.123 and out["P(no bikes)"].iloc[0] == 0.988
    assert "batch time" in out.columns


# ---- pages ------------------------------------------------------------------------------------


def test_the_status_bar_is_on_every_page_green_for_fresh_data(world_env: World) -> None:
    for file in ("risk_map.py", "top_risk.py", "model_health.py", "system_health.py", "freshness.py"):
        at = run_page(file)
        bar = pills(at)
        assert set(bar) == {"data", "served", "alerts", "jobs"}, file
        level, text = bar["data"]
        assert level == "green" and "replay time" in text, (file, text)  # the world is a replayed recording
        assert bar["served"][1] == "served production: bikes v1 · docks v1"
        firing = lake_sql(world_env.lake_dir, "SELECT severity FROM alerts WHERE status = 'firing'")
        assert bar["alerts"] == (
            "red" if (firing["severity"] == "critical").any() else "amber",
            f"{len(firing)} alert(s) firing",
        )
        assert any("Read from the lake at" in c.value for c in at.caption), file


def test_a_stale_lake_turns_the_status_bar_and_its_jobs_red(stale_env: Path) -> None:
    at = run_page("system_health.py")
    bar = pills(at)
    level, text = bar["data"]
    assert level == "red" and f"({int(STALE_GAP.total_seconds() // 3600)} h" in text, text
    assert bar["jobs"][0] == "red" and "infer" in bar["jobs"][1]
    jobs = next(d.value for d in at.dataframe if "state" in getattr(d.value, "data", d.value).columns)
    jobs = getattr(jobs, "data", jobs).set_index("job")
    assert jobs.loc["infer", "state"] == "stopped"  # last run 2 h 20 min before the lake's newest run
    assert jobs.loc["monitor", "state"] == "on time"


def test_the_wall_clock_setting_measures_age_against_now(world_env: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIKESHARE_DASHBOARD_CLOCK", "wall")
    bar = pills(run_page("freshness.py"))
    assert bar["data"][0] == "red" and "replay time" not in bar["data"][1]


def test_a_masked_station_says_since_when_and_why_not_run(world_env: World) -> None:
    newest = lake_sql(world_env.lake_dir, "SELECT max(dt) AS dt FROM station_status")["dt"].iloc[0]
    masked = lake_sql(
        world_env.lake_dir,
        f"SELECT station_id, mask_reasons FROM station_status WHERE dt = '{newest}' AND masked ORDER BY station_id",
    ).iloc[0]
    history = lake_sql(
        world_env.lake_dir,
        f"SELECT last_updated, masked FROM station_status WHERE station_id = '{masked['station_id']}' "
        "ORDER BY last_updated",
    )
    unmasked = history[~history["masked"]]["last_updated"]
    run = history[history["last_updated"] > unmasked.max()] if not unmasked.empty else history
    at = run_page("risk_map.py")
    at.selectbox(key="station").select(masked["station_id"]).run()
    assert not at.exception
    since = pd.Timestamp(run["last_updated"].min()).tz_convert("America/Los_Angeles")
    notes = [w.value for w in at.warning]
    assert any(f"masked as {masked['mask_reasons']}" in n and f"{since:%Y-%m-%d %H:%M %Z}" in n for n in notes), notes
    assert not any("run `bikeshare infer`" in i.value for i in at.info)


def test_the_map_fits_every_station_and_rings_the_listed_one(world_env: World) -> None:
    at = run_page("risk_map.py")
    spec = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    view = spec["initialViewState"]
    info = lake_sql(world_env.lake_dir, "SELECT station_id, lat, lon FROM station_information_current")
    south, west, north, east = view_bounds(
        view["latitude"], view["longitude"], view["zoom"], width_px=620, height_px=560
    )
    assert ((info["lat"] > south) & (info["lat"] < north) & (info["lon"] > west) & (info["lon"] < east)).all()
    assert spec["mapStyle"].startswith("data:application/json")  # no network needed for the background
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert {"stations", "routes", "depot", "highlight"} <= set(layers)

    pick = info.sort_values("station_id").iloc[7]
    at.selectbox(key="station").select(pick["station_id"]).run()
    spec = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    ring = next(layer for layer in spec["layers"] if layer["id"] == "highlight")["data"][0]
    assert (ring["lat"], ring["lon"]) == (pick["lat"], pick["lon"])
    assert (spec["initialViewState"]["latitude"], spec["initialViewState"]["longitude"]) == (pick["lat"], pick["lon"])
    at.run()  # a re-read (the auto-refresh) keeps the view where the pick put it
    again = json.loads(at.get("deck_gl_json_chart")[0].proto.json)["initialViewState"]
    assert (again["latitude"], again["longitude"]) == (pick["lat"], pick["lon"])
    names = dict(
        zip(
            *lake_sql(world_env.lake_dir, "SELECT station_id, name FROM station_information_current").T.values,
            strict=True,
        )
    )
    assert at.subheader[0].value == names[pick["station_id"]]  # the panel shows the ringed station
    legend = [h.proto.body for h in at.get("html")]
    assert any("not scored" in body and "truck 1" in body and "depot" in body for body in legend)


def test_top_n_bounds_and_stations_without_a_region(world_env: World) -> None:
    at = run_page("top_risk.py")
    at.number_input(key="top_n").set_value(5000).run()
    assert any("N must be between 1 and 1000: 5000 asked" in w.value for w in at.warning)
    at.number_input(key="top_n").set_value(0).run()
    assert any("showing 1" in w.value for w in at.warning) and len(at.dataframe[0].value) == 1
    at.number_input(key="top_n").set_value(1000).run()
    at.multiselect(key="regions").set_value(["(no region)"]).run()
    table = at.dataframe[0].value
    none = lake_sql(
        world_env.lake_dir,
        "SELECT i.station_id FROM station_information_current i JOIN inference_latest l USING (station_id) "
        "WHERE i.region_id IS NULL GROUP BY ALL",
    )
    assert set(table["station id"]) == set(none["station_id"]) and len(none) > 0
    assert set(table["region"]) == {"(no region)"}


def test_a_failed_batch_and_forecast_call_are_named_not_run(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest batch failed (its record is there, its rows are not): the map says so with the error."""
    from bikeshare.lake.tables import INFERENCE_BATCHES

    lake_dir = tmp_path / "lake"
    shutil.copytree(world.lake_dir, lake_dir)
    newest = lake_sql(lake_dir, "SELECT max(feature_time) AS t FROM inference_batches")["t"].iloc[0]
    slot = pd.Timestamp(newest) + pd.Timedelta(minutes=10)
    record = {
        "batch_id": "failed-slot", "feature_time": slot, "started_at": slot, "finished_at": slot,
        "duration_s": 10.0, "status": "failed", "rows": 0, "stations_scored": 0, "stations_masked": 0,
        "stations_missing": 0, "attempts": 2, "error": "endpoint timed out after 10 s", "endpoint": "http://x",
        "alias": "production", "shadow": False, "model_versions": "{}", "forecast_status": "failed",
        "forecast_error": "forecast endpoint refused",
    }  # fmt: skip
    Lake.open(str(lake_dir)).write(
        INFERENCE_BATCHES, pd.DataFrame([record]), city="sf", dt=partition_value(slot, Grain.DAY), name="failed"
    )
    for name, value in {**world.env(), "BIKESHARE_LAKE_URI": str(lake_dir)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BIKESHARE_CONFIG", raising=False)
    masked = lake_sql(
        lake_dir,
        "SELECT station_id FROM station_status WHERE dt = (SELECT max(dt) FROM station_status) AND masked "
        "ORDER BY station_id LIMIT 1",
    )["station_id"].iloc[0]
    at = run_page("risk_map.py")
    at.selectbox(key="station").select(masked).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("failed after 2 attempt(s): endpoint timed out after 10 s" in e for e in errors), errors
    assert not any("run `bikeshare infer`" in i.value for i in at.info)
    assert any(
        "forecast call of the batch of" in w.value and "forecast endpoint refused" in w.value for w in at.warning
    )
