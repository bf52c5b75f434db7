"""The loop runner: every job on its own thread and schedule, all on one clock.

Each job sleeps on the clock until its next boundary (:mod:`bikeshare.orchestration.schedule`),
runs, and records the run (status, wall duration, lag on the job clock) in ``job_runs``. A job
that raises is recorded ``failed`` and keeps its schedule; it never stops another job, since each
job has its own thread. A job never overlaps itself: a run that overruns makes the next one late.

This is the one loop of the project: ``bikeshare run`` runs every job on it, and ``bikeshare
ingest``, ``infer``, ``actuals`` and ``monitor`` without ``--once`` run it with one job.

Stopping (``stop`` set by SIGINT/SIGTERM through :func:`~bikeshare.orchestration.signals.stop_on_signals`,
or the clock passing ``until``): no new run starts; a running job is given ``stop_timeout_s`` real
seconds to finish (long jobs see ``stop`` and end early), after which it is abandoned (its thread
is a daemon) and reported; buffered run records are written in either case.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from bikeshare.orchestration.clocks import JobClock
from bikeshare.orchestration.records import JobOutcome, JobRun, JobRunRecorder, RunStatus
from bikeshare.orchestration.schedule import Every, first_due, next_due

log = logging.getLogger(__name__)

# A job is called with the clock time it starts at and the runner's stop event.
JobFn = Callable[[pd.Timestamp, threading.Event], JobOutcome | None]


@dataclass(frozen=True)
class Job:
    """A named job and its schedule."""

    name: str
    every: Every
    run: JobFn
    city: str | None = None
    """The fleet city the job works for (None: the runner's only city)."""

    @property
    def label(self) -> str:
        """The job's name in reports and logs: ``infer@oslo`` in a fleet, ``infer`` alone."""
        return f"{self.name}@{self.city}" if self.city else self.name

    def announcing(self, say: Callable[[str], None]) -> Job:
        """The same job, also passing each run's message to ``say`` (a command printing its runs)."""
        inner = self.run

        def run(now: pd.Timestamp, stop: threading.Event) -> JobOutcome | None:
            outcome = inner(now, stop)
            if outcome is not None and outcome.message:
                say(outcome.message)
            return outcome

        return replace(self, run=run)

    def starting_at_once(self) -> Job:
        """The same job, also run when the runner starts (a one-job command does its first run at once)."""
        return replace(self, every=replace(self.every, at_start=True))


@dataclass
class RunnerReport:
    """What a runner did: runs per job and status, boundaries skipped by overruns, abandoned jobs."""

    runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped_boundaries: Counter[str] = field(default_factory=Counter)
    abandoned: list[str] = field(default_factory=list)
    started_at: pd.Timestamp | None = None
    stopped_at: pd.Timestamp | None = None
    wall_s: float = 0.0

    def count(self, job: str, status: str | None = None) -> int:
        return sum(n for (j, s), n in self.runs.items() if j == job and (status is None or s == status))

    def summary(self) -> str:
        jobs = sorted({j for j, _ in self.runs})
        parts = []
        for job in jobs:
            by_status = ", ".join(f"{n} {s}" for (j, s), n in sorted(self.runs.items()) if j == job and n)
            late = self.skipped_boundaries.get(job, 0)
            parts.append(f"{job}: {by_status}" + (f" ({late} boundaries skipped by overruns)" if late else ""))
        span = (
            f"{self.started_at:%Y-%m-%d %H:%M}Z..{self.stopped_at:%Y-%m-%d %H:%M}Z on the job clock, "
            if self.started_at is not None and self.stopped_at is not None
            else ""
        )
        text = f"runner: {span}{self.wall_s:.0f} s wall; " + "; ".join(parts or ["no runs"])
        if self.abandoned:
            text += f"; abandoned at shutdown: {', '.join(self.abandoned)}"
        return text


class Runner:
    """Runs ``jobs`` on ``clock`` until ``stop`` is set or the clock reaches ``until``."""

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        clock: JobClock,
        recorder: JobRunRecorder,
        stop: threading.Event | None = None,
        until: pd.Timestamp | None = None,
        stop_timeout_s: float = 60.0,
        on_run: Callable[[JobRun], None] | None = None,
    ) -> None:
        names = [job.label for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names repeat: {names}")
        self.jobs = tuple(jobs)
        self.clock = clock
        self.recorder = recorder
        self.stop = stop or threading.Event()  # set by the caller (signals): stop the runner
        self._halt = threading.Event()  # set by the runner: the jobs stop (the caller's event is left alone)
        self.until = until
        self.stop_timeout_s = stop_timeout_s
        self.on_run = on_run
        self.report = RunnerReport()
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}

    def start(self) -> None:
        """Start one thread per job."""
        if self._threads:
            return
        self.report.started_at = self.clock.now()
        self._wall = time.monotonic()
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"job-{job.label}", daemon=True)
            self._threads[job.label] = thread
            thread.start()

    def run(self) -> RunnerReport:
        """Start, wait until stopped (or every job is past ``until``), shut down; the report."""
        self.start()
        try:
            while not self.stop.is_set() and any(t.is_alive() for t in self._threads.values()):
                self.stop.wait(0.1)
        finally:
            self.shutdown()
        return self.report

    def shutdown(self) -> None:
        """Stop scheduling, wait up to ``stop_timeout_s`` for running jobs, flush the run records."""
        self._halt.set()
        deadline = time.monotonic() + self.stop_timeout_s
        for name, thread in self._threads.items():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive() and name not in self.report.abandoned:
                log.warning("job %s did not finish within %.0f s of the stop: abandoned", name, self.stop_timeout_s)
                self.report.abandoned.append(name)
        self.recorder.flush()
        try:
            self.report.stopped_at = self.clock.now()
        except Exception:  # the replay server may already be gone
            self.report.stopped_at = None
        self.report.wall_s = time.monotonic() - getattr(self, "_wall", time.monotonic())

    def _stopping(self) -> bool:
        return self._halt.is_set() or self.stop.is_set()

    def _loop(self, job: Job) -> None:
        try:
            due = first_due(self.clock.now(), job.every)
        except Exception:
            log.exception("job %s cannot read the clock; it does not run", job.label)
            return
        while not self._stopping():
            if self.until is not None and due >= self.until:
                return
            try:
                if not self.clock.wait_until(due, self._halt) or self._stopping():
                    return  # once stopped, no new run starts (not even in the moment before the shutdown)
                started = self.clock.now()
            except Exception:
                log.exception("job %s cannot read the clock; retrying", job.label)
                self._halt.wait(1.0)
                continue
            run = self._run_once(job, scheduled=due, started=started)
            try:
                finished = self.clock.now()
            except Exception:
                finished = run.finished_at
            due, skipped = next_due(due, finished, job.every)
            if skipped:
                with self._lock:
                    self.report.skipped_boundaries[job.label] += skipped

    def _run_once(self, job: Job, *, scheduled: pd.Timestamp, started: pd.Timestamp) -> JobRun:
        t0 = time.monotonic()
        try:
            outcome = job.run(started, self._halt) or JobOutcome()
        except Exception as exc:  # one failing job never stops the others
            log.exception("job %s at %s failed", job.label, started)
            text = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
            outcome = JobOutcome(status=RunStatus.FAILED, error=f"{type(exc).__name__}: {text}".rstrip(": "))
        duration = time.monotonic() - t0
        try:
            finished = self.clock.now()
        except Exception:
            finished = started + pd.Timedelta(seconds=duration)
        run = JobRun.of(
            job.name,
            city=job.city,
            scheduled_at=scheduled,
            started_at=started,
            finished_at=max(finished, started),
            duration_s=duration,
            outcome=outcome,
        )
        with self._lock:
            self.report.runs[(job.label, run.status)] += 1
        self.recorder.add(run)
        if self.on_run is not None:
            try:
                self.on_run(run)
            except Exception:
                log.exception("the on_run callback failed for %s", job.label)
        return run
