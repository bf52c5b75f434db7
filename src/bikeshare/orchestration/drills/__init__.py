"""Drills: inject a real fault into the loop on a stepped replay clock and time the alert.

A drill works in its own workspace (:mod:`.workspace`: lake, MLflow store, settings), with its own
replay server and endpoint (:mod:`.endpoint`), so it never touches the user's lake. The faults are
real (:mod:`.faults`): the replay server's fault API, a loopback proxy that shifts the feed's counts,
slow models behind the real endpoint. The loop's jobs run on the replay clock one minute at a time
(:mod:`.loop`); :mod:`.run` injects the fault, evaluates the monitor every cycle and fills the
report (:mod:`.report`): time to detect, time to route, acknowledgement, resolution.
"""

from bikeshare.orchestration.drills.endpoint import ThreadedEndpoint, free_loopback_port, registry_provider
from bikeshare.orchestration.drills.faults import DelayedProvider, FeedShiftProxy, clear, inject
from bikeshare.orchestration.drills.loop import ReplayLoop
from bikeshare.orchestration.drills.plan import (
    DEFAULT_START,
    DETECTION_GOAL_CYCLES,
    DRILLS,
    OUTAGE_KINDS,
    RESPONDER,
    DrillPlan,
)
from bikeshare.orchestration.drills.report import CycleRecord, Detection, DrillReport, Route, record_cycle
from bikeshare.orchestration.drills.run import drill_in_workspace, run_drill
from bikeshare.orchestration.drills.workspace import DrillWorld, drill_settings, prepare_world

__all__ = [
    "DEFAULT_START",
    "DETECTION_GOAL_CYCLES",
    "DRILLS",
    "OUTAGE_KINDS",
    "RESPONDER",
    "CycleRecord",
    "DelayedProvider",
    "Detection",
    "DrillPlan",
    "DrillReport",
    "DrillWorld",
    "FeedShiftProxy",
    "ReplayLoop",
    "Route",
    "ThreadedEndpoint",
    "clear",
    "drill_in_workspace",
    "drill_settings",
    "free_loopback_port",
    "inject",
    "prepare_world",
    "record_cycle",
    "registry_provider",
    "run_drill",
]
