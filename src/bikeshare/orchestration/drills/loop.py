"""The drill's loop: the runner's jobs on a paused replay clock, stepped one replay minute at a time.

The :class:`~bikeshare.orchestration.runner.Runner` gives every job its own thread that sleeps on the
clock, so jobs due at the same time run concurrently, in any order. A drill on a stepped clock needs
the opposite: everything due at a replay minute has run, in order (the ingest before the inference
that reads it, both before the monitor evaluation), before it injects a fault or steps on. So this
loop keeps the runner's pieces (:class:`~bikeshare.orchestration.runner.Job` and
:class:`~bikeshare.orchestration.schedule.Every` with ``first_due``/``next_due``, :class:`JobRun`
records, the standard ``infer`` and ``actuals`` jobs of :mod:`bikeshare.orchestration.jobs`) and
runs the due jobs in order on the caller's thread.

The ingest is the drill's own job: its circuit breaker and retries count replay seconds (the
standard job's breaker waits ``breaker_reset_s`` real seconds, hours of a stepped replay).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import httpx
import pandas as pd

from bikeshare.lake.store import Lake
from bikeshare.monitoring.job import MonitorResult, run_monitor
from bikeshare.orchestration.records import JobOutcome, JobRun, JobRunRecorder, RunStatus
from bikeshare.orchestration.runner import Job
from bikeshare.orchestration.schedule import Every, first_due, next_due
from bikeshare.settings import Settings

log = logging.getLogger(__name__)

STEP = pd.Timedelta(minutes=1)


class ReplayLoop:
    """The loop's jobs on a paused replay clock, stepped one replay minute at a time.

    Each :meth:`step` sets the clock one minute on and runs the jobs due then, in order: ``ingest``
    every minute; with an endpoint, ``probe`` (``probes_per_min`` small scoring requests: client
    traffic) every minute, and the standard ``infer`` and ``actuals`` jobs at every
    ``infer_interval_min`` boundary. :meth:`monitor` runs the monitor at the current replay time.
    ``stop`` (the caller's, e.g. set by a signal) is handed to every job and ends :meth:`advance`.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        lake: Lake,
        replay: Any,
        feed_url: str,
        endpoint_url: str | None = None,
        probes_per_min: int = 0,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.lake = lake
        self.replay = replay
        self.clock = replay.clock
        self.feed_url = feed_url
        self.probes_per_min = probes_per_min
        self.stop = stop or threading.Event()
        self.runs: list[JobRun] = []
        self.run_settings = settings
        self.source: Any = None
        self._feed = self._feed_client(feed_url)
        self._ingest = Job("ingest", Every(STEP), self._ingest_job())
        self._endpoint_jobs: list[Job] = []
        self._endpoint_resources = contextlib.ExitStack()
        self._due: dict[str, pd.Timestamp] = {}
        self._probe: tuple[bytes, int] | None = None
        self._schedule(self._ingest)
        self.set_endpoint(endpoint_url)

    @property
    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.clock.now())

    @property
    def jobs(self) -> tuple[Job, ...]:
        """The jobs in the order a step runs them."""
        return (self._ingest, *self._endpoint_jobs)

    def set_endpoint(self, url: str | None) -> None:
        """Score through (and scrape) the endpoint at ``url``; None: no inference, no scraping."""
        from bikeshare.inference.endpoint_client import EndpointClient
        from bikeshare.monitoring.job import endpoint_source
        from bikeshare.orchestration.jobs import LoopEndpoints, standard_jobs

        self._endpoint_resources.close()
        self._endpoint_resources = contextlib.ExitStack()
        self._endpoint_jobs = []
        self.run_settings = self.settings.with_values(endpoint_url=url)
        self.source = endpoint_source(self.settings, url) if url else None
        if not url:
            return
        every_batch = Every.minutes(self.settings.infer_interval_min)
        if self.probes_per_min:
            if self._probe is None:
                self._probe = _probe_body(self.lake, settings=self.settings, at=self.now)
            client = self._endpoint_resources.enter_context(
                EndpointClient.from_settings(self.run_settings, sleep=lambda _s: None)
            )
            self._endpoint_jobs.append(Job("probe", Every(STEP), self._probe_job(client)))
        standard = standard_jobs(
            names=["infer", "actuals"],
            settings=self.settings,
            lake=self.lake,
            clock=self.clock,
            endpoints=LoopEndpoints(feed_url=self.feed_url, endpoint_url=url),
            recorder=JobRunRecorder(self.lake, city=self.settings.city),  # only the monitor job writes runs
            resources=self._endpoint_resources,
        )
        # inference and the actuals join run together, on the inference boundaries (as the drill times them)
        self._endpoint_jobs.extend(Job(job.name, every_batch, job.run) for job in standard)
        for job in self._endpoint_jobs:
            self._schedule(job)

    def step(self) -> pd.Timestamp:
        """One replay minute of the loop; returns the new replay time."""
        now = pd.Timestamp(self.clock.set(self.now.floor("min") + STEP))
        for job in self.jobs:
            due = self._due[job.name]
            if now < due:
                continue
            self._run(job, scheduled=due, now=now)
            self._due[job.name], _ = next_due(due, now, job.every)
        return now

    def advance(self, minutes: int) -> pd.Timestamp:
        """``minutes`` steps, fewer when ``stop`` is set."""
        for _ in range(minutes):
            if self.stop.is_set():
                break
            self.step()
        return self.now

    def monitor(self, **kwargs: Any) -> MonitorResult:
        """:func:`~bikeshare.monitoring.job.run_monitor` at the replay time (endpoint scraped when set)."""
        return run_monitor(
            lake=self.lake,
            settings=self.run_settings,
            now=self.now,
            endpoint_metrics_source=self.source,
            **kwargs,
        )

    def close(self) -> None:
        self._feed.close()
        self._endpoint_resources.close()

    # ---- internals ------------------------------------------------------------------------------

    def _schedule(self, job: Job) -> None:
        """A job first runs at its first boundary after the current replay time (the next steps)."""
        self._due[job.name] = first_due(self.now + pd.Timedelta(microseconds=1), job.every)

    def _run(self, job: Job, *, scheduled: pd.Timestamp, now: pd.Timestamp) -> None:
        began = time.monotonic()
        outcome = job.run(now, self.stop) or JobOutcome()
        run = JobRun.of(
            job.name,
            scheduled_at=scheduled,
            started_at=now,
            finished_at=now,  # the replay clock stands still while a step's jobs run
            duration_s=time.monotonic() - began,
            outcome=outcome,
        )
        self.runs.append(run)

    def _replay_seconds(self) -> float:
        return float(self.clock.now().timestamp())

    def _feed_client(self, feed_url: str) -> Any:
        from bikeshare.gbfs.client import CircuitBreaker, GbfsClient, RetryPolicy

        return GbfsClient(
            feed_url,
            http=httpx.Client(timeout=self.settings.http_timeout_s, follow_redirects=True),
            retry=RetryPolicy.from_settings(self.settings),
            breaker=CircuitBreaker.from_settings(self.settings, clock=self._replay_seconds),
            sleep=lambda _s: None,
            clock=self._replay_seconds,
            utc_now=self.clock.now,
            owns_http=True,
        )

    def _ingest_job(self) -> Any:
        from bikeshare.ingest.poller import IngestState, Outcome, ingest_once

        state = IngestState()

        def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
            outcome = ingest_once(
                client=self._feed, lake=self.lake, settings=self.settings, clock=self.clock.now, state=state
            )
            status = RunStatus.FAILED if outcome.outcome == Outcome.FETCH_FAILED else RunStatus.OK
            return JobOutcome(status, {"outcome": outcome.outcome}, error=outcome.reason, message=outcome.summary())

        return run

    def _probe_job(self, client: Any) -> Any:
        def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome:
            if self._probe is None:
                return JobOutcome(RunStatus.SKIPPED, message="no probe body")
            failed = _send_probes(client, self._probe, count=self.probes_per_min)
            return JobOutcome(RunStatus.OK, {"sent": self.probes_per_min, "failed": failed})

        return run


def _probe_body(lake: Lake, *, settings: Settings, at: pd.Timestamp, rows: int = 16) -> tuple[bytes, int] | None:
    """A small /invocations body (feature rows of a few stations at ``at``) for client traffic."""
    from bikeshare.features.build import online_features
    from bikeshare.inference.batch import feature_matrix, model_input_columns
    from bikeshare.inference.endpoint_client import split_payload

    features = online_features(lake=lake, at=at, settings=settings).head(rows)
    if features.empty:
        log.warning("no feature rows at %s: the drill sends no probe traffic", at)
        return None
    columns = model_input_columns()
    ids = features["station_id"].astype(str).tolist()
    return split_payload(ids, columns, feature_matrix(features, columns)), len(ids)


def _send_probes(client: Any, probe: tuple[bytes, int], *, count: int) -> int:
    """Send ``count`` probe requests; how many failed."""
    from bikeshare.inference.endpoint_client import EndpointError

    body, rows = probe
    failed = 0
    for _ in range(count):
        try:
            client.invoke(body, rows=rows, alias="production")
        except EndpointError as exc:  # the endpoint's errors are what the monitor counts, not the drill's
            failed += 1
            log.debug("probe failed: %s", exc)
    return failed
