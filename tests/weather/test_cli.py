"""`bikeshare weather fetch|mirror` and `bikeshare sql` over the weather view, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import STATION_INFORMATION, STATION_STATUS, WEATHER

from .conftest import MirrorServer, nearest_ids


@pytest.fixture
def env(tmp_path: Path, meteostat_server: MirrorServer) -> dict[str, str]:
    return {
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "BIKESHARE_WEATHER_ENABLED": "true",
        "BIKESHARE_METEOSTAT_MIRROR": meteostat_server.url,
        "BIKESHARE_METEOSTAT_MAX_RETRIES": "0",
        "BIKESHARE_HTTP_TIMEOUT_S": "5",
    }


def _count(runner: CliRunner, env: dict[str, str], where: str = "") -> int:
    result = runner.invoke(app, ["sql", f"SELECT count(*) AS n FROM weather {where}", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    return int(json.loads(result.output)[0]["n"])


def test_sql_over_an_empty_weather_view(env: dict[str, str]) -> None:
    assert _count(CliRunner(), env) == 0


def test_fetch_then_sql_counts_the_rows(env: dict[str, str], fixture_hourly: pd.DataFrame) -> None:
    runner = CliRunner()
    args = ["weather", "fetch", "--start", "2023-03-01", "--end", "2023-03-03", "--lat", "37.619", "--lon", "-122.375"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    expected = fixture_hourly[
        (fixture_hourly["station"] == "72494") & (fixture_hourly["time"] < pd.Timestamp("2023-03-03", tz="UTC"))
    ]
    assert f"{len(expected)} hourly rows from station 72494, 2 files written" in result.output
    assert _count(runner, env) == len(expected)
    assert _count(runner, env, "WHERE dt = '2023-03-02' AND city = 'sf'") == 24
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0 and "0 files written" in again.output
    assert _count(runner, env) == len(expected)


def test_fetch_defaults_to_the_lake_centre_and_status_window(
    env: dict[str, str], fixture_stations: pd.DataFrame
) -> None:
    lake = Lake.open(env["BIKESHARE_LAKE_URI"])
    info = pd.DataFrame(
        {
            "station_id": ["1", "2", "3"],
            "name": ["Lake Merritt", "Jack London Square", "Alameda"],
            "capacity": [15, 19, 11],
            "lat": [37.8012, 37.7946, 37.7649],
            "lon": [-122.2587, -122.2716, -122.2427],
            "valid_from": pd.Timestamp("2023-03-01T00:00", tz="UTC"),
        }
    )
    lake.write(STATION_INFORMATION, info, city="sf", dt="2023-03-01-00-00", name="v")
    for ts in ("2023-03-02T10:05", "2023-03-02T13:55"):
        stamp = pd.Timestamp(ts, tz="UTC")
        status = pd.DataFrame({"station_id": ["1"], "bikes": [3], "docks": [10], "last_updated": [stamp]})
        lake.write(STATION_STATUS, status, city="sf", dt=stamp.strftime("%Y-%m-%d-%H-%M"), name="s")

    result = CliRunner().invoke(app, ["weather", "fetch"], env=env)
    assert result.exit_code == 0, result.output
    assert "2023-03-02T10:00Z..2023-03-02T14:00Z" in result.output
    centre = (info["lat"].mean(), info["lon"].mean())
    nearest = nearest_ids(fixture_stations, *centre, 50)[0]
    stored = lake.read(WEATHER, city="sf").to_pandas()
    assert set(stored["weather_station"]) == {nearest}
    assert stored["time"].min() == pd.Timestamp("2023-03-02T10:00", tz="UTC")
    assert stored["time"].max() == pd.Timestamp("2023-03-02T13:00", tz="UTC")


def test_fetch_with_no_weather_succeeds_and_writes_nothing(env: dict[str, str], free_port: int) -> None:
    down = {**env, "BIKESHARE_METEOSTAT_MIRROR": f"http://127.0.0.1:{free_port}"}
    args = ["weather", "fetch", "--start", "2023-03-01", "--end", "2023-03-02", "--lat", "37.7", "--lon", "-122.3"]
    result = CliRunner().invoke(app, args, env=down)
    assert result.exit_code == 0, result.output
    assert "0 hourly rows" in result.output
    assert _count(CliRunner(), env) == 0


def test_fetch_with_an_empty_lake_and_no_centre_writes_nothing(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["weather", "fetch", "--start", "2023-03-01", "--end", "2023-03-02"], env=env)
    assert result.exit_code == 0, result.output
    assert "no centre" in result.output
    assert _count(CliRunner(), env) == 0


def test_fetch_disabled_does_nothing(env: dict[str, str]) -> None:
    off = {**env, "BIKESHARE_WEATHER_ENABLED": "false"}
    result = CliRunner().invoke(app, ["weather", "fetch", "--lat", "37.6", "--lon", "-122.4"], env=off)
    assert result.exit_code == 0 and "disabled" in result.output
    assert _count(CliRunner(), env) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "yesterday-ish"], "not an ISO date"),
        (["--start", "2023-03-02", "--end", "2023-03-01", "--lat", "37.6", "--lon", "-122.4"], "not before"),
        (["--lat", "37.6"], "both latitude and longitude"),
    ],
)
def test_fetch_refuses_bad_options(env: dict[str, str], args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["weather", "fetch", *args], env=env)
    assert result.exit_code != 0
    assert message in result.output


def test_mirror_command_builds_a_usable_mirror(
    tmp_path: Path, meteostat_dir: Path, fixture_hourly: pd.DataFrame
) -> None:
    dest = tmp_path / "mirror"
    source = meteostat_dir / "source"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "weather",
            "mirror",
            str(dest),
            "--stations",
            str(source / "stations.csv"),
            "--hourly",
            str(source / "hourly.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    folder_env = {
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "BIKESHARE_METEOSTAT_MIRROR": str(dest),
    }
    args = ["weather", "fetch", "--start", "2023-03-01", "--end", "2023-03-04", "--lat", "37.619", "--lon", "-122.375"]
    fetched = runner.invoke(app, args, env=folder_env)
    assert fetched.exit_code == 0, fetched.output
    assert _count(runner, folder_env) == int((fixture_hourly["station"] == "72494").sum())

    bad = runner.invoke(app, ["weather", "mirror", str(dest), "--stations", "nope.csv", "--hourly", "nope.csv"])
    assert bad.exit_code != 0 and "does not exist" in bad.output
