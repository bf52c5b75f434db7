"""Resources built once from settings, the city-bound context, validated copies and profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from bikeshare.fleet import Fleet
from bikeshare.lake.tables import JOB_RUNS
from bikeshare.orchestration.clocks import WallClock
from bikeshare.profiles import profile_values, with_profile
from bikeshare.resources import Resources
from bikeshare.settings import CONFIG_ENV_VAR, Settings, load_settings


def test_city_context_binds_the_lake_to_its_city(tmp_path: Path) -> None:
    base = Settings(city="oslo", lake_uri=str(tmp_path / "lake"), state_dir=tmp_path)
    resources = Resources.build(base)
    assert isinstance(resources.clock, WallClock)
    oslo = resources.city()
    assert oslo.key == "oslo" and oslo.settings.city == "oslo" and oslo.model_name("bikes") == "bikeshare-oslo-bikes"
    row = {"job": "infer", "started_at": pd.Timestamp("2023-06-01T10:00Z")}
    path = oslo.lake.write(JOB_RUNS, pd.DataFrame([row]), dt="2023-06-01", name="a")
    assert path is not None and "/city=oslo/dt=2023-06-01/" in path
    assert oslo.lake.partitions(JOB_RUNS) == ["2023-06-01"] == resources.lake.partitions(JOB_RUNS, city="oslo")
    assert resources.lake.partitions(JOB_RUNS, city="sf") == []
    fleet = Fleet((base, base.with_values(city="sf")))
    sf = Resources(base, lake=resources.lake, clock=resources.clock, fleet=fleet).city("sf")
    assert sf.settings.city == "sf" and sf.lake.read(JOB_RUNS).num_rows == 0 and oslo.lake.read(JOB_RUNS).num_rows == 1


def test_build_sets_the_mlflow_environment_once_and_open_client_leaves_it(tmp_path: Path) -> None:
    settings = Settings(lake_uri=str(tmp_path / "lake"), state_dir=tmp_path, mlflow_http_max_retries=0)
    resources = Resources.build(settings)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "5"
    try:
        client = resources.registry()
        assert resources.registry() is client  # built once
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"  # opening the client set nothing
    finally:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"


def test_with_values_validates_where_model_copy_did_not() -> None:
    base = Settings()
    assert base.with_values(train_num_trees=12).train_num_trees == 12
    with pytest.raises(ValidationError, match="train_num_trees"):
        base.with_values(train_num_trees=0)
    with pytest.raises(ValueError, match="unknown setting"):
        base.with_values(no_such_setting=1)


def test_load_settings_reads_the_file_without_touching_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    config = tmp_path / "bikeshare.toml"
    config.write_text('city = "oslo"\ntrain_num_trees = 11\n')
    monkeypatch.setenv("BIKESHARE_TRAIN_NUM_TREES", "13")  # the environment wins over the file
    settings = load_settings(config)
    assert (settings.city, settings.train_num_trees) == ("oslo", 13)
    assert CONFIG_ENV_VAR not in os.environ and type(settings) is Settings


def test_profiles_are_validated_and_unknown_ones_named() -> None:
    demo = with_profile(Settings(alert_webhook_url="http://127.0.0.1:9/hook"), "demo", lake_uri="/tmp/demo-lake")
    assert demo.train_num_trees == profile_values("demo")["train_num_trees"]
    assert demo.alert_webhook_url is None and demo.lake_uri == "/tmp/demo-lake"
    drill = with_profile(Settings(), "drill", city="oslo")
    assert drill.city == "oslo" and drill.retry_base_delay_s == 0.0
    with pytest.raises(ValueError, match="unknown settings profile 'nope'; known: demo, drill"):
        with_profile(Settings(), "nope")
    with pytest.raises(ValidationError):
        with_profile(Settings(), "demo", train_num_trees=-1)
