"""Logging a training run to MLflow and registering its model.

One experiment per city and target. A run carries the training params, the evaluation metrics
(:meth:`EvaluationReport.flat_metrics`), the plots and model card the trainer wrote, the report
itself as JSON, and the model: an MLflow pyfunc wrapping the bundle folder, logged as an MLflow 3
LoggedModel with an explicit signature, input example and pinned pip requirements (no inference).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from bikeshare.registry.client import (
    BUNDLE_ARTIFACT,
    ModelVersionInfo,
    experiment_name,
    get_version,
    model_name,
    reachable,
    uri_of,
)
from bikeshare.training.bundle import ModelBundle
from bikeshare.training.report import EvaluationReport

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from bikeshare.settings import Settings

REPORT_ARTIFACT = "evaluation_report.json"
MODEL_NAME_IN_RUN = "model"
TAG_PREFIX = "bikeshare."
UNKNOWN_COMMIT = "unknown"


class TrainingRunLike(Protocol):
    """What :func:`log_training_run` reads from a training result (``training.TrainingResult``)."""

    @property
    def bundle(self) -> ModelBundle: ...

    @property
    def report(self) -> EvaluationReport: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    @property
    def artifacts(self) -> Mapping[str, Path]:
        """Artifact name -> file (PR curve, calibration curve, confusion matrix, importance, model card)."""
        ...

    @property
    def data_window(self) -> tuple[str, str]:
        """First and last slot (ISO UTC) of all the data the run used."""
        ...


@dataclass(frozen=True)
class LoggedRun:
    experiment_id: str
    run_id: str
    model_id: str
    model_uri: str  # models:/<model_id>
    version: ModelVersionInfo | None  # the registered version, when registered


def git_commit(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the checkout holding this package, or ``"unknown"``."""
    git = shutil.which("git")
    if git is None:
        return UNKNOWN_COMMIT
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [git, "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_COMMIT
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else UNKNOWN_COMMIT


def pip_requirements(algo: str) -> list[str]:
    """Pinned requirements of the pyfunc model, read from the installed distributions."""
    booster = {"lightgbm": "lightgbm", "xgboost": "xgboost-cpu"}.get(algo, algo)
    out = []
    for dist in ("mlflow", "cloudpickle", "numpy", "pandas", booster):
        try:
            out.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(dist)
    return out


def is_embedded(uri: str) -> bool:
    """True for stores this process writes itself (SQLite, plain folders) rather than a server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def ensure_experiment(client: MlflowClient, name: str, *, settings: Settings) -> str:
    """The id of experiment ``name``, created (artifacts under ``settings.artifact_root``) or restored."""
    from mlflow.exceptions import MlflowException

    with reachable(uri_of(client)):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        location = f"{settings.artifact_root}/{name}" if is_embedded(settings.tracking_uri) else None
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            again = client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)


def run_tags(result: TrainingRunLike, *, city: str, commit: str) -> dict[str, str]:
    meta = result.bundle.meta
    start, end = result.data_window
    return {
        f"{TAG_PREFIX}city": city,
        f"{TAG_PREFIX}target": meta.target,
        f"{TAG_PREFIX}algo": meta.algo,
        f"{TAG_PREFIX}feature_version": meta.feature_version,
        f"{TAG_PREFIX}data_window": f"{start}/{end}",
        f"{TAG_PREFIX}data_start": str(start),
        f"{TAG_PREFIX}data_end": str(end),
        f"{TAG_PREFIX}test_window": f"{result.report.window_start}/{result.report.window_end}",
        f"{TAG_PREFIX}git_commit": commit,
        "mlflow.source.git.commit": commit,
    }


def run_params(result: TrainingRunLike) -> dict[str, str]:
    """Trainer params plus the bundle's own facts (``bundle.*``), as MLflow strings."""
    meta = result.bundle.meta
    params: dict[str, Any] = dict(result.params)
    params.update(
        {
            "bundle.algo": meta.algo,
            "bundle.target": meta.target,
            "bundle.horizon_min": meta.horizon_min,
            "bundle.shortage_threshold": meta.shortage_threshold,
            "bundle.decision_threshold": meta.decision_threshold,
            "bundle.n_features": len(meta.feature_names),
            "bundle.feature_version": meta.feature_version,
        }
    )
    return {str(k): _param_str(v) for k, v in params.items()}


def _param_str(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text[:6000]


def example_rows(bundle: ModelBundle, frame: pd.DataFrame | None, *, rows: int = 5) -> pd.DataFrame:
    """A few feature rows for the model's input example (zeros when no frame is given)."""
    names = list(bundle.meta.feature_names)
    if frame is None or frame.empty:
        return pd.DataFrame(np.zeros((1, len(names))), columns=names)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"input example lacks feature columns {missing}")
    return frame[names].head(rows).astype("float64").reset_index(drop=True)


MODEL_CODE = """\"\"\"MLflow models-from-code entry: the bundle pyfunc (no pickled Python objects).\"\"\"

import mlflow.models

from bikeshare.registry.pyfunc_model import BundlePyfunc

mlflow.models.set_model(BundlePyfunc())
"""
# The multi-horizon forecast bundle (training/forecast_bundle.py) has its own pyfunc.
FORECAST_MODEL_CODE = MODEL_CODE.replace(
    "pyfunc_model import BundlePyfunc", "forecast_pyfunc import ForecastPyfunc"
).replace("BundlePyfunc()", "ForecastPyfunc()")


def write_model_code(folder: Path, *, forecast: bool = False) -> tuple[Path, Path]:
    """The models-from-code entry file and a minimal ``bikeshare`` package it imports.

    Only the pyfunc wrapper, the bundle module and the enums it imports are copied, so a logged
    model scores with numpy, pandas, the booster library and mlflow alone.
    """
    import bikeshare.enums as enums_module
    import bikeshare.registry.forecast_pyfunc as forecast_pyfunc_module
    import bikeshare.registry.pyfunc_model as pyfunc_module
    import bikeshare.training.bundle as bundle_module
    import bikeshare.training.forecast_bundle as forecast_bundle_module

    package = folder / "bikeshare"
    for sub in ("", "training", "registry"):
        (package / sub).mkdir(parents=True, exist_ok=True)
        (package / sub / "__init__.py").write_text('"""Minimal copy shipped inside an MLflow model."""\n')
    # the bundle's own imports travel with it: a model served without our package must load
    shutil.copyfile(str(enums_module.__file__), package / "enums.py")
    shutil.copyfile(str(bundle_module.__file__), package / "training" / "bundle.py")
    shutil.copyfile(str(pyfunc_module.__file__), package / "registry" / "pyfunc_model.py")
    if forecast:
        shutil.copyfile(str(forecast_bundle_module.__file__), package / "training" / "forecast_bundle.py")
        shutil.copyfile(str(forecast_pyfunc_module.__file__), package / "registry" / "forecast_pyfunc.py")
    entry = folder / "bundle_model.py"
    entry.write_text(FORECAST_MODEL_CODE if forecast else MODEL_CODE)
    return entry, package


def save_pyfunc(
    bundle: ModelBundle, path: Path, *, input_example: pd.DataFrame, mlflow_model: Any | None = None
) -> Path:
    """Save the bundle as an MLflow pyfunc model folder at ``path`` (which must not exist)."""
    import mlflow.pyfunc

    from bikeshare.registry.forecast_pyfunc import forecast_signature
    from bikeshare.registry.pyfunc_model import signature_for

    forecast = bundle.meta.target == "forecast"
    signature = (forecast_signature if forecast else signature_for)(bundle.meta.feature_names)
    with tempfile.TemporaryDirectory(prefix="bikeshare-model-") as tmp:
        bundle_dir = bundle.save(Path(tmp) / BUNDLE_ARTIFACT)
        entry, package = write_model_code(Path(tmp) / "code", forecast=forecast)
        mlflow.pyfunc.save_model(
            path=str(path),
            mlflow_model=mlflow_model,
            python_model=str(entry),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            code_paths=[str(package)],
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements(bundle.meta.algo),
        )
    return path


def log_training_run(
    *,
    client: MlflowClient,
    result: TrainingRunLike,
    settings: Settings,
    input_example: pd.DataFrame | None = None,
    register: bool = True,
    run_name: str | None = None,
    commit: str | None = None,
) -> LoggedRun:
    """Log one training run (params, metrics, artifacts, report, pyfunc model, tags); register it.

    ``input_example`` is a frame holding the bundle's feature columns (a few rows are kept).
    The run ends FINISHED, or FAILED if anything here raised (and the error propagates).
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param
    from mlflow.models import Model

    meta = result.bundle.meta
    name = experiment_name(settings.city, meta.target)
    experiment_id = ensure_experiment(client, name, settings=settings)
    tags = run_tags(result, city=settings.city, commit=commit or git_commit())
    example = example_rows(result.bundle, input_example)
    with reachable(uri_of(client)):
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    try:
        with reachable(uri_of(client)):
            params = [Param(k, v) for k, v in run_params(result).items()]
            for i in range(0, len(params), 100):
                client.log_batch(run_id, params=params[i : i + 100])
            logged = client.create_logged_model(
                experiment_id,
                name=MODEL_NAME_IN_RUN,
                source_run_id=run_id,
                tags={**tags, "mlflow.modelFlavor": "python_function"},
                params=run_params(result),
                model_type="bikeshare-bundle",
            )
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
            now = int(time.time() * 1000)
            metrics = [
                Metric(key, float(value), now, 0, model_id=logged.model_id, run_id=run_id)
                for key, value in result.report.flat_metrics().items()
            ]
            for i in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[i : i + 1000])
            for artifact_name, path in sorted(result.artifacts.items()):
                if not Path(path).is_file():
                    raise FileNotFoundError(f"artifact {artifact_name!r}: {path} does not exist")
                client.log_artifact(run_id, str(path))
            client.log_dict(run_id, result.report.to_dict(), REPORT_ARTIFACT)
            with tempfile.TemporaryDirectory(prefix="bikeshare-mlflow-") as tmp:
                mlflow_model = Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                )
                local = save_pyfunc(
                    result.bundle, Path(tmp) / "model", input_example=example, mlflow_model=mlflow_model
                )
                client.log_model_artifacts(logged.model_id, str(local))
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
            version = (
                register_model(
                    client,
                    logged_model_id=logged.model_id,
                    source=logged.artifact_location,
                    run_id=run_id,
                    result=result,
                    settings=settings,
                    tags=tags,
                )
                if register
                else None
            )
            client.set_terminated(run_id, "FINISHED")
    except BaseException:
        with contextlib.suppress(Exception):  # keep the original error if the store is gone too
            client.set_terminated(run_id, "FAILED")
        raise
    return LoggedRun(
        experiment_id=experiment_id,
        run_id=run_id,
        model_id=logged.model_id,
        model_uri=f"models:/{logged.model_id}",
        version=version,
    )


def register_model(
    client: MlflowClient,
    *,
    logged_model_id: str,
    source: str,
    run_id: str,
    result: TrainingRunLike,
    settings: Settings,
    tags: Mapping[str, str],
) -> ModelVersionInfo:
    """Add the logged model as a new version of ``bikeshare-<city>-<target>`` (created on first use).

    ``source`` is the logged model's artifact location: the SQL registry would otherwise resolve a
    ``models:/<model_id>`` source through MLflow's process-wide tracking URI, not this client's.
    """
    from mlflow.exceptions import MlflowException

    meta = result.bundle.meta
    name = model_name(settings.city, meta.target)
    with reachable(uri_of(client)):
        try:
            client.create_registered_model(
                name,
                tags={f"{TAG_PREFIX}city": settings.city, f"{TAG_PREFIX}target": meta.target},
                description=(
                    f"Multi-horizon forecasts (bikes, 80% band, shortage probabilities) of {settings.city} stations."
                    if meta.target == "forecast"
                    else f"Shortage of {meta.target} within {meta.horizon_min} min at {settings.city} stations."
                ),
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        created = client.create_model_version(
            name,
            source=source,
            run_id=run_id,
            tags=dict(tags),
            model_id=logged_model_id,
        )
    return get_version(client, name, str(created.version))


def load_report(client: MlflowClient, run_id: str) -> EvaluationReport:
    """The :class:`EvaluationReport` a run logged (``evaluation_report.json``)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="bikeshare-report-") as tmp:
        try:
            with reachable(uri_of(client)):
                local = client.download_artifacts(run_id, REPORT_ARTIFACT, tmp)
        except (MlflowException, FileNotFoundError) as exc:
            raise FileNotFoundError(f"run {run_id} has no readable {REPORT_ARTIFACT}: {exc}") from exc
        return EvaluationReport.from_dict(json.loads(Path(local).read_text()))
