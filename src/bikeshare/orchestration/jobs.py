"""The runner's standard jobs, each a thin adapter from (clock time, stop) to one stage call.

========  ============================  ==========================================================
job       schedule                      stage
========  ============================  ==========================================================
ingest    every ``poll_interval_s``     :func:`~bikeshare.ingest.poller.ingest_once` (HTTP feed)
infer     every ``infer_interval_min``  :func:`~bikeshare.inference.batch.run_inference_batch`
actuals   every ``actuals_interval_min``:func:`~bikeshare.inference.actuals.run_actuals`
monitor   every ``monitor_interval_min``:func:`~bikeshare.monitoring.job.run_monitor`
retrain   every ``retrain_interval_h``  :func:`~bikeshare.orchestration.pipeline.run_pipeline`
plan      every ``rebalance_interval_min`` :func:`~bikeshare.rebalancing.job.plan_at`
compact   every ``compact_interval_min``:func:`~bikeshare.lake.compaction.compact` (closed days)
retention daily                         :func:`~bikeshare.lake.retention.apply_retention`
========  ============================  ==========================================================

Ingest, infer and actuals also run once at start; the others at their boundaries (hourly at :00,
daily at 00:00 UTC). ``bikeshare ingest``, ``infer``, ``actuals`` and ``monitor`` without ``--once``
run one of these jobs (``ingest_job``, ``infer_job``, ``actuals_job``, ``monitor_job``) through
:func:`run_jobs`, the same runner, with their first run at once.

Every job is idempotent: a slot already scored, a prediction already joined,
a plan already stored or a model already registered for the same data is not done again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pandas as pd

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import TableSpec
from bikeshare.orchestration.clocks import JobClock
from bikeshare.orchestration.records import JobOutcome, JobRun, JobRunRecorder, RunStatus
from bikeshare.orchestration.runner import Job, JobFn, Runner, RunnerReport
from bikeshare.orchestration.schedule import Every
from bikeshare.settings import Settings
from bikeshare.utc import to_utc

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from bikeshare.gbfs.client import GbfsClient
    from bikeshare.inference.endpoint_client import EndpointClient
    from bikeshare.lake.compaction import CompactionReport
    from bikeshare.lake.retention import TrainingWindow
    from bikeshare.monitoring.endpoint_metrics import MetricsSource
    from bikeshare.monitoring.rules import RuleSet

JOB_NAMES: tuple[str, ...] = ("ingest", "infer", "actuals", "monitor", "retrain", "plan", "compact", "retention")


@dataclass(frozen=True)
class LoopEndpoints:
    """Where the jobs go over HTTP: the GBFS feed and the model endpoint."""

    feed_url: str
    endpoint_url: str


def check_jobs(names: Sequence[str]) -> tuple[str, ...]:
    """Validate job names (known, no repeats)."""
    unknown = [n for n in names if n not in JOB_NAMES]
    if unknown:
        raise ValueError(f"unknown job(s) {unknown}: expected some of {', '.join(JOB_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"jobs repeat: {list(names)}")
    return tuple(names)


def schedules(settings: Settings) -> dict[str, Every]:
    """Each standard job's schedule from the settings."""
    return {
        "ingest": Every.seconds(settings.poll_interval_s, at_start=True),
        "infer": Every.minutes(settings.infer_interval_min, at_start=True),
        "actuals": Every.minutes(settings.actuals_interval_min, at_start=True),
        "monitor": Every.minutes(settings.monitor_interval_min),
        "retrain": Every(pd.Timedelta(hours=settings.retrain_interval_h)),
        "plan": Every.minutes(settings.rebalance_interval_min),
        "compact": Every.minutes(settings.compact_interval_min),
        "retention": Every(pd.Timedelta(days=1)),
    }


def served_aliases(settings: Settings) -> tuple[str, ...]:
    """The served alias first, then the shadow aliases (``infer_shadow_aliases``, else ``run_shadow_aliases``)."""
    from bikeshare.inference.batch import check_aliases

    shadows = settings.infer_shadow_aliases or settings.run_shadow_aliases
    return check_aliases([settings.serve_alias, *(a for a in shadows if a != settings.serve_alias)])


def standard_jobs(
    *,
    names: Sequence[str],
    settings: Settings,
    lake: Lake,
    clock: JobClock,
    endpoints: LoopEndpoints,
    recorder: JobRunRecorder,
    resources: contextlib.ExitStack,
    registry: Callable[[], MlflowClient] | None = None,
) -> list[Job]:
    """The named jobs, wired to their stages; HTTP clients are closed by ``resources``; ``registry``
    gives the process's MLflow client (``Resources.registry``) to the jobs that need one (retrain,
    retention), which refuse to be built without it."""
    every = schedules(settings)

    def needs_registry(job: str) -> Callable[[], MlflowClient]:
        if registry is None:
            raise ValueError(f"the {job} job needs the registry: pass registry= (Resources.registry)")
        return registry

    builders = {
        "ingest": lambda: _ingest(settings, lake, clock, endpoints.feed_url, resources),
        "infer": lambda: _infer(settings, lake, endpoints.endpoint_url, resources),
        "actuals": lambda: actuals_job(settings=settings, lake=lake),
        "monitor": lambda: _monitor(settings, lake, endpoints.endpoint_url, recorder),
        "retrain": lambda: _retrain(settings, lake, needs_registry("retrain")),
        "plan": lambda: _plan(settings, lake),
        "compact": lambda: compact_job(settings=settings, lake=lake),
        "retention": lambda: retention_job(settings=settings, lake=lake, registry=needs_registry("retention")),
    }
    return [Job(name, every[name], builders[name]()) for name in check_jobs(names)]


class RunClock:
    """The job clock's time at the start of a run, advanced by real seconds within the run.

    On a replay clock at speed ``s`` a second of work inside a run lasts ``s`` virtual seconds, so
    stamping fetch and commit times with the replay clock measures the ingest latency as the
    run's wall time times the speed (2 s of CPU contention at 120x read as a 4-minute data delay).
    Within a run this clock counts wall time once, as a live deployment would see it; the delay
    before the run (poll cadence, the feed's own staleness, a late start) stays on the job clock.
    On the wall clock both are the same.
    """

    def __init__(self, clock: JobClock) -> None:
        self.clock = clock
        self._anchor: tuple[pd.Timestamp, float] | None = None

    def start(self, now: pd.Timestamp) -> None:
        """A run starts at ``now`` on the job clock."""
        self._anchor = (now, time.monotonic())

    def now(self) -> pd.Timestamp:
        if self._anchor is None:
            return self.clock.now()
        at, wall = self._anchor
        return at + pd.Timedelta(microseconds=round((time.monotonic() - wall) * 1e6))


def _ingest(settings: Settings, lake: Lake, clock: JobClock, feed_url: str, resources: contextlib.ExitStack) -> JobFn:
    from bikeshare.gbfs.client import GbfsClient

    run_clock = RunClock(clock)
    client = resources.enter_context(GbfsClient.from_settings(settings, discovery_url=feed_url, utc_now=run_clock.now))
    return ingest_job(settings=settings, lake=lake, client=client, run_clock=run_clock)


def ingest_job(*, settings: Settings, lake: Lake, client: GbfsClient, run_clock: RunClock) -> JobFn:
    """One ingest batch per run, through ``client`` (whose ``utc_now`` is ``run_clock.now``)."""
    from bikeshare.ingest.poller import IngestState, Outcome, ingest_once

    state = IngestState()

    def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        run_clock.start(now)
        outcome = ingest_once(client=client, lake=lake, settings=settings, clock=run_clock.now, state=state)
        details = {
            "outcome": outcome.outcome,
            "rows_written": outcome.rows_written,
            "published_at": outcome.published_at.isoformat() if outcome.published_at is not None else None,
            "ingest_latency_s": outcome.ingest_latency_s,
        }
        if outcome.outcome == Outcome.FETCH_FAILED:
            return JobOutcome(RunStatus.FAILED, details, error=outcome.reason, message=outcome.summary())
        return JobOutcome(RunStatus.OK, details, message=outcome.summary())

    return run


def _infer(settings: Settings, lake: Lake, endpoint_url: str, resources: contextlib.ExitStack) -> JobFn:
    from bikeshare.inference.batch import alias_clients
    from bikeshare.inference.endpoint_client import EndpointClient

    settings = settings.with_values(endpoint_url=endpoint_url)
    aliases = served_aliases(settings)
    client = resources.enter_context(EndpointClient.from_settings(settings))
    routes = {alias: resources.enter_context(c) for alias, c in alias_clients(settings, aliases).items()}
    return infer_job(settings=settings, lake=lake, client=client, aliases=aliases, routes=routes)


def infer_job(
    *,
    settings: Settings,
    lake: Lake,
    client: EndpointClient,
    aliases: Sequence[str],
    routes: Mapping[str, EndpointClient],
) -> JobFn:
    """One inference batch per run: the served alias (first) and its shadows, through ``client``."""
    from bikeshare.inference.batch import run_inference_batch

    def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        record = run_inference_batch(
            lake=lake, endpoint=client, settings=settings, now=now, aliases=aliases, alias_endpoints=routes
        )
        details = {
            "feature_time": record.feature_time.isoformat(),
            "alias": record.alias,
            "rows": record.rows,
            "stations": record.stations_scored,
            "versions": record.model_versions,
            "shadow": {s.alias: s.status for s in record.shadows},
        }
        return JobOutcome(record.status, details, error=record.error, message=record.summary())

    return run


def actuals_job(*, settings: Settings, lake: Lake) -> JobFn:
    """One join of the predictions whose horizon has passed per run."""
    from dataclasses import asdict

    from bikeshare.inference.actuals import run_actuals

    def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        report = run_actuals(lake=lake, settings=settings, now=now)
        status = RunStatus.OK if report.due or report.files_written else RunStatus.SKIPPED
        return JobOutcome(status, asdict(report), message=report.summary())

    return run


def _monitor(settings: Settings, lake: Lake, endpoint_url: str, recorder: JobRunRecorder) -> JobFn:
    from bikeshare.monitoring.job import endpoint_source
    from bikeshare.monitoring.rules import load_rules

    rules = load_rules(settings.alert_rules_path)  # a bad rules file fails at start-up, not hourly
    source = endpoint_source(settings, settings.monitor_endpoint_url or endpoint_url)
    return monitor_job(settings=settings, lake=lake, source=source, rules=rules, recorder=recorder)


def monitor_job(
    *,
    settings: Settings,
    lake: Lake,
    source: MetricsSource | None,
    rules: RuleSet,
    recorder: JobRunRecorder,
) -> JobFn:
    """One monitor evaluation per run (scraping ``source`` unless None), after flushing the run records."""
    from bikeshare.monitoring.job import run_monitor

    def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        recorder.flush()  # the monitor reads job_runs of its window
        result = run_monitor(lake=lake, settings=settings, now=now, endpoint_metrics_source=source, rules=rules)
        details = {
            "run_id": result.run_id,
            "status": result.status,
            "signals": len(result.signals),
            "fired": [e.message for e in result.cycle.fired],
            "alert_events": len(result.cycle.events),
            "notes": list(result.notes),
        }
        return JobOutcome(RunStatus.OK, details, message=result.summary())

    return run


def _retrain(settings: Settings, lake: Lake, registry: Callable[[], MlflowClient]) -> JobFn:
    from bikeshare.orchestration.pipeline import PipelineError, run_pipeline

    def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        try:
            report = run_pipeline(lake=lake, client=registry(), settings=settings, end=now, stop=stop)
        except PipelineError as exc:
            return JobOutcome(RunStatus.SKIPPED, {}, error=str(exc), message=f"retrain skipped: {exc}")
        return JobOutcome(RunStatus.OK, report.details(), message=report.summary())

    return run


def _plan(settings: Settings, lake: Lake) -> JobFn:
    from bikeshare.rebalancing.job import plan_at

    def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        result = plan_at(lake=lake, settings=settings, as_of=now)
        status = RunStatus.SKIPPED if result.plan is None else RunStatus.OK
        return JobOutcome(status, result.details(), error=None, message=str(result.details()))

    return run


def compaction_cutoffs(settings: Settings, now: pd.Timestamp) -> dict[str, list[TableSpec]]:
    """The minute-grain tables by the day compaction stops before, on the clock time ``now``.

    A day is compacted ``compaction_settle_h`` after it closes; inference waits ``actuals_lookback_h``
    as well, because the actuals job reads its files one slot at a time by name.
    """
    from bikeshare.lake.compaction import MINUTE_TABLES
    from bikeshare.lake.tables import INFERENCE, Grain

    out: dict[str, list[TableSpec]] = {}
    for spec in MINUTE_TABLES:
        hours = max(settings.compaction_settle_h, settings.actuals_lookback_h if spec is INFERENCE else 0)
        before = partition_value(now - pd.Timedelta(hours=hours), Grain.DAY)
        out.setdefault(before, []).append(spec)
    return out


def compact_city(*, settings: Settings, lake: Lake, now: pd.Timestamp) -> list[CompactionReport]:
    """Compact the closed days of every minute-grain table of the settings' city (one report per cut-off)."""
    from bikeshare.lake.compaction import compact

    return [
        compact(
            lake, city=settings.city, before=before, tables=specs, remove_after_s=settings.compaction_remove_after_s
        )
        for before, specs in sorted(compaction_cutoffs(settings, now).items())
    ]


def compact_job(*, settings: Settings, lake: Lake) -> JobFn:
    """Compact the closed days of the minute-grain tables per run."""

    def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        reports = compact_city(settings=settings, lake=lake, now=now)
        details = {"runs": [r.to_dict() for r in reports]}
        days = sum(r.days_compacted for r in reports)
        status = RunStatus.OK if days or any(r.files_removed for r in reports) else RunStatus.SKIPPED
        details["files_pending"] = sum(t.files_pending for r in reports for t in r.tables)
        return JobOutcome(status, details, message="; ".join(r.summary() for r in reports))

    return run


def production_windows(client: MlflowClient, *, city: str) -> list[TrainingWindow]:
    """The training data window (``bikeshare.data_start``/``data_end`` tags) of each production model of ``city``."""
    from bikeshare.enums import Target
    from bikeshare.lake.retention import TrainingWindow
    from bikeshare.registry.client import alias_holder, model_name
    from bikeshare.registry.forecast import forecast_model_name
    from bikeshare.registry.tracking import TAG_PREFIX

    windows = []
    for name in [*(model_name(city, str(t)) for t in Target), forecast_model_name(city)]:
        holder = alias_holder(client, name, "production")
        if holder is None:
            continue
        start, end = holder.tags.get(f"{TAG_PREFIX}data_start"), holder.tags.get(f"{TAG_PREFIX}data_end")
        if start and end:
            windows.append(
                TrainingWindow(
                    start=to_utc(pd.Timestamp(start), what="data_start"),
                    end=to_utc(pd.Timestamp(end), what="data_end"),
                    label=f"{name} v{holder.version}",
                )
            )
    return windows


def retention_job(*, settings: Settings, lake: Lake, registry: Callable[[], MlflowClient]) -> JobFn:
    """Delete the partitions past their age per run, keeping the production models' training windows."""
    from bikeshare.lake.retention import apply_retention

    def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
        # an unreachable registry fails the run before anything is deleted
        windows = production_windows(registry(), city=settings.city)
        report = apply_retention(
            lake, city=settings.city, retention_days=settings.retention_days, now=now, windows=windows
        )
        details = {**report.to_dict(), "windows": [w.label for w in windows]}
        status = RunStatus.OK if report.removed else RunStatus.SKIPPED
        return JobOutcome(status, details, message=report.summary())

    return run


def run_loop(
    *,
    settings: Settings,
    lake: Lake,
    clock: JobClock,
    endpoints: LoopEndpoints,
    stop: threading.Event,
    names: Sequence[str] | None = None,
    until: pd.Timestamp | None = None,
    on_run: Callable[[JobRun], None] | None = None,
    fleet: Sequence[Settings] | None = None,
    registry: Callable[[], MlflowClient],
) -> RunnerReport:
    """Run the standard jobs (``names``, default ``run_jobs``) on ``clock`` until ``stop`` or ``until``.

    ``fleet``: the settings of every city (default: ``settings`` alone). With several, each city gets
    its own jobs (``ingest@oslo``, ...) on its own feed (its ``feed_url``; ``endpoints.feed_url`` is
    the feed of a fleet of one), each in its own thread, so a slow or failing city never holds up the
    others; their runs go to each city's ``job_runs``.
    """
    cities = list(fleet) if fleet else [settings]

    def build(recorder: JobRunRecorder, resources: contextlib.ExitStack) -> list[Job]:
        jobs: list[Job] = []
        for city in cities:
            city_jobs = standard_jobs(
                names=city.run_jobs if names is None else names,
                settings=city,
                lake=lake,
                clock=clock,
                endpoints=endpoints if len(cities) == 1 else _city_endpoints(city, endpoints),
                recorder=recorder,
                resources=resources,
                registry=registry,
            )
            jobs += city_jobs if len(cities) == 1 else [replace(job, city=city.city) for job in city_jobs]
        return jobs

    return run_jobs(build, settings=settings, lake=lake, clock=clock, stop=stop, until=until, on_run=on_run)


def _city_endpoints(city: Settings, shared: LoopEndpoints) -> LoopEndpoints:
    if not city.feed_url:
        raise ValueError(f"city {city.city!r} has no feed_url")
    return LoopEndpoints(feed_url=city.feed_url, endpoint_url=shared.endpoint_url)


def run_jobs(
    build: Callable[[JobRunRecorder, contextlib.ExitStack], Sequence[Job]],
    *,
    settings: Settings,
    lake: Lake,
    clock: JobClock,
    stop: threading.Event,
    until: pd.Timestamp | None = None,
    on_run: Callable[[JobRun], None] | None = None,
) -> RunnerReport:
    """Run the jobs ``build(recorder, resources)`` returns on one :class:`Runner` until ``stop`` or ``until``.

    ``recorder`` writes the runs to ``job_runs``; what the jobs enter into ``resources`` is closed after.
    """
    recorder = JobRunRecorder(lake, city=settings.city, flush_s=settings.run_record_flush_s)
    with contextlib.ExitStack() as resources:
        runner = Runner(
            build(recorder, resources),
            clock=clock,
            recorder=recorder,
            stop=stop,
            until=until,
            stop_timeout_s=settings.run_stop_timeout_s,
            on_run=on_run,
        )
        return runner.run()
