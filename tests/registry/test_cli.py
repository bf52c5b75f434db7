"""`bikeshare promote | rollback | models` end to end: the real CLI on the shared MLflow store."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.registry.client import model_name, resolve_alias
from bikeshare.registry.promotion import promote
from bikeshare.registry.tracking import log_training_run

from .synthetic import evaluate, station_frame, synthetic_run


@pytest.fixture
def cli(registry):
    env = {
        "BIKESHARE_CITY": registry.settings.city,
        "BIKESHARE_STATE_DIR": str(registry.settings.state_dir),
        "BIKESHARE_LAKE_URI": registry.settings.lake_uri,
        "BIKESHARE_WEATHER_ENABLED": "false",
        "BIKESHARE_STAGING_MIN_ONLINE_HOURS": "0",
    }
    runner = CliRunner()

    def invoke(*args: str, **extra_env: str):
        return runner.invoke(app, list(args), env={**env, **extra_env})

    return invoke


def log(registry, folder: str, **kwargs) -> str:
    run = synthetic_run(registry.work / folder, **kwargs)
    return log_training_run(client=registry.client, result=run, settings=registry.settings).version.version


def test_promote_then_refuse_with_exit_code(registry, cli) -> None:
    good = log(registry, "good")
    result = cli("promote", "--target", "bikes", "--to", "staging", "--note", "nightly", "--actor", "ci")
    assert result.exit_code == 0, result.output
    assert f"promoted bikeshare-{registry.settings.city}-bikes v{good} to 'staging'" in result.output
    assert "PASS beats_persistence_onsets" in result.output
    name = model_name(registry.settings.city, "bikes")
    assert resolve_alias(registry.client, name, "staging").version == good

    bad = log(registry, "bad", shuffle_labels=True)
    result = cli("promote", "--target", "bikes", "--to", "production", "--version", bad, "--note", "try")
    assert result.exit_code == 1, result.output
    assert "failed checks: " in result.output and "beats_persistence_all" in result.output
    assert "FAIL beats_persistence_onsets" in result.output

    listed = cli("models", "list", "--target", "bikes")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert "staging_gate" in lines[0] and "production_gate" in lines[0]
    assert lines[1].split()[0] == bad and "fail" in lines[1]
    assert lines[2].split()[:2] == [good, "staging"]

    history = cli("models", "history")
    assert history.exit_code == 0
    rows = history.output.splitlines()[1:]
    assert len(rows) == 2 and " promote " in rows[0] and " refused " in rows[1]
    assert "ci" in rows[0] and "nightly" in rows[0]


def test_rollback_command(registry, cli) -> None:
    first, second = log(registry, "a"), log(registry, "b", seed=4)
    result = cli("rollback", "--target", "bikes", "--to", "production")
    assert result.exit_code == 2 and "nothing to roll back" in result.output

    lenient = registry.settings.model_copy(update={"gate_max_holder_drop": 1.0})
    frame = station_frame(2000, seed=99, start="2026-03-20")
    for version in (first, second):
        outcome = promote(
            client=registry.client, lake=registry.lake, settings=lenient, target="bikes", alias="production",
            note="", version=version, evaluator=lambda bundle, report: evaluate(bundle, frame),
        )  # fmt: skip
        assert outcome.moved, outcome.message

    result = cli("rollback", "--target", "bikes", "--to", "production", "--note", "pager", "--actor", "oncall")
    assert result.exit_code == 0, result.output
    assert f"rolled back from v{second} to v{first}" in result.output
    assert resolve_alias(registry.client, model_name(registry.settings.city, "bikes"), "production").version == first
    result = cli("rollback", "--target", "bikes", "--to", "production")
    assert result.exit_code == 2 and "no previous one" in result.output


def test_bad_arguments_and_unreachable_registry(registry, cli) -> None:
    result = cli("promote", "--target", "bikes", "--to", "canary", "--note", "x")
    assert result.exit_code == 2 and "canary" in result.output
    result = cli("promote", "--target", "scooters", "--to", "staging", "--note", "x")
    assert result.exit_code == 2 and "scooters" in result.output
    result = cli("promote", "--target", "docks", "--to", "staging", "--note", "x")
    assert result.exit_code == 2 and "no version" in result.output

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = cli(
        "promote", "--target", "bikes", "--to", "staging", "--note", "x",
        BIKESHARE_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", BIKESHARE_MLFLOW_HTTP_MAX_RETRIES="0",
    )  # fmt: skip
    assert result.exit_code == 3
    assert f"MLflow registry at http://127.0.0.1:{port} is unavailable" in result.output
