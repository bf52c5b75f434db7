"""fetch_weather / write_weather with the real Meteostat adapter, a loopback mirror and a temp lake."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.lake.store import Lake
from bikeshare.lake.tables import STATION_INFORMATION, WEATHER
from bikeshare.settings import Settings
from bikeshare.weather.meteostat_source import MeteostatSource
from bikeshare.weather.stage import (
    WEATHER_DTYPES,
    check_window,
    empty_weather_frame,
    fetch_weather,
    system_centre,
    write_weather,
)

from .conftest import MirrorServer, nearest_ids

BAY_CENTRE = (37.716, -122.298)
START = datetime(2023, 3, 1, tzinfo=UTC)
END = datetime(2023, 3, 3, tzinfo=UTC)


def _expected(fixture_hourly: pd.DataFrame, station: str, start: datetime, end: datetime) -> pd.DataFrame:
    rows = fixture_hourly[
        (fixture_hourly["station"] == station) & (fixture_hourly["time"] >= start) & (fixture_hourly["time"] < end)
    ]
    return rows.sort_values("time").reset_index(drop=True)


def _assert_schema(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(WEATHER_DTYPES)
    assert {c: str(t) for c, t in frame.dtypes.items()} == WEATHER_DTYPES


def test_fetch_weather_maps_the_nearest_station(
    weather_settings: Settings, fixture_hourly: pd.DataFrame, fixture_stations: pd.DataFrame
) -> None:
    source = MeteostatSource.from_settings(weather_settings)
    frame = fetch_weather(source=source, lat=BAY_CENTRE[0], lon=BAY_CENTRE[1], start=START, end=END)
    nearest = nearest_ids(fixture_stations, *BAY_CENTRE, weather_settings.meteostat_radius_km)[0]
    expected = _expected(fixture_hourly, nearest, START, END)
    _assert_schema(frame)
    assert set(frame["weather_station"]) == {nearest}
    assert frame["time"].tolist() == expected["time"].tolist()
    assert frame["temp_c"].tolist() == pytest.approx(expected["temp"].tolist())
    assert frame["wind_kmh"].tolist() == pytest.approx(expected["wspd"].tolist())
    assert frame["precip_mm"].tolist() == pytest.approx(expected["prcp"].tolist())
    assert frame["condition_code"].astype(int).tolist() == expected["coco"].tolist()


def test_missing_values_stay_missing(weather_settings: Settings, fixture_hourly: pd.DataFrame) -> None:
    # At San Francisco airport (72494) some hours of 2023-03-03 have no precipitation report.
    source = MeteostatSource.from_settings(weather_settings)
    start, end = datetime(2023, 3, 3, tzinfo=UTC), datetime(2023, 3, 4, tzinfo=UTC)
    frame = fetch_weather(source=source, lat=37.6190, lon=-122.3750, start=start, end=end)
    expected = _expected(fixture_hourly, "72494", start, end)
    assert frame["precip_mm"].isna().sum() == expected["prcp"].isna().sum() > 0
    assert frame["temp_c"].notna().all()


def test_a_station_without_data_falls_back_to_the_next(
    tmp_path: Path, meteostat_server: MirrorServer, fixture_stations: pd.DataFrame
) -> None:
    # Sacramento (72483) is in the stations database but has no hourly file (the mirror answers 404).
    lat, lon = 38.5069, -121.4950
    settings = Settings(
        lake_uri=str(tmp_path / "lake"),
        state_dir=tmp_path / "state",
        meteostat_mirror=meteostat_server.url,
        meteostat_radius_km=200,
        meteostat_max_retries=0,
    )
    order = nearest_ids(fixture_stations, lat, lon, 200)
    assert order[0] == "72483"
    frame = fetch_weather(source=MeteostatSource.from_settings(settings), lat=lat, lon=lon, start=START, end=END)
    assert set(frame["weather_station"]) == {order[1]}
    assert "/hourly/2023/72483.csv.gz" in meteostat_server.requests


@pytest.mark.parametrize(
    ("lat", "lon", "start", "end", "message"),
    [
        (0.0, -150.0, START, END, "no weather station in range"),  # mid-Pacific
        (*BAY_CENTRE, datetime(2023, 6, 1, tzinfo=UTC), datetime(2023, 6, 2, tzinfo=UTC), "has rows in"),
    ],
    ids=["no-station", "no-rows"],
)
def test_no_weather_is_an_empty_frame_and_a_warning(
    weather_settings: Settings,
    caplog: pytest.LogCaptureFixture,
    lat: float,
    lon: float,
    start: datetime,
    end: datetime,
    message: str,
) -> None:
    source = MeteostatSource.from_settings(weather_settings)
    with caplog.at_level(logging.WARNING, logger="bikeshare.weather"):
        frame = fetch_weather(source=source, lat=lat, lon=lon, start=start, end=end)
    assert frame.empty
    _assert_schema(frame)
    assert any(message in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_endpoint_down_is_an_empty_frame_not_a_crash(
    tmp_path: Path, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        lake_uri=str(tmp_path / "lake"),
        state_dir=tmp_path / "state",
        meteostat_mirror=f"http://127.0.0.1:{free_port}",
        meteostat_max_retries=0,
        http_timeout_s=2,
    )
    with caplog.at_level(logging.WARNING, logger="bikeshare.weather"):
        frame = fetch_weather(
            source=MeteostatSource.from_settings(settings), lat=37.7, lon=-122.3, start=START, end=END
        )
    assert frame.empty
    _assert_schema(frame)
    assert any("stations database unavailable" in r.getMessage() for r in caplog.records)


def test_hourly_endpoint_down_is_an_empty_frame(
    tmp_path: Path, meteostat_server: MirrorServer, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        lake_uri=str(tmp_path / "lake"),
        state_dir=tmp_path / "state",
        meteostat_stations_db_endpoint=f"{meteostat_server.url}/stations.db",
        meteostat_hourly_endpoint=f"http://127.0.0.1:{free_port}/hourly/{{year}}/{{station}}.csv.gz",
        meteostat_max_retries=0,
        http_timeout_s=2,
    )
    with caplog.at_level(logging.WARNING, logger="bikeshare.weather"):
        frame = fetch_weather(
            source=MeteostatSource.from_settings(settings), lat=37.7, lon=-122.3, start=START, end=END
        )
    assert frame.empty
    assert any(r.name == "bikeshare.weather.stage" and "no weather" in r.getMessage() for r in caplog.records)


def test_bad_arguments_are_refused(weather_settings: Settings) -> None:
    source = MeteostatSource.from_settings(weather_settings)
    with pytest.raises(ValueError, match="out of range"):
        fetch_weather(source=source, lat=91, lon=0, start=START, end=END)
    with pytest.raises(ValueError, match="no timezone"):
        fetch_weather(source=source, lat=37.7, lon=-122.3, start=datetime(2023, 3, 1), end=END)
    with pytest.raises(ValueError, match="not before"):
        check_window(END, START)


# ---- write_weather ---------------------------------------------------------------------------


def _weather_rows(start: str, hours: int, *, station: str = "72494", temp: float = 10.0) -> pd.DataFrame:
    time = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    return pd.DataFrame(
        {
            "time": time,
            "weather_station": station,
            "temp_c": [temp + i for i in range(hours)],
            "precip_mm": 0.0,
            "wind_kmh": 12.0,
            "condition_code": pd.array([3] * hours, dtype="Int32"),
        }
    ).astype(WEATHER_DTYPES)


def _lake_rows(lake: Lake) -> pd.DataFrame:
    return lake.read(WEATHER, city="sf").to_pandas().sort_values("time").reset_index(drop=True)


def test_write_weather_makes_day_partitions(lake: Lake) -> None:
    frame = _weather_rows("2023-03-01T20:00", 10)  # 20:00 .. 05:00 next day
    files = write_weather(lake, frame=frame, city="sf")
    assert len(files) == 2
    assert lake.partitions(WEATHER, city="sf") == ["2023-03-01", "2023-03-02"]
    stored = _lake_rows(lake)
    assert stored["time"].tolist() == frame["time"].tolist()
    assert stored["temp_c"].tolist() == frame["temp_c"].tolist()
    con = lake.connect()
    assert con.execute("SELECT dt, count(*) FROM weather GROUP BY dt ORDER BY dt").fetchall() == [
        ("2023-03-01", 4),
        ("2023-03-02", 6),
    ]


def test_write_weather_is_idempotent(lake: Lake) -> None:
    frame = _weather_rows("2023-03-01T00:00", 24)
    assert len(write_weather(lake, frame=frame, city="sf")) == 1
    path = lake.files(WEATHER, city="sf")[0]
    mtime = Path(path).stat().st_mtime_ns
    assert write_weather(lake, frame=frame, city="sf") == []
    assert Path(path).stat().st_mtime_ns == mtime
    assert len(_lake_rows(lake)) == 24


def test_write_weather_replaces_hours_and_keeps_the_rest_of_the_day(lake: Lake) -> None:
    write_weather(lake, frame=_weather_rows("2023-03-01T00:00", 12, temp=10.0), city="sf")
    write_weather(lake, frame=_weather_rows("2023-03-01T06:00", 12, temp=50.0), city="sf")
    stored = _lake_rows(lake)
    assert len(stored) == 18
    assert stored["temp_c"].iloc[:6].tolist() == [10.0 + i for i in range(6)]
    assert stored["temp_c"].iloc[6:].tolist() == [50.0 + i for i in range(12)]
    assert len(lake.files(WEATHER, city="sf")) == 1


def test_write_weather_of_nothing_writes_nothing(lake: Lake) -> None:
    assert write_weather(lake, frame=empty_weather_frame(), city="sf") == []
    assert lake.partitions(WEATHER, city="sf") == []
    assert lake.connect().execute("SELECT count(*) FROM weather").fetchall() == [(0,)]


def test_write_weather_refuses_bad_frames(lake: Lake) -> None:
    good = _weather_rows("2023-03-01T00:00", 3)
    with pytest.raises(ValueError, match="unexpected \\['humidity'\\]"):
        write_weather(lake, frame=good.assign(humidity=1.0), city="sf")
    with pytest.raises(ValueError, match="missing \\['wind_kmh'\\]"):
        write_weather(lake, frame=good.drop(columns="wind_kmh"), city="sf")
    with pytest.raises(ValueError, match="timezone-aware"):
        write_weather(lake, frame=good.assign(time=good["time"].dt.tz_localize(None)), city="sf")
    with pytest.raises(ValueError, match="repeats hours"):
        write_weather(lake, frame=pd.concat([good, good.iloc[[0]]]), city="sf")
    assert lake.partitions(WEATHER, city="sf") == []


def test_system_centre_is_the_mean_of_current_stations(lake: Lake) -> None:
    assert system_centre(lake, city="sf") is None
    first = pd.Timestamp("2023-03-01T00:00", tz="UTC")
    old = pd.DataFrame({"station_id": ["a"], "name": ["A"], "capacity": [10], "lat": [10.0], "lon": [10.0]})
    current = pd.DataFrame(
        {
            "station_id": ["a", "b", "c", "bad"],
            "name": ["A", "B", "C", "Null Island"],
            "capacity": [10, 10, 10, 10],
            "lat": [37.70, 37.80, 37.75, 0.0],
            "lon": [-122.40, -122.20, -122.30, 0.0],
        }
    )
    lake.write(STATION_INFORMATION, old.assign(valid_from=first), city="sf", dt="2023-03-01-00-00", name="v")
    later = first + pd.Timedelta(hours=1)
    lake.write(STATION_INFORMATION, current.assign(valid_from=later), city="sf", dt="2023-03-01-01-00", name="v")
    lat, lon = system_centre(lake, city="sf")  # type: ignore[misc]
    assert lat == pytest.approx(current["lat"].iloc[:3].mean())
    assert lon == pytest.approx(current["lon"].iloc[:3].mean())
    assert system_centre(lake, city="nyc") is None
