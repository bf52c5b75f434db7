"""The Meteostat adapter against the real meteostat package and a loopback mirror."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.settings import Settings
from bikeshare.weather.meteostat_source import MeteostatConfig, MeteostatSource, meteostat_environment
from bikeshare.weather.stage import WeatherUnavailableError

from .conftest import MirrorServer, nearest_ids

BAY_CENTRE = (37.716, -122.298)


def test_environment_is_scoped_and_restored(
    weather_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from meteostat.api.config import config
    from meteostat.providers.meteostat import hourly as hourly_provider

    monkeypatch.setenv("MS_HOURLY_ENDPOINT", "https://example.invalid/{year}/{station}.csv.gz")
    monkeypatch.delenv("MS_STATIONS_DB_FILE", raising=False)
    before_endpoint = config.hourly_endpoint
    before_db_file = config.stations_db_file
    before_provider = hourly_provider.ENDPOINT
    cfg = MeteostatConfig.from_settings(weather_settings)

    with meteostat_environment(cfg):
        expected = f"{weather_settings.meteostat_mirror}/hourly/{{year}}/{{station}}.csv.gz"
        assert os.environ["MS_HOURLY_ENDPOINT"] == expected
        assert config.hourly_endpoint == expected
        assert expected == hourly_provider.ENDPOINT
        assert config.stations_db_endpoints == [f"{weather_settings.meteostat_mirror}/stations.db"]
        assert config.stations_db_file == str(cfg.stations_db_file)
        assert config.cache_directory == str(cfg.data_cache_dir)
        assert config.network_max_retries == 0
        assert str(cfg.cache_dir).startswith(str(tmp_path / "state"))

    assert os.environ["MS_HOURLY_ENDPOINT"] == "https://example.invalid/{year}/{station}.csv.gz"
    assert "MS_STATIONS_DB_FILE" not in os.environ
    assert config.hourly_endpoint == before_endpoint
    assert config.stations_db_file == before_db_file
    assert before_provider == hourly_provider.ENDPOINT


def test_environment_is_restored_after_an_error(weather_settings: Settings) -> None:
    from meteostat.api.config import config

    before = dict(vars(config))
    cfg = MeteostatConfig.from_settings(weather_settings)
    with pytest.raises(RuntimeError, match="boom"), meteostat_environment(cfg):
        raise RuntimeError("boom")
    assert dict(vars(config)) == before


def test_endpoint_template_must_name_year_and_station(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"placeholder.*\{year\}"):
        MeteostatConfig(
            hourly_endpoint="http://127.0.0.1:1/{station}.csv.gz", stations_db_endpoint=None, cache_dir=tmp_path
        )


def test_each_endpoint_pair_has_its_own_cache(tmp_path: Path) -> None:
    a = MeteostatConfig(
        hourly_endpoint="http://a/{year}/{station}", stations_db_endpoint="http://a/s.db", cache_dir=tmp_path
    )
    b = MeteostatConfig(
        hourly_endpoint="http://b/{year}/{station}", stations_db_endpoint="http://b/s.db", cache_dir=tmp_path
    )
    assert a.data_cache_dir != b.data_cache_dir
    assert a.stations_db_file != b.stations_db_file


def test_nearby_stations_come_nearest_first(
    weather_settings: Settings, meteostat_server: MirrorServer, fixture_stations: pd.DataFrame
) -> None:
    source = MeteostatSource.from_settings(weather_settings)
    found = source.nearby_stations(*BAY_CENTRE)
    assert [s.id for s in found] == nearest_ids(fixture_stations, *BAY_CENTRE, weather_settings.meteostat_radius_km)
    assert found[0].distance_km <= found[-1].distance_km
    assert "/stations.db" in meteostat_server.requests[0]


def test_hourly_reads_the_mirror(weather_settings: Settings, fixture_hourly: pd.DataFrame) -> None:
    source = MeteostatSource.from_settings(weather_settings)
    start, end = datetime(2023, 3, 1, 5, tzinfo=UTC), datetime(2023, 3, 2, 5, tzinfo=UTC)
    frame = source.hourly("72494", start, end)
    expected = fixture_hourly[
        (fixture_hourly["station"] == "72494") & (fixture_hourly["time"] >= start) & (fixture_hourly["time"] < end)
    ]
    assert len(frame) == len(expected) == 24
    assert frame["time"].min() == pd.Timestamp(start) and frame["time"].max() < pd.Timestamp(end)
    assert frame["temp"].astype(float).tolist() == pytest.approx(expected["temp"].tolist())
    assert frame["coco"].astype(int).tolist() == expected["coco"].tolist()


def test_hourly_is_cached_under_the_configured_folder(
    tmp_path: Path, meteostat_server: MirrorServer, fixture_hourly: pd.DataFrame
) -> None:
    settings = Settings(
        lake_uri=str(tmp_path / "lake"),
        state_dir=tmp_path / "state",
        meteostat_mirror=meteostat_server.url,
        meteostat_cache_dir=tmp_path / "ms-cache",
        meteostat_max_retries=0,
    )
    source = MeteostatSource.from_settings(settings)
    start, end = datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 3, 2, tzinfo=UTC)
    first = source.hourly("72494", start, end)
    csv_requests = [r for r in meteostat_server.requests if r.endswith(".csv.gz")]
    assert csv_requests == ["/hourly/2023/72494.csv.gz"]
    assert list(source.cfg.data_cache_dir.glob("*.pickle"))
    assert source.cfg.data_cache_dir.is_relative_to(tmp_path / "ms-cache")
    second = source.hourly("72494", start, end)
    assert [r for r in meteostat_server.requests if r.endswith(".csv.gz")] == csv_requests
    pd.testing.assert_frame_equal(first, second)


def test_unreachable_stations_database_is_weather_unavailable(tmp_path: Path, free_port: int) -> None:
    settings = Settings(
        lake_uri=str(tmp_path / "lake"),
        state_dir=tmp_path / "state",
        meteostat_mirror=f"http://127.0.0.1:{free_port}",
        meteostat_max_retries=0,
        http_timeout_s=2,
    )
    with pytest.raises(WeatherUnavailableError, match="stations database"):
        MeteostatSource.from_settings(settings).nearby_stations(*BAY_CENTRE)


def test_a_folder_mirror_works_without_http(
    tmp_path: Path, meteostat_dir: Path, fixture_stations: pd.DataFrame
) -> None:
    settings = Settings(
        lake_uri=str(tmp_path / "lake"), state_dir=tmp_path / "state", meteostat_mirror=str(meteostat_dir)
    )
    source = MeteostatSource.from_settings(settings)
    found = source.nearby_stations(*BAY_CENTRE)
    assert [s.id for s in found] == nearest_ids(fixture_stations, *BAY_CENTRE, settings.meteostat_radius_km)
    frame = source.hourly(found[0].id, datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 3, 4, tzinfo=UTC))
    assert len(frame) > 0


def test_a_missing_folder_mirror_is_weather_unavailable(tmp_path: Path) -> None:
    settings = Settings(
        lake_uri=str(tmp_path / "lake"), state_dir=tmp_path / "state", meteostat_mirror=str(tmp_path / "nope")
    )
    with pytest.raises(WeatherUnavailableError, match="does not exist"):
        MeteostatSource.from_settings(settings).nearby_stations(*BAY_CENTRE)
