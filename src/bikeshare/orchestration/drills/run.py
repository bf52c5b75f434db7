"""Run a drill: the loop on a paused replay clock with the plan's fault, measured end to end.

:func:`run_drill` serves the recording from the drill start and steps the clock one minute at a
time (:class:`~bikeshare.orchestration.drills.loop.ReplayLoop`), with the monitor every
``cycle_min``. The fault starts one replay minute after a monitor evaluation and stays until the
expected alert fired (or ``max_cycles`` passed); then it is cleared and the drill runs until the
alert resolves.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from bikeshare.monitoring.alerts import AlertEvent
from bikeshare.monitoring.sinks import Sink, sinks_from_settings
from bikeshare.orchestration.drills.endpoint import ThreadedEndpoint, registry_provider
from bikeshare.orchestration.drills.faults import DelayedProvider, FeedShiftProxy, clear, inject
from bikeshare.orchestration.drills.loop import ReplayLoop
from bikeshare.orchestration.drills.plan import RESPONDER, DrillPlan
from bikeshare.orchestration.drills.report import CycleRecord, DrillReport, record_cycle
from bikeshare.orchestration.drills.workspace import DrillWorld, prepare_world
from bikeshare.resources import Resources
from bikeshare.settings import Settings

log = logging.getLogger(__name__)


def run_drill(
    plan: DrillPlan,
    *,
    world: DrillWorld,
    sinks: Sequence[Sink] | None = None,
    on_cycle: Callable[[CycleRecord], None] | None = None,
    stop: threading.Event | None = None,
) -> DrillReport:
    """Run the loop on the replay clock with the plan's fault; report detection, routing, ack, resolution.

    ``stop`` (the CLI's, set on SIGINT/SIGTERM) ends the drill after the current replay minute.
    """
    from bikeshare.gbfs.replay import ReplayServer
    from bikeshare.monitoring.rules import load_rules
    from bikeshare.monitoring.store import AlertStore, ack_alert

    began = time.monotonic()
    resources = Resources.build(world.settings)
    settings, lake = resources.settings, resources.lake
    rules = load_rules(settings.alert_rules_path)
    sinks = list(sinks) if sinks is not None else sinks_from_settings(settings)
    report = DrillReport(plan=plan)
    store = AlertStore(lake, city=settings.city)
    replay = ReplayServer(world.recording, gbfs_version=settings.replay_gbfs_version, start=plan.start, paused=True)
    with _started_stack() as stack:
        stack(resources)
        stack(replay)
        proxy = stack(FeedShiftProxy(replay.url, factor=plan.drift_factor)) if plan.kind == "drift" else None
        provider = None
        endpoint = None
        if plan.score:
            provider = DelayedProvider(registry_provider(settings, resources.registry))
            endpoint = stack(ThreadedEndpoint(settings, provider, lake))
        loop = stack(
            ReplayLoop(
                settings=settings,
                lake=lake,
                replay=replay,
                feed_url=f"{proxy.url}/gbfs.json" if proxy is not None else replay.discovery_url,
                endpoint_url=endpoint.url if endpoint else None,
                probes_per_min=plan.probes_per_min,
                stop=stop,
            )
        )
        fault_at = plan.start + pd.Timedelta(minutes=plan.cycle_min * plan.warmup_cycles + 1)
        fault_active = False
        cycles_after_fault = cycles_after_clear = 0
        while True:
            if loop.stop.is_set():
                report.stopped = True
                break
            upcoming = loop.now.floor("min") + pd.Timedelta(minutes=1)
            if report.fault_started_at is None and upcoming >= fault_at:
                inject(plan, replay=replay, proxy=proxy, provider=provider)
                fault_active = True
                report.fault_started_at = upcoming
            now = loop.step()
            _maybe_ack(plan, report, store=store, now=now, ack=ack_alert)
            if int((now - plan.start).total_seconds() // 60) % plan.cycle_min:
                continue
            result = loop.monitor(
                sinks=sinks,
                rules=rules,
                fault_started_at=report.fault_started_at if fault_active else None,
                window_min=plan.cycle_min,
            )
            phase = "warmup" if report.fault_started_at is None else "fault" if fault_active else "recovery"
            record = record_cycle(plan, report, result, index=len(report.cycles) + 1, phase=phase)
            report.cycles.append(record)
            if on_cycle is not None:
                on_cycle(record)
            if fault_active:
                cycles_after_fault += 1
                if report.detection is not None or cycles_after_fault >= plan.max_cycles:
                    clear(plan, replay=replay, proxy=proxy, provider=provider)
                    fault_active = False
                    report.fault_cleared_at = loop.now
            elif report.fault_cleared_at is not None:
                cycles_after_clear += 1
                resolved = report.detection is None or report.detection.resolved_at is not None
                if resolved or cycles_after_clear >= plan.recovery_cycles:
                    break
    report.wall_s = time.monotonic() - began
    return report


def drill_in_workspace(
    plan: DrillPlan,
    *,
    base_settings: Settings,
    workspace: Path | None = None,
    keep: bool = False,
    sinks: Sequence[Sink] | None = None,
    progress: Callable[[str], None] | None = None,
    on_cycle: Callable[[CycleRecord], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[DrillReport, Path | None]:
    """Prepare a world in ``workspace`` (a temporary folder by default) and run the drill in it.

    Returns the report and the workspace when it was kept (``keep`` or an explicit ``workspace``).
    """
    import tempfile

    temporary = workspace is None
    root = Path(tempfile.mkdtemp(prefix=f"bikeshare-drill-{plan.kind}-")) if workspace is None else workspace
    try:
        started = time.monotonic()
        world = prepare_world(root, base_settings=base_settings, plan=plan, progress=progress)
        setup = time.monotonic() - started
        report = run_drill(plan, world=world, sinks=sinks, on_cycle=on_cycle, stop=stop)
        report.setup_s = setup
    finally:
        if temporary and not keep:
            shutil.rmtree(root, ignore_errors=True)
    return report, (root if keep or not temporary else None)


def _maybe_ack(
    plan: DrillPlan, report: DrillReport, *, store: Any, now: pd.Timestamp, ack: Callable[..., AlertEvent]
) -> None:
    d = report.detection
    if plan.ack_after_min is None or d is None or d.acknowledged_at is not None or d.resolved_at is not None:
        return
    if now < d.fired_at + pd.Timedelta(minutes=plan.ack_after_min):
        return
    event = ack(store=store, alert_id=d.alert_id, by=RESPONDER, at=now.to_pydatetime())
    report.detection = replace(d, acknowledged_at=now, mtta_s=event.mtta_s)


@contextmanager
def _started_stack() -> Iterator[Callable[[Any], Any]]:
    """Start things in order and stop them in reverse, whatever happens in between."""
    started: list[Any] = []

    def add(thing: Any) -> Any:
        if hasattr(thing, "start"):
            thing.start()
        started.append(thing)
        return thing

    try:
        yield add
    finally:
        for thing in reversed(started):
            try:
                thing.stop() if hasattr(thing, "stop") else thing.close()
            except Exception:  # stopping one part must not keep the others running
                log.exception("stopping %s failed", type(thing).__name__)
