"""A drill's own workspace: lake, MLflow store and settings, prepared from the shipped recording.

A drill never touches the user's lake. :func:`prepare_world` backfills the history before the drill
start, trains a small model per target through the real trainer, registers it with its baselines
(:func:`~bikeshare.registry.candidate.register_candidate`) and points ``production`` at it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bikeshare.enums import Alias, Target
from bikeshare.gbfs.recording import Recording
from bikeshare.orchestration.drills.plan import DrillPlan
from bikeshare.profiles import with_profile
from bikeshare.resources import Resources
from bikeshare.settings import Settings


@dataclass(frozen=True)
class DrillWorld:
    """A prepared drill workspace."""

    root: Path
    settings: Settings
    recording: Recording  # what the replay server serves (the full recording)
    model_versions: dict[str, str]  # target -> registered version holding 'production'


def drill_settings(base: Settings, root: Path, *, city: str) -> Settings:
    """The user's settings with the ``drill`` profile (fast retries for a stepped clock), in the workspace.

    Alert sinks (webhook, SMTP), alert rules and thresholds stay as configured.
    """
    return with_profile(base, "drill", city=city, lake_uri=str(root / "lake"), state_dir=root / "state")


def prepare_world(
    root: Path,
    *,
    base_settings: Settings,
    plan: DrillPlan,
    recording: Recording | None = None,
    mlflow_db: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> DrillWorld:
    """Backfill the history before ``plan.start``, train and register a model per target, store baselines.

    ``mlflow_db`` is an initialised MLflow SQLite file to start from (tests pass one to skip the
    store's migrations).
    """
    from bikeshare.features.build import build_features
    from bikeshare.gbfs.recording import default_recording_path
    from bikeshare.ingest.backfill import backfill
    from bikeshare.registry.candidate import register_candidate

    say = progress or (lambda _m: None)
    source = recording or Recording.open(base_settings.recording_path or default_recording_path())
    start = plan.start
    first = start - pd.Timedelta(hours=plan.history_hours)
    if first < source.start or start >= source.end:
        raise ValueError(
            f"drill start {start.isoformat()} needs {plan.history_hours} h of history and a feed after it: "
            f"the recording covers {source.start.isoformat()}..{source.end.isoformat()}"
        )
    root.mkdir(parents=True, exist_ok=True)
    resources = Resources.build(drill_settings(base_settings, root, city=source.city))
    settings, lake = resources.settings, resources.lake
    say(f"backfilling {plan.history_hours} h of history before {start:%Y-%m-%d %H:%M}Z")
    history = source.cut(root / "history", start=first, end=start)
    backfill(recording=history, lake=lake, settings=settings, workers=2, clock=lambda: start)
    train_end = start - pd.Timedelta(minutes=settings.horizon_min + settings.grid_minutes)
    train_start = train_end - pd.Timedelta(hours=plan.train_hours)
    say(f"building features {train_start:%m-%d %H:%M}..{train_end:%m-%d %H:%M}Z and training both targets")
    frame = build_features(lake=lake, start=train_start, end=train_end, settings=settings)
    if mlflow_db is not None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mlflow_db, settings.state_dir / "mlflow.db")
    client = resources.registry()
    versions: dict[str, str] = {}
    for target in map(str, Target):
        candidate = register_candidate(
            frame,
            target=target,
            lake=lake,
            client=client,
            settings=settings,
            artifacts_dir=settings.state_dir / "training" / target,
            created_at=start,
        )
        client.set_registered_model_alias(candidate.name, Alias.PRODUCTION, candidate.version)
        versions[target] = candidate.version
    say(f"production models: {', '.join(f'{t} v{v}' for t, v in versions.items())}")
    return DrillWorld(root=root, settings=settings, recording=source, model_versions=versions)
