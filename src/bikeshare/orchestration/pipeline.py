"""The training pipeline (our SageMaker Pipelines): features -> train both targets -> evaluate ->
register -> gate -> ``staging``. One call is one idempotent run.

1. **Features**: the day partitions that are missing, that were built before their day (and its
   labels' horizon) was complete and can now be completed, or that were built with another
   features schema are (re)built (:func:`stale_feature_days`).
2. **Train** each target on the stored features (the last ``pipeline_train_days`` days, 28 by
   default, streamed by day; unset: all),
   unless a version was already registered for the same data: the *pipeline key* (data window,
   row count, feature version and columns, code commit and training settings; version tag
   ``bikeshare.pipeline_key``). A second run on the same data registers nothing.
3. **Evaluate** against persistence (part of training), **register** the version, store its drift
   baselines (monitoring), then **gate** it for ``staging`` with the registry's promotion (the
   current staging holder is scored on the candidate's test window). A version already refused
   for staging is not gated again.

Exit codes (:attr:`PipelineReport.exit_code`): 0 every target's version holds ``staging``, 1 a
gate refused, 2 no usable data (:class:`PipelineError`), 3 registry unreachable (raised).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from bikeshare.lake.store import Lake, parse_partition_value, partition_value
from bikeshare.lake.tables import FEATURE_VERSION, FEATURES, Grain
from bikeshare.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

PIPELINE_KEY_TAG = "bikeshare.pipeline_key"
PIPELINE_ACTOR = "pipeline"
# Settings that change what training produces from the same rows (part of the pipeline key).
TRAINING_SETTINGS: tuple[str, ...] = (
    "horizon_min",
    "shortage_threshold",
    "grid_minutes",
    "fbeta",
    "test_fraction",
    "validation_fraction",
    "class_weight",
    "train_num_trees",
    "train_learning_rate",
    "train_num_leaves",
    "train_min_rows_per_leaf",
    "train_subsample",
    "train_feature_fraction",
    "train_l2",
    "train_max_bin",
    "refit_on_validation",
    "train_easy_negative_rate",
    "random_seed",
)


class PipelineError(ValueError):
    """The pipeline cannot run on this lake (no status, no labelled features); nothing was registered."""


class Staging:
    """What happened to a target's ``staging`` alias."""

    PROMOTED = "promoted"  # the gate passed, the alias moved
    HELD = "held"  # the version already holds staging
    REFUSED = "refused"  # the gate refused it now
    REFUSED_BEFORE = "refused_before"  # refused by an earlier run: not gated again
    STOPPED = "stopped"  # the run was asked to stop before the gate


@dataclass(frozen=True)
class TargetOutcome:
    """One target's part of a pipeline run."""

    target: str
    model_name: str
    version: str
    trained: bool  # False: an existing version with the same pipeline key was reused
    staging: str
    data_window: tuple[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""

    def line(self) -> str:
        how = "trained and registered" if self.trained else "already registered for this data (not retrained)"
        m = self.metrics
        figures = (
            f"; test PR-AUC {m['all_model_pr_auc']:.4f} (persistence {m['all_baseline_pr_auc']:.4f}), "
            f"onsets {m['onsets_model_pr_auc']:.4f} ({m['onsets_baseline_pr_auc']:.4f}), F1 {m['all_model_f1']:.3f}"
            if {"all_model_pr_auc", "all_baseline_pr_auc", "onsets_model_pr_auc", "all_model_f1"} <= set(m)
            and "onsets_baseline_pr_auc" in m
            else ""
        )
        verb = {
            Staging.PROMOTED: "promoted to staging",
            Staging.HELD: "already holds staging",
            Staging.REFUSED: "REFUSED for staging by the gate",
            Staging.REFUSED_BEFORE: "was refused for staging by an earlier run (not gated again)",
            Staging.STOPPED: "not gated (stop requested)",
        }[self.staging]
        return f"{self.target}: {self.model_name} v{self.version} {how}{figures}; {verb}"


@dataclass(frozen=True)
class PipelineReport:
    """What one pipeline run did."""

    feature_days: tuple[str, ...]  # day partitions (re)built
    train_window: tuple[str, str]  # first and last feature slot trained on (labelled rows)
    targets: dict[str, TargetOutcome]
    duration_s: float
    timings: dict[str, float] = field(default_factory=dict)
    # The multi-horizon forecast model (pipeline_train_forecast); its gate does not set the exit code.
    forecast: TargetOutcome | None = None

    @property
    def exit_code(self) -> int:
        refused = any(t.staging in (Staging.REFUSED, Staging.REFUSED_BEFORE) for t in self.targets.values())
        return 1 if refused else 0

    @property
    def registered(self) -> list[str]:
        return [f"{t.model_name} v{t.version}" for t in self.targets.values() if t.trained]

    def summary(self) -> str:
        days = (
            f"{len(self.feature_days)} feature day(s) built ({self.feature_days[0]}..{self.feature_days[-1]})"
            if self.feature_days
            else "features up to date"
        )
        lines = [f"pipeline: {days}; training window {self.train_window[0]}..{self.train_window[1]}"]
        lines += [f"  {outcome.line()}" for outcome in self.targets.values()]
        if self.forecast is not None:
            lines.append(f"  {self.forecast.line()}")
        lines.append(f"  done in {self.duration_s:.1f} s; exit code {self.exit_code}")
        return "\n".join(lines)

    def details(self) -> dict[str, object]:
        """JSON-able summary (job_runs details of the runner's retrain job)."""
        return {
            "feature_days": list(self.feature_days),
            "train_window": list(self.train_window),
            "targets": {
                t.target: {"version": t.version, "trained": t.trained, "staging": t.staging}
                for t in self.targets.values()
            },
            "exit_code": self.exit_code,
            **(
                {
                    "forecast": {
                        "version": self.forecast.version,
                        "trained": self.forecast.trained,
                        "staging": self.forecast.staging,
                    }
                }
                if self.forecast is not None
                else {}
            ),
        }


# --- 1. features ------------------------------------------------------------------------------


def stale_feature_days(*, lake: Lake, settings: Settings, since: pd.Timestamp | None = None) -> list[str]:
    """UTC days (from the day of ``since``, default the first status) whose features partition must be
    (re)built from the station_status in the lake.

    A day is stale when its partition is missing, when it was written with other columns (another
    feature version), or when its last slots lack labels that the status now held can give (the
    day was built while it, or the horizon after it, was still being recorded).
    """
    from bikeshare.features.build import iter_days, status_span

    city = settings.city
    try:
        first, last = status_span(lake=lake, city=city)
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc
    days = list(iter_days(max(first, since) if since is not None else first, last - pd.Timedelta(microseconds=1)))
    stored = set(lake.partitions(FEATURES, city=city))
    horizon = pd.Timedelta(minutes=settings.horizon_min)
    grid = pd.Timedelta(minutes=settings.grid_minutes)
    out = []
    for dt in days:
        if dt not in stored:
            out.append(dt)
            continue
        files = lake.files(FEATURES, city=city, dts=[dt])
        with lake.fs.open(files[0], "rb") as handle:
            schema = pq.read_schema(handle)
        if schema.names != FEATURES.schema.names:
            out.append(dt)
            continue
        day_end = parse_partition_value(dt) + pd.Timedelta(days=1)
        last_labelled = _last_labelled_slot(lake, files)
        complete = last_labelled is not None and last_labelled >= day_end - grid
        if not complete and (last_labelled is None or last_labelled + grid + horizon <= last):
            out.append(dt)
    return out


def _last_labelled_slot(lake: Lake, files: Sequence[str]) -> pd.Timestamp | None:
    newest: pd.Timestamp | None = None
    for path in files:
        with lake.fs.open(path, "rb") as handle:
            table = pq.read_table(handle, columns=["slot", "y_bikes"])
        frame = table.to_pandas()
        labelled = frame.loc[frame["y_bikes"].notna(), "slot"]
        if len(labelled):
            value = pd.Timestamp(labelled.max())
            newest = value if newest is None or value > newest else newest
    return newest


def build_stale_features(*, lake: Lake, settings: Settings, since: pd.Timestamp | None = None) -> list[str]:
    """Build the stale days (:func:`stale_feature_days`), consecutive days in one call each."""
    from bikeshare.features.build import write_features

    days = stale_feature_days(lake=lake, settings=settings, since=since)
    written: list[str] = []
    for run in _consecutive(days):
        start = parse_partition_value(run[0])
        end = parse_partition_value(run[-1]) + pd.Timedelta(days=1) - pd.Timedelta(minutes=settings.grid_minutes)
        written += write_features(lake=lake, start=start, end=end, settings=settings)
    return written


def _consecutive(days: Sequence[str]) -> list[list[str]]:
    runs: list[list[str]] = []
    for dt in days:
        ts = parse_partition_value(dt)
        if runs and parse_partition_value(runs[-1][-1]) + pd.Timedelta(days=1) == ts:
            runs[-1].append(dt)
        else:
            runs.append([dt])
    return runs


def _training_start(lake: Lake, settings: Settings, end: pd.Timestamp | None) -> pd.Timestamp | None:
    """First day whose features the training uses (None: all days)."""
    from bikeshare.features.build import status_span

    if not settings.pipeline_train_days:
        return None
    if end is None:
        try:
            _, end = status_span(lake=lake, city=settings.city)
        except ValueError as exc:
            raise PipelineError(str(exc)) from exc
    return (end - pd.Timedelta(days=settings.pipeline_train_days)).floor("D")


def training_frame(*, lake: Lake, settings: Settings, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Stored feature rows to train on: the last ``pipeline_train_days`` days up to ``end``, read day by day.

    The window is bounded (28 days by default), so a retrain's memory and time do not grow with the
    lake's age; unset ``pipeline_train_days`` trains on every stored day.
    """
    from bikeshare.features.build import load_features

    dts = lake.partitions(FEATURES, city=settings.city)
    if end is not None:
        dts = [dt for dt in dts if dt <= partition_value(end, Grain.DAY)]
    if not dts:
        raise PipelineError(f"no features for city {settings.city!r} in {lake.root}: ingest or backfill first")
    stop = end if end is not None else parse_partition_value(dts[-1]) + pd.Timedelta(days=1)
    start = stop - pd.Timedelta(days=settings.pipeline_train_days) if settings.pipeline_train_days else None
    frame = load_features(lake=lake, city=settings.city, start=start, end=end)
    if frame.empty:
        raise PipelineError("the stored features hold no rows in the training window")
    return frame


# --- 2. idempotence key -------------------------------------------------------------------------


def pipeline_key(frame: pd.DataFrame, *, target: str, settings: Settings, commit: str) -> tuple[str, tuple[str, str]]:
    """The key of training ``target`` on ``frame`` with these settings and code, and its data window."""
    from bikeshare.training.evaluate import labelled_rows

    rows = labelled_rows(frame, target)
    if rows.empty:
        raise PipelineError(f"no feature row has a known {target} label yet (need {settings.horizon_min} min after it)")
    window = (pd.Timestamp(rows["slot"].min()).isoformat(), pd.Timestamp(rows["slot"].max()).isoformat())
    doc = {
        "target": target,
        "city": settings.city,
        "window": window,
        "rows": len(rows),
        "feature_version": FEATURE_VERSION,
        "feature_columns": FEATURES.schema.names,  # a schema change in an uncommitted tree changes the key too
        "commit": commit,
        "settings": {name: getattr(settings, name) for name in TRAINING_SETTINGS},
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return digest, window


def find_by_key(client: MlflowClient, name: str, key: str) -> str | None:
    """The newest version of ``name`` tagged with pipeline key ``key``."""
    from bikeshare.registry.client import list_versions

    for info in list_versions(client, name):
        if info.tags.get(PIPELINE_KEY_TAG) == key:
            return info.version
    return None


# --- the run ------------------------------------------------------------------------------------


def run_pipeline(
    *,
    lake: Lake,
    client: MlflowClient,
    settings: Settings,
    targets: Sequence[str] = ("bikes", "docks"),
    end: pd.Timestamp | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
    commit: str | None = None,
) -> PipelineReport:
    """One pipeline run (see the module doc). ``end`` limits the training data (default: all stored)."""
    from bikeshare.registry.client import alias_holder, get_version, model_name
    from bikeshare.registry.promotion import lake_window_evaluator, promote, version_audit_tags
    from bikeshare.registry.tracking import git_commit

    say = progress or (lambda _m: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    stop = stop or threading.Event()

    t = time.perf_counter()
    days = build_stale_features(lake=lake, settings=settings, since=_training_start(lake, settings, end))
    timings["features_s"] = time.perf_counter() - t
    say(f"features: {len(days)} day(s) built" + (f" ({days[0]}..{days[-1]})" if days else " (up to date)"))
    frame = training_frame(lake=lake, settings=settings, end=end)
    commit = commit or git_commit()
    outcomes: dict[str, TargetOutcome] = {}
    window: tuple[str, str] = ("", "")
    for target in targets:
        name = model_name(settings.city, target)
        key, window = pipeline_key(frame, target=target, settings=settings, commit=commit)
        existing = find_by_key(client, name, key)
        if existing is not None:
            version, trained = existing, False
            say(f"{target}: v{version} is already registered for this data window and code (key {key})")
        else:
            t = time.perf_counter()
            version = _train_and_register(frame, lake=lake, client=client, settings=settings, target=target, key=key)
            timings[f"train_{target}_s"] = time.perf_counter() - t
            trained = True
            say(f"{target}: trained and registered v{version} in {timings[f'train_{target}_s']:.0f} s")
        info = get_version(client, name, version)
        metrics = _run_metrics(client, info.run_id)
        holder = alias_holder(client, name, "staging")
        refused_before = version_audit_tags(info, "staging").get("action") == "refused"
        message = ""
        if holder is not None and holder.version == version:
            staging = Staging.HELD
        elif refused_before and not trained:
            staging = Staging.REFUSED_BEFORE
        elif stop.is_set():
            staging = Staging.STOPPED
        else:
            t = time.perf_counter()
            outcome = promote(
                client=client,
                lake=lake,
                settings=settings,
                target=target,
                alias="staging",
                version=version,
                note=f"pipeline: data {window[0]}..{window[1]}, key {key}",
                actor=PIPELINE_ACTOR,
                evaluator=lake_window_evaluator(lake=lake, settings=settings),
            )
            timings[f"gate_{target}_s"] = time.perf_counter() - t
            staging = Staging.PROMOTED if outcome.moved else Staging.HELD if outcome.action is None else Staging.REFUSED
            message = outcome.message
            say(f"{target}: {outcome.message.splitlines()[0]}")
        outcomes[target] = TargetOutcome(target, name, version, trained, staging, window, metrics, message)
    forecast = None
    if settings.pipeline_train_forecast and not stop.is_set():
        t = time.perf_counter()
        try:
            forecast = _forecast_step(frame, lake=lake, client=client, settings=settings, commit=commit, say=say)
        except PipelineError as exc:  # e.g. a window too short for the 2-hour horizons: the 30-min models stand
            say(f"forecast: not trained ({exc})")
        timings["forecast_s"] = time.perf_counter() - t
    return PipelineReport(
        feature_days=tuple(days),
        train_window=window,
        targets=outcomes,
        duration_s=time.perf_counter() - started,
        timings=timings,
        forecast=forecast,
    )


FORECAST_SETTINGS: tuple[str, ...] = ("forecast_horizons_min", "forecast_train_max_rows", "forecast_num_trees")


def _forecast_step(
    frame: pd.DataFrame,
    *,
    lake: Lake,
    client: MlflowClient,
    settings: Settings,
    commit: str,
    say: Callable[[str], None],
) -> TargetOutcome:
    """Train (unless registered for the same key), register and gate the forecast model for ``staging``."""
    from bikeshare.registry.client import alias_holder, get_version, reachable, uri_of
    from bikeshare.registry.forecast import forecast_model_name, log_forecast_run, promote_forecast
    from bikeshare.registry.promotion import version_audit_tags
    from bikeshare.training.forecast import train_forecast

    base, window = pipeline_key(frame, target="bikes", settings=settings, commit=commit)
    extra = {name: getattr(settings, name) for name in FORECAST_SETTINGS}
    key = hashlib.sha256(json.dumps([base, extra], sort_keys=True, default=str).encode()).hexdigest()[:20]
    name = forecast_model_name(settings.city)
    version = find_by_key(client, name, key)
    trained = version is None
    if version is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        try:
            result = train_forecast(
                frame, settings=settings, artifacts_dir=settings.state_dir / "training" / f"pipeline-forecast-{stamp}"
            )
        except ValueError as exc:
            raise PipelineError(f"forecast: {exc}") from exc
        logged = log_forecast_run(client=client, result=result, settings=settings, input_example=frame.head(5))
        if logged.version is None:  # pragma: no cover - register=True always registers
            raise RuntimeError("the forecast run was not registered")
        version = str(logged.version.version)
        with reachable(uri_of(client)):
            client.set_model_version_tag(name, version, PIPELINE_KEY_TAG, key)
        say(f"forecast: trained and registered v{version}")
    info = get_version(client, name, version)
    holder = alias_holder(client, name, "staging")
    message = ""
    if holder is not None and holder.version == version:
        staging = Staging.HELD
    elif version_audit_tags(info, "staging").get("action") == "refused" and not trained:
        staging = Staging.REFUSED_BEFORE
    else:
        outcome = promote_forecast(
            client=client, lake=lake, settings=settings, alias="staging", version=version,
            note=f"pipeline: data {window[0]}..{window[1]}, key {key}", actor=PIPELINE_ACTOR,
        )  # fmt: skip
        staging = Staging.PROMOTED if outcome.moved else Staging.HELD if outcome.action is None else Staging.REFUSED
        message = outcome.message
        say(f"forecast: {message}")
    return TargetOutcome(
        "forecast", name, version, trained, staging, window, _run_metrics(client, info.run_id), message
    )


def _train_and_register(
    frame: pd.DataFrame, *, lake: Lake, client: MlflowClient, settings: Settings, target: str, key: str
) -> str:
    from bikeshare.registry.candidate import CandidateTrainingError, register_candidate

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    artifacts = settings.state_dir / "training" / f"pipeline-{settings.city}-{target}-{stamp}"
    try:
        candidate = register_candidate(
            frame,
            target=target,
            lake=lake,
            client=client,
            settings=settings,
            artifacts_dir=artifacts,
            tags={PIPELINE_KEY_TAG: key},
        )
    except CandidateTrainingError as exc:
        raise PipelineError(f"{target}: {exc}") from exc
    return candidate.version


def _run_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    from bikeshare.registry.client import reachable, uri_of

    if not run_id:
        return {}
    with reachable(uri_of(client)):
        return dict(client.get_run(run_id).data.metrics)
