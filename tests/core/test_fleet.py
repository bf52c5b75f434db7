"""The fleet file: one validated Settings per city, deployment settings from the process, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bikeshare.fleet import Fleet, FleetError, is_city_setting, load_fleet
from bikeshare.resources import Resources
from bikeshare.settings import Settings

TWO_CITIES = """
shortage_threshold = 3          # a default for every city
infer_interval_min = 10

[[cities]]
key = "sf"
feed_url = "http://127.0.0.1:9/sf/gbfs.json"

[[cities]]
key = "oslo"
feed_url = "http://127.0.0.1:9/oslo/gbfs.json"
timezone = "Europe/Oslo"
shortage_threshold = 1
pipeline_train_days = 14
"""


@pytest.fixture
def base(tmp_path: Path) -> Settings:
    return Settings(lake_uri=str(tmp_path / "lake"), state_dir=tmp_path / "state", serve_port=9001)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def test_each_city_gets_the_defaults_its_overrides_and_the_process_settings(base: Settings, tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, TWO_CITIES), base)
    assert fleet.keys == ("sf", "oslo")
    sf, oslo = fleet.cities
    assert (sf.shortage_threshold, sf.infer_interval_min, sf.timezone) == (3, 10, None)
    assert (oslo.shortage_threshold, oslo.pipeline_train_days, oslo.timezone) == (1, 14, "Europe/Oslo")
    assert sf.feed_url == "http://127.0.0.1:9/sf/gbfs.json" and oslo.feed_url.endswith("/oslo/gbfs.json")
    for city in fleet.cities:  # one lake, one registry, one endpoint for the whole deployment
        assert (city.lake_uri, city.state_dir, city.serve_port) == (base.lake_uri, base.state_dir, 9001)
    assert fleet.settings_of("oslo") is oslo


def test_resources_bind_each_city_of_the_fleet(base: Settings, tmp_path: Path) -> None:
    resources = Resources.build(base, fleet=load_fleet(write(tmp_path, TWO_CITIES), base))
    contexts = resources.cities()
    assert [c.key for c in contexts] == ["sf", "oslo"]
    assert [c.lake.city for c in contexts] == ["sf", "oslo"]
    assert resources.city("oslo").settings.shortage_threshold == 1
    with pytest.raises(FleetError, match=r"pass --city KEY \(one of sf, oslo\)"):
        resources.city()
    with pytest.raises(FleetError, match=r"unknown city 'paris' in .*fleet.toml: the fleet has sf, oslo"):
        resources.city("paris")


def test_without_a_fleet_file_the_city_setting_is_a_fleet_of_one(base: Settings) -> None:
    resources = Resources.build(base)
    assert resources.fleet == Fleet.of_one(base)
    assert resources.city().settings is base and [c.key for c in resources.cities()] == [base.city]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TWO_CITIES + '\n[[cities]]\nkey = "sf"\nfeed_url = "http://x/gbfs.json"\n', r"city 'sf' appears twice"),
        ('[[cities]]\nkey = "sf"\nfeed_url = "ftp://x/gbfs.json"\n', r"city 'sf': .*feed_url must be an http"),
        (
            '[[cities]]\nkey = "sf"\nfeed_url = "http://x/g.json"\nshortage_treshold = 2\n',
            r"city 'sf': unknown setting 'shortage_treshold'",
        ),
        (
            'horizon = 30\n[[cities]]\nkey = "sf"\nfeed_url = "http://x/g.json"\n',
            r"defaults: unknown setting 'horizon'",
        ),
        (
            '[[cities]]\nkey = "sf"\nfeed_url = "http://x/g.json"\nlake_uri = "/tmp/x"\n',
            r"city 'sf': 'lake_uri' is a deployment setting",
        ),
        ('[[cities]]\nkey = "oslo"\n', r"city 'oslo': feed_url is missing"),
        (
            '[[cities]]\nkey = "oslo"\nfeed_url = "http://x/g.json"\ntimezone = "Mars/Olympus"\n',
            r"city 'oslo': .*IANA time zone",
        ),
        (
            '[[cities]]\nkey = "Oslo City"\nfeed_url = "http://x/g.json"\n',
            r"city 'Oslo City': city: String should match",
        ),
        (
            '[[cities]]\nkey = "sf"\nfeed_url = "http://x/g.json"\nshortage_threshold = -1\n',
            r"city 'sf': shortage_threshold: ",
        ),
        ('[[cities]]\nfeed_url = "http://x/g.json"\n', r"city #1 has no key"),
        ("shortage_threshold = 2\n", r"no cities"),
        ("[[cities]\n", r"not valid TOML"),
    ],
)
def test_a_bad_fleet_file_names_the_file_the_city_and_the_field(
    base: Settings, tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FleetError, match=message) as caught:
        load_fleet(path, base)
    assert str(path) in str(caught.value)


def test_a_missing_fleet_file_is_named(base: Settings, tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"fleet file .*nowhere.toml does not exist"):
        load_fleet(tmp_path / "nowhere.toml", base)


def test_city_and_deployment_settings_are_told_apart() -> None:
    assert is_city_setting("shortage_threshold") and is_city_setting("pipeline_train_days")
    assert is_city_setting("feed_url") and is_city_setting("timezone") and is_city_setting("alert_webhook_url")
    for name in ("lake_uri", "state_dir", "serve_port", "dashboard_port", "mlflow_tracking_uri", "city", "nope"):
        assert not is_city_setting(name)


def test_the_cli_takes_a_fleet_file_and_a_city(base: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bikeshare.cli import app

    fleet = write(tmp_path, TWO_CITIES)
    env = {"BIKESHARE_LAKE_URI": base.lake_uri, "BIKESHARE_STATE_DIR": str(base.state_dir)}
    runner = CliRunner()
    ok = runner.invoke(app, ["--fleet", str(fleet), "--city", "oslo", "alerts", "list"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "no open alerts" in ok.output
    by_env = runner.invoke(app, ["--city", "sf", "alerts", "list"], env={**env, "BIKESHARE_FLEET": str(fleet)})
    assert by_env.exit_code == 0, by_env.output
    for argv, message in (
        (["--fleet", str(fleet), "alerts", "list"], "pass --city KEY (one of sf, oslo)"),
        (["--fleet", str(fleet), "--city", "paris", "alerts", "list"], "unknown city 'paris'"),
        (["--fleet", str(tmp_path / "missing.toml"), "alerts", "list"], "does not exist"),
    ):
        refused = runner.invoke(app, argv, env=env)
        assert refused.exit_code == 2 and message in refused.output, refused.output


def test_a_one_city_command_runs_for_every_city_and_one_failure_stops_none(base: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bikeshare.cli import app

    fleet = write(tmp_path, TWO_CITIES)
    env = {"BIKESHARE_LAKE_URI": base.lake_uri, "BIKESHARE_STATE_DIR": str(base.state_dir)}
    result = CliRunner().invoke(app, ["--fleet", str(fleet), "features", "build"], env=env)
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert out.index("== sf ==") < out.index("no station_status for city 'sf'") < out.index("== oslo ==")
    assert "no station_status for city 'oslo'" in out  # sf's failure did not stop oslo
    one = CliRunner().invoke(app, ["--fleet", str(fleet), "--city", "oslo", "features", "build"], env=env)
    assert one.exit_code == 2 and "== " not in one.output and "city 'oslo'" in one.output
    loop = CliRunner().invoke(app, ["--fleet", str(fleet), "actuals"], env=env)
    assert loop.exit_code == 2 and "bikeshare run --jobs" in " ".join(loop.output.split()), loop.output
