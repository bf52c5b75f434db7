"""A model candidate, registered in one call: train -> log and register -> tag -> drift baselines.

The CLI's ``train`` command, the retraining pipeline and the drills all make a candidate the same
way; only what they tag it with, where its artifacts go and the time its baselines are stamped
with differ. Moving an alias (``staging``, ``production``) is the caller's decision, not part of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from bikeshare.lake.store import Lake
    from bikeshare.monitoring.model_baselines import StoredBaselines
    from bikeshare.settings import Settings
    from bikeshare.training.train import TrainingResult


class CandidateTrainingError(ValueError):
    """The trainer refused the frame (too few rows, one class, a bad window): nothing was logged."""


@dataclass(frozen=True)
class Candidate:
    """A registered model version with its training result and stored baselines."""

    target: str
    name: str
    version: str
    run_id: str
    result: TrainingResult
    baselines: StoredBaselines


def register_candidate(
    frame: pd.DataFrame,
    *,
    target: str,
    lake: Lake,
    client: MlflowClient,
    settings: Settings,
    algo: str = "lightgbm",
    test_start: pd.Timestamp | None = None,
    artifacts_dir: Path | None = None,
    tags: Mapping[str, str] | None = None,
    created_at: datetime | pd.Timestamp | None = None,
) -> Candidate:
    """Train ``target`` on ``frame``, log and register the run, tag the version, store its baselines.

    ``tags`` are set on the new model version; ``created_at`` stamps the baselines (default: now,
    UTC; a replay clock's time in drills). Raises :class:`CandidateTrainingError` when the trainer
    refuses the frame; registry errors (``RegistryUnavailable``) pass through.
    """
    from bikeshare.monitoring.model_baselines import store_baselines, training_baselines
    from bikeshare.registry.client import model_name, reachable, uri_of
    from bikeshare.registry.tracking import log_training_run
    from bikeshare.training.train import train_model
    from bikeshare.utc import to_utc, utc_now

    stamp = utc_now() if created_at is None else to_utc(created_at, what="created_at")  # refused before training
    try:
        result = train_model(
            frame, target=target, settings=settings, algo=algo, test_start=test_start, artifacts_dir=artifacts_dir
        )
    except ValueError as exc:
        raise CandidateTrainingError(str(exc)) from exc
    logged = log_training_run(client=client, result=result, settings=settings, input_example=frame.head(5))
    if logged.version is None:  # pragma: no cover - register=True always registers
        raise RuntimeError("the training run was not registered")
    version = str(logged.version.version)
    name = model_name(settings.city, target)
    if tags:
        with reachable(uri_of(client)):
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, value)
    baselines = training_baselines(frame, bundle=result.bundle, split=result.split, target=target, settings=settings)
    stored = store_baselines(
        lake=lake,
        baselines=baselines,
        city=settings.city,
        model_name=name,
        model_version=version,
        target=target,
        created_at=stamp.to_pydatetime(),
        client=client,
        run_id=logged.run_id,
    )
    return Candidate(target=target, name=name, version=version, run_id=logged.run_id, result=result, baselines=stored)
