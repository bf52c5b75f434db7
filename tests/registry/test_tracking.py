"""Logging a training run to a real MLflow SQLite store, registering it and loading it back."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from bikeshare.registry.client import (
    ModelNotFoundError,
    RegistryUnavailable,
    get_version,
    latest_version,
    load_bundle,
    model_name,
    open_client,
    resolve_alias,
)
from bikeshare.registry.tracking import REPORT_ARTIFACT, git_commit, load_report, log_training_run
from bikeshare.resources import Resources
from bikeshare.settings import Settings

from .synthetic import synthetic_run


def test_run_logs_params_metrics_artifacts_tags_and_model(registry) -> None:
    client, settings = registry.client, registry.settings
    run = synthetic_run(registry.work / "run")

    logged = log_training_run(client=client, result=run, settings=settings, input_example=run.test_frame)

    mlflow_run = client.get_run(logged.run_id)
    assert mlflow_run.info.status == "FINISHED"
    experiment = client.get_experiment(logged.experiment_id)
    assert experiment.name == f"bikeshare-{settings.city}-bikes"
    assert experiment.artifact_location.startswith(settings.artifact_root)
    params = mlflow_run.data.params
    assert params["num_leaves"] == "15"
    assert json.loads(params["features"]) == ["bikes_now", "trend"]
    assert params["bundle.feature_version"] == "test-1"
    metrics = mlflow_run.data.metrics
    assert metrics == pytest.approx(run.report.flat_metrics(), nan_ok=True)
    assert metrics["onsets_model_pr_auc"] > metrics["onsets_baseline_pr_auc"]
    tags = mlflow_run.data.tags
    assert tags["bikeshare.feature_version"] == "test-1"
    assert tags["bikeshare.data_window"] == f"{run.data_window[0]}/{run.data_window[1]}"
    assert tags["bikeshare.test_window"] == f"{run.report.window_start}/{run.report.window_end}"
    assert tags["bikeshare.git_commit"] == git_commit() == tags["mlflow.source.git.commit"]
    artifacts = {a.path for a in client.list_artifacts(logged.run_id)}
    assert {"model_card.md", "pr_curve.png", REPORT_ARTIFACT} <= artifacts
    assert load_report(client, logged.run_id) == run.report

    model = client.get_logged_model(logged.model_id)
    assert model.source_run_id == logged.run_id
    assert model.status.to_proto() == 1 or str(model.status).endswith("READY")
    assert model.metrics and {m.key for m in model.metrics} >= {"all_model_pr_auc"}

    assert logged.version is not None
    assert logged.version.name == model_name(settings.city, "bikes") == f"bikeshare-{settings.city}-bikes"
    assert logged.version.version == "1"
    assert logged.version.run_id == logged.run_id
    assert logged.version.tags["bikeshare.feature_version"] == "test-1"


def test_pyfunc_model_scores_like_the_bundle(registry) -> None:
    import mlflow.pyfunc
    from mlflow.artifacts import download_artifacts

    client, settings = registry.client, registry.settings
    run = synthetic_run(registry.work / "run")
    logged = log_training_run(client=client, result=run, settings=settings, input_example=run.test_frame)

    uri = client.get_model_version_download_uri(logged.version.name, logged.version.version)
    local = Path(download_artifacts(artifact_uri=uri, dst_path=str(registry.work / "model")))
    mlmodel = (local / "MLmodel").read_text()
    assert "signature" in mlmodel and '"name": "trend"' in mlmodel
    assert (local / "input_example.json").is_file()
    requirements = (local / "requirements.txt").read_text().split()
    assert any(r.startswith("lightgbm==") for r in requirements)
    assert any(r.startswith("mlflow==") for r in requirements)
    assert not (local / "python_model.pkl").exists()  # models-from-code, nothing pickled

    pyfunc = mlflow.pyfunc.load_model(str(local))
    frame = run.test_frame.head(50)
    out = pyfunc.predict(frame[["bikes_now", "trend"]])
    assert list(out.columns) == ["probability", "decision"]
    expected = run.bundle.predict_proba(frame[["bikes_now", "trend"]].to_numpy(np.float64))
    np.testing.assert_allclose(out["probability"].to_numpy(), expected)
    assert (out["decision"].to_numpy() == (expected >= run.bundle.meta.decision_threshold)).all()

    with pytest.raises(Exception, match="trend"):
        pyfunc.predict(frame[["bikes_now"]])


def test_versions_numbered_and_bundle_loaded_by_version_or_alias(registry) -> None:
    client, settings = registry.client, registry.settings
    first = log_training_run(client=client, result=synthetic_run(registry.work / "a"), settings=settings)
    second_run = synthetic_run(registry.work / "b", features=("bikes_now", "trend_noisy"), seed=3)
    second = log_training_run(client=client, result=second_run, settings=settings)
    name = model_name(settings.city, "bikes")
    assert (first.version.version, second.version.version) == ("1", "2")
    assert latest_version(client, name).version == "2"

    with pytest.raises(ModelNotFoundError, match="production"):
        resolve_alias(client, name, "production")
    client.set_registered_model_alias(name, "production", "2")
    info = resolve_alias(client, name, "production")
    assert (info.version, info.run_id, info.alias) == ("2", second.run_id, "production")
    assert info.source.startswith(settings.artifact_root)

    bundle, loaded = load_bundle(client, name, "production", registry.work / "cache")
    assert loaded == info
    assert bundle.meta.feature_names == ("bikes_now", "trend_noisy")
    frame = second_run.test_frame[["bikes_now", "trend_noisy"]].to_numpy(np.float64)
    np.testing.assert_allclose(bundle.predict_proba(frame), second_run.bundle.predict_proba(frame))
    cached = registry.work / "cache" / name / "v2" / "bundle.json"
    assert cached.is_file()
    mtime = cached.stat().st_mtime_ns
    load_bundle(client, name, "2", registry.work / "cache")
    assert cached.stat().st_mtime_ns == mtime  # reused, not downloaded again

    older, _ = load_bundle(client, name, "1", registry.work / "cache")
    assert older.meta.feature_names == ("bikes_now", "trend")
    with pytest.raises(ModelNotFoundError, match="version 9"):
        get_version(client, name, "9")
    with pytest.raises(ModelNotFoundError, match="no version"):
        latest_version(client, model_name(settings.city, "docks"))


def test_failed_logging_marks_the_run_failed(registry) -> None:
    run = synthetic_run(registry.work / "run")
    run.artifacts["pr_curve"].unlink()
    with pytest.raises(FileNotFoundError, match="pr_curve"):
        log_training_run(client=registry.client, result=run, settings=registry.settings)
    experiment = registry.client.get_experiment_by_name(f"bikeshare-{registry.settings.city}-bikes")
    runs = registry.client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_unreachable_server_names_the_uri(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(
        state_dir=tmp_path,
        mlflow_tracking_uri=f"http://user:secret@127.0.0.1:{port}",
        mlflow_http_max_retries=0,
        mlflow_http_timeout_s=2,
    )
    with pytest.raises(RegistryUnavailable, match=f"127.0.0.1:{port}") as caught:
        Resources.build(settings).registry()  # sets the MLflow retry environment once, then opens
    assert "secret" not in str(caught.value)


def test_sqlite_store_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings = Settings(state_dir=blocker / "state")
    with pytest.raises(RegistryUnavailable, match="a-file"):
        open_client(settings)


def test_git_commit_outside_a_checkout(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
    commit = git_commit()
    assert commit == "unknown" or (len(commit) == 40 and int(commit, 16) >= 0)


@pytest.mark.parametrize("forecast", [False, True])
def test_the_model_code_imports_without_the_installed_package(tmp_path: Path, forecast: bool) -> None:
    """The copy shipped inside an MLflow model loads with only itself on the path (as `mlflow models serve`)."""
    import subprocess
    import sys

    from bikeshare.registry.tracking import write_model_code

    _entry, package = write_model_code(tmp_path / "code", forecast=forecast)
    module = "bikeshare.registry.forecast_pyfunc" if forecast else "bikeshare.registry.pyfunc_model"
    # -S: no site-packages .pth, so the project's own src is not importable; numpy and pandas come from PYTHONPATH
    import numpy
    import pandas

    deps = sorted({str(Path(m.__file__).parents[1]) for m in (numpy, pandas)})
    code = (
        f"import sys; sys.path[:0] = [{str(package.parent)!r}]; "
        f"import {module}; import bikeshare; print(bikeshare.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": ":".join(deps)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(package))
