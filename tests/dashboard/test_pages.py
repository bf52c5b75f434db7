"""Every dashboard page under streamlit.testing's AppTest, on the world of conftest.py.

Expected values are computed here from the lake's rows (DuckDB over the views, pandas), not taken
from the dashboard's own query module.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from bikeshare.dashboard import context
from bikeshare.dashboard.app import PAGES, PAGES_DIR
from bikeshare.lake.store import Lake

from .conftest import LIVE_LATENCY_S, World

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run_page(file: str) -> AppTest:
    at = AppTest.from_file(str(PAGES_DIR / file), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def view(world: World, sql: str) -> pd.DataFrame:
    con = Lake.open(str(world.lake_dir)).connect()
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def texts(at: AppTest) -> str:
    parts = [*(e.value for e in at.info), *(e.value for e in at.caption), *(e.value for e in at.markdown)]
    parts += [e.value for e in at.success]
    return "\n".join(str(p) for p in parts)


def latest_risk(world: World) -> pd.DataFrame:
    """Per station of the newest served batch: p_bikes, p_docks, risk, counts (from inference rows)."""
    rows = view(world, "SELECT station_id, target, probability, current_count FROM inference_latest")
    wide = rows.pivot_table(index="station_id", columns="target", values=["probability", "current_count"])
    out = pd.DataFrame(
        {
            "p_bikes": wide[("probability", "bikes")],
            "p_docks": wide[("probability", "docks")],
            "bikes": wide[("current_count", "bikes")],
            "docks": wide[("current_count", "docks")],
        }
    ).reset_index()
    out["risk"] = out[["p_bikes", "p_docks"]].max(axis=1)
    return out


def ranked_by(
    risk: pd.DataFrame, column: str, *, fill: float, shortfall: Callable[[pd.Series], pd.Series]
) -> pd.DataFrame:
    """The Top-N order: probability to 0.1 %, then the shortfall against the target fill, then the id."""
    move = (fill * (risk["bikes"] + risk["docks"])).round() - risk["bikes"]
    keyed = risk.assign(tie=risk[column].round(3), short=shortfall(move))
    return keyed.sort_values(["tie", "short", "station_id"], ascending=[False, False, True], kind="mergesort")


def test_app_entry_lists_the_pages(world_env: World) -> None:
    at = AppTest.from_file(str(PAGES_DIR.parent / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert [p[1] for p in PAGES] == ["Fleet", "Map", "Top-N risk", "Model health", "System health", "Data freshness"]
    at.switch_page("pages/top_risk.py").run()
    assert not at.exception
    assert at.title[0].value == "Top-N risk"


def test_map_lists_every_station_riskiest_first_with_its_panel(world_env: World) -> None:
    at = run_page("risk_map.py")
    info = view(world_env, "SELECT station_id, name, capacity FROM station_information_current")
    risk = latest_risk(world_env).sort_values(["risk", "station_id"], ascending=[False, True])
    box = at.selectbox(key="station")
    assert len(box.options) == len(set(info["station_id"]) | set(risk["station_id"]))
    top = risk.iloc[0]
    assert box.value == top["station_id"]
    names = dict(zip(info["station_id"], info["name"], strict=True))
    assert at.subheader[0].value == names[top["station_id"]]

    # A known station: name, capacity, its latest counts and the predictions of the last two hours.
    known = info[info["station_id"].isin(risk["station_id"])].sort_values("station_id").iloc[0]
    at.selectbox(key="station").select(known["station_id"]).run()
    assert not at.exception
    assert at.subheader[0].value == known["name"]
    assert f"capacity {int(known['capacity'])}" in texts(at)
    last = view(
        world_env,
        f"SELECT bikes, docks FROM station_status WHERE station_id = '{known['station_id']}' "
        "ORDER BY last_updated DESC LIMIT 1",
    ).iloc[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Bikes now"] == str(int(last["bikes"]))
    assert metrics["Docks now"] == str(int(last["docks"]))
    p = risk.set_index("station_id").loc[known["station_id"]]
    assert metrics["P(no bikes) in 30 min"] == f"{p['p_bikes']:.0%}"
    assert "bikes v1" in texts(at) and "production" in texts(at)

    plan = view(world_env, "SELECT * FROM plan_summary").iloc[0]
    benefit = at.dataframe[0].value
    no_action = benefit.set_index("policy").loc["no action", "expected stockout station-min"]
    assert no_action == round(plan["stockout_min_no_action"], 1)  # rounded to 0.1 station-min


def test_top_n_orders_filters_and_suggests_dispatch(world_env: World) -> None:
    at = run_page("top_risk.py")
    risk = latest_risk(world_env)
    table = at.dataframe[0].value
    assert list(table.columns[:5]) == ["rank", "station", "probability", "suggested move", "action"]
    assert table.columns[-1] == "station id"
    ranked = ranked_by(risk, "risk", fill=0.5, shortfall=lambda move: move.abs())
    assert table["station id"].tolist() == ranked["station_id"].head(25).tolist()
    assert ranked["risk"].round(3).head(25).duplicated().any(), "the world should hold a tie to break"
    risk = risk.sort_values(["risk", "station_id"], ascending=[False, True])
    assert "Suggested move = round(target fill x (bikes + docks now)) - bikes now" in texts(at)
    first = risk.iloc[0]
    expected_move = round(0.5 * (first["bikes"] + first["docks"])) - first["bikes"]
    assert table.iloc[0]["suggested move"] == expected_move

    at.radio(key="target").set_value("bikes")
    at.slider(key="min_p").set_value(0.2)
    at.number_input(key="top_n").set_value(5)
    at.slider(key="target_fill").set_value(0.6)
    at.run()
    table = at.dataframe[0].value
    by_bikes = ranked_by(risk[risk["p_bikes"] >= 0.2], "p_bikes", fill=0.6, shortfall=lambda move: move.clip(lower=0))
    assert table["station id"].tolist() == by_bikes["station_id"].head(5).tolist()
    row = by_bikes.iloc[0]
    assert table.iloc[0]["suggested move"] == round(0.6 * (row["bikes"] + row["docks"])) - row["bikes"]

    # Radius around a station: every station within 800 m of it, by great-circle distance.
    from sklearn.metrics.pairwise import haversine_distances

    info = view(world_env, "SELECT station_id, lat, lon FROM station_information_current")
    centre = info[info["station_id"] == by_bikes.iloc[0]["station_id"]].iloc[0]
    at.radio(key="target").set_value("either")
    at.slider(key="min_p").set_value(0.0)
    at.number_input(key="top_n").set_value(1000)
    at.radio(key="radius_mode").set_value("a station")
    at.run()
    at.selectbox(key="radius_station").select(centre["station_id"])
    at.slider(key="radius_m").set_value(800)
    at.run()
    table = at.dataframe[0].value
    dist = (
        haversine_distances(np.radians(info[["lat", "lon"]].to_numpy()), np.radians([[centre["lat"], centre["lon"]]]))[
            :, 0
        ]
        * 6_371_000
    )
    near = set(info.loc[dist <= 800, "station_id"]) & set(risk["station_id"])
    assert set(table["station id"]) == near
    assert len(at.get("download_button")) == 1


def test_model_health_shows_versions_kpis_drift_and_history(world_env: World) -> None:
    at = run_page("model_health.py")
    assert context.registry_loader(context.page_context().settings).wait(120)
    at.run()
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    registry = next(f for f in frames if "version (registry)" in f.columns)
    held = {(r.target, r.alias): r["version (registry)"] for _, r in registry.iterrows()}
    assert held == {
        ("bikes", "production"): "1",
        ("bikes", "staging"): "2",
        ("docks", "production"): "1",
        ("docks", "staging"): "2",
    }
    assert registry["threshold"].tolist() == [0.4] * 4

    rolling = view(
        world_env,
        "SELECT * FROM quality_rolling_24h WHERE target = 'bikes' AND NOT shadow ORDER BY window_end DESC LIMIT 1",
    ).iloc[0]
    assert f"PR-AUC {rolling['pr_auc']:.3f}, F1 {rolling['f1']:.3f} on {int(rolling['rows'])} rows" in texts(at)
    drift = view(world_env, "SELECT * FROM drift_latest")
    assert f"({int(drift['drifting'].sum())} of {len(drift)})" in texts(at)
    audit = view(world_env, "SELECT * FROM promotions")
    history = next(f for f in frames if "verdict" in f.columns)
    assert len(history) == len(audit) == 4
    lift = next(f for f in frames if "persistence PR-AUC (daily)" in f.columns)
    assert set(lift["target"]) == {"bikes", "docks"}
    gap = lift["lift"] - (lift["model PR-AUC (daily)"] - lift["persistence PR-AUC (daily)"])
    assert (gap.abs() < 1e-9).all()
    # The onset row (not short at prediction time) beside all rows, on the lake's own row counts.
    short = world_env.settings.shortage_threshold
    counts = view(
        world_env,
        f"SELECT target, count(*) AS n, count(*) FILTER (WHERE current_count > {short}) AS onsets "
        "FROM quality WHERE status = 'joined' AND NOT shadow AND current_count IS NOT NULL GROUP BY target",
    ).set_index("target")
    for target in ("bikes", "docks"):
        mine = lift[lift["target"] == target].set_index("subset")
        assert set(mine.index) == {"all rows", "onsets"}
        assert mine.loc["all rows", "rows"] == counts.loc[target, "n"]
        assert mine.loc["onsets", "rows"] == counts.loc[target, "onsets"]


def test_system_health_lists_alerts_and_acks_one(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake_dir = tmp_path / "lake"
    shutil.copytree(world.lake_dir, lake_dir)  # the ack writes: keep the session's world as it is
    for name, value in {**world.env(), "BIKESHARE_LAKE_URI": str(lake_dir)}.items():
        monkeypatch.setenv(name, value)
    mine = World(lake_dir=lake_dir, state_dir=world.state_dir, settings=world.settings)
    at = run_page("system_health.py")
    alerts = view(mine, "SELECT * FROM alerts WHERE status = 'firing'")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["firing"] == str(len(alerts)) and len(alerts) >= 1
    batches = view(mine, "SELECT status FROM inference_batches WHERE NOT shadow")
    ok, failed = (batches["status"] == "ok").sum(), (batches["status"] == "failed").sum()
    assert metrics["success rate"] == f"{ok / (ok + failed):.1%}"
    endpoint = view(mine, "SELECT * FROM endpoint_metrics ORDER BY window_end DESC LIMIT 1").iloc[0]
    assert metrics["P95 (ms)"] == f"{endpoint['p95_ms']:.1f}"
    jobs = next(d.value for d in at.dataframe if "last status" in d.value.columns).set_index("job")
    assert jobs.loc["infer", "failed"] == 1 and jobs.loc["monitor", "last status"] == "ok"

    alert_id = alerts.iloc[0]["alert_id"]
    at.selectbox(key="ack_alert").select(alert_id)
    at.text_input(key="ack_by").input("ops-test")
    at.form_submit_button[0].click().run()
    assert not at.exception
    acked = view(mine, f"SELECT status, acknowledged_by FROM alerts WHERE alert_id = '{alert_id}'").iloc[0]
    assert (acked["status"], acked["acknowledged_by"]) == ("acknowledged", "ops-test")
    assert any("as ops-test" in s.value for s in at.success)
    assert {m.label: m.value for m in at.metric}["acknowledged"] == "1"


def test_freshness_shows_partitions_latency_quarantine_and_masks(world_env: World) -> None:
    at = run_page("freshness.py")
    feeds = next(d.value for d in at.dataframe if "latest partition" in d.value.columns).set_index("feed")
    newest = view(world_env, "SELECT max(dt) AS dt FROM station_status").iloc[0]["dt"]
    assert feeds.loc["station_status", "latest partition"] == f"dt={newest}"
    assert feeds.loc["station_status", "last ingest latency"] == f"{int(LIVE_LATENCY_S)} s"
    quarantine = view(world_env, "SELECT reason_code FROM quarantine")
    shown = next(d.value for d in at.dataframe if "reason_code" in d.value.columns)
    assert shown["reason_code"].tolist() == quarantine["reason_code"].tolist() == ["malformed_json"]
    masked = view(world_env, f"SELECT station_id FROM station_status WHERE dt = '{newest}' AND masked")
    table = next(d.value for d in at.dataframe if "mask_reasons" in d.value.columns)
    assert sorted(table["station_id"]) == sorted(masked["station_id"]) and len(masked) > 0
    assert "PST" in texts(at) or "PDT" in texts(at)  # local time of America/Los_Angeles, labelled


def test_every_page_of_an_empty_lake_says_which_command_fills_it(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**world.env(), "BIKESHARE_LAKE_URI": str(tmp_path / "empty")}.items():
        monkeypatch.setenv(name, value)
    expected = {
        "risk_map.py": ["bikeshare ingest"],
        "top_risk.py": ["bikeshare infer"],
        "model_health.py": ["bikeshare infer", "bikeshare actuals", "bikeshare monitor", "bikeshare promote"],
        "system_health.py": ["bikeshare monitor", "bikeshare infer", "bikeshare run"],
        "freshness.py": ["bikeshare ingest"],
    }
    for file, commands in expected.items():
        at = run_page(file)
        shown = "\n".join(i.value for i in at.info)
        for command in commands:
            assert f"`{command}" in shown, (file, command, shown)
