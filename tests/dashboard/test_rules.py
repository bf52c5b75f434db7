"""The dashboard's pure rules (dispatch, radius, Top-N) and how `bikeshare dashboard` passes settings on."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.dashboard.launch import settings_env, streamlit_command
from bikeshare.dashboard.risk import RiskFilter, dispatch_quantity, haversine_m, top_risk
from bikeshare.settings import Settings


def stations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "station_id": ["a", "b", "c", "d"],
            "region_id": ["3", "3", "5", None],
            "lat": [37.7749, 37.7800, 37.8044, 37.7750],
            "lon": [-122.4194, -122.4194, -122.2712, -122.4195],
            "p_bikes": [0.9, 0.2, 0.6, None],
            "p_docks": [0.1, 0.7, 0.6, None],
            "bikes_now": [1, 10, 4, None],
            "docks_now": [19, 2, 6, None],
        }
    ).assign(risk=lambda f: f[["p_bikes", "p_docks"]].max(axis=1))


def test_dispatch_aims_at_the_target_fill_of_usable_slots() -> None:
    moves = dispatch_quantity(pd.Series([1, 10, 5, None]), pd.Series([19, 2, 5, 3]), target_fill=0.5)
    assert moves.tolist()[:3] == [9, -4, 0]  # 10 - 1, 6 - 10, 5 - 5
    assert pd.isna(moves.iloc[3])
    assert dispatch_quantity(pd.Series([0]), pd.Series([10]), target_fill=0.8).tolist() == [8]
    with pytest.raises(ValueError, match="target fill"):
        dispatch_quantity(pd.Series([1]), pd.Series([1]), target_fill=1.5)


def test_haversine_matches_a_known_distance() -> None:
    # San Francisco City Hall to Oakland City Hall: about 13.4 km.
    d = haversine_m(pd.Series([37.7793]), pd.Series([-122.4193]), 37.8053, -122.2724)[0]
    assert 13_000 < d < 13_800


def test_top_risk_orders_filters_and_skips_unscored() -> None:
    top = top_risk(stations(), RiskFilter(), target_fill=0.5)
    assert top["station_id"].tolist() == ["a", "b", "c"]  # d was not scored; ties broken by id
    assert top_risk(stations(), RiskFilter(target="docks"), target_fill=0.5)["station_id"].tolist() == ["b", "c", "a"]
    by_region = top_risk(stations(), RiskFilter(regions=("5",)), target_fill=0.5)
    assert by_region["station_id"].tolist() == ["c"]
    near = top_risk(stations(), RiskFilter(center=(37.7749, -122.4194), radius_m=1000), target_fill=0.5)
    assert near["station_id"].tolist() == ["a", "b"] and near["distance_m"].max() < 1000
    assert top_risk(stations(), RiskFilter(min_probability=0.65, top_n=1), target_fill=0.5)["station_id"].tolist() == [
        "a"
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "scooters"}, "target must be one of"),
        ({"min_probability": 2.0}, "minimum probability"),
        ({"top_n": 0}, "top N"),
        ({"center": (37.0, -122.0)}, "needs both a centre and a radius"),
        ({"center": (37.0, -122.0), "radius_m": -5.0}, "radius must be positive"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RiskFilter(**kwargs)  # type: ignore[arg-type]


def test_the_app_rebuilds_the_same_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Settings(
        lake_uri=str(tmp_path / "lake"),
        state_dir=tmp_path / "state",
        city="nyc",
        dashboard_target_fill=0.6,
        infer_shadow_aliases=["staging"],
        weather_enabled=False,
        alert_email_to=["ops@example.org"],
    )
    env = settings_env(original, base={"PATH": "/usr/bin", "BIKESHARE_CONFIG": "/nowhere.toml"})
    assert "BIKESHARE_CONFIG" not in env and env["PATH"] == "/usr/bin"
    for key in [k for k in os.environ if k.startswith("BIKESHARE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings().model_dump() == original.model_dump()


def test_streamlit_is_started_headless_on_loopback() -> None:
    command = streamlit_command(port=8765, python="/usr/bin/python3")
    assert command[:3] == ["/usr/bin/python3", "-m", "bikeshare.dashboard.serve"]
    assert {"--server.headless=true", "--server.address=127.0.0.1", "--server.port=8765"} <= set(command)
    assert "--client.toolbarMode=minimal" in command  # no "Deploy" button on the operator's screen
