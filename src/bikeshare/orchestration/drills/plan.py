"""What a drill does and when: its kind, the expected alert rules, the fault and the cycle timings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bikeshare.settings import Settings
from bikeshare.utc import to_utc

DRILLS: dict[str, tuple[str, ...]] = {
    "feed-outage": ("dead_feed",),
    "drift": ("feature_drift", "prediction_drift"),
    "latency": ("endpoint_latency",),
}
OUTAGE_KINDS = ("http_5xx", "timeout")
DEFAULT_START = pd.Timestamp("2023-03-09T14:00Z")  # 06:00 in San Francisco, within the shipped slice
RESPONDER = "drill-responder"
DETECTION_GOAL_CYCLES = 2


@dataclass(frozen=True)
class DrillPlan:
    """What a drill does and when; times are on the replay clock."""

    kind: str
    cycle_min: int = 15
    warmup_cycles: int = 2
    max_cycles: int = 4
    start: pd.Timestamp = DEFAULT_START
    history_hours: int = 30
    train_hours: int = 20
    outage: str = "http_5xx"
    timeout_delay_s: float = 3.0
    drift_factor: float = 0.5
    latency_s: float = 0.4
    ack_after_min: float | None = None
    score: bool = True  # run inference and actuals (a feed-outage drill can do without them)
    probes_per_min: int = 2  # small /invocations requests per replay minute: the endpoint's client traffic

    def __post_init__(self) -> None:
        if self.kind not in DRILLS:
            raise ValueError(f"unknown drill {self.kind!r}; drills: {', '.join(DRILLS)}")
        if self.outage not in OUTAGE_KINDS:
            raise ValueError(f"outage must be one of {', '.join(OUTAGE_KINDS)}, not {self.outage!r}")
        if not 0 <= self.drift_factor < 1:
            raise ValueError(f"drift_factor must be within [0, 1), got {self.drift_factor}")
        if self.latency_s <= 0:
            raise ValueError(f"latency_s must be positive, got {self.latency_s}")
        if self.kind != "feed-outage" and not self.score:
            raise ValueError(f"the {self.kind} drill needs inference (score=True)")
        if self.train_hours >= self.history_hours:
            raise ValueError("train_hours must be shorter than history_hours (the features need history)")
        object.__setattr__(self, "start", to_utc(self.start, what="drill start"))

    @classmethod
    def from_settings(cls, kind: str, settings: Settings, **overrides: Any) -> DrillPlan:
        values: dict[str, Any] = {
            "cycle_min": settings.drill_cycle_min,
            "warmup_cycles": settings.drill_warmup_cycles,
            "max_cycles": settings.drill_max_cycles,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(kind=kind, **values)

    @property
    def expected_rules(self) -> tuple[str, ...]:
        return DRILLS[self.kind]

    @property
    def recovery_cycles(self) -> int:
        """Evaluations to wait for the resolution once the fault is cleared.

        After a drift fault the features that look back 60 min still hold shifted snapshots for an hour.
        """
        lookback = math.ceil(60 / self.cycle_min) if self.kind == "drift" else 0
        return self.max_cycles + lookback

    def describe_fault(self) -> str:
        if self.kind == "feed-outage":
            extra = f", server waits {self.timeout_delay_s:g} s" if self.outage == "timeout" else ""
            return f"replay server fault {self.outage} on station_status{extra}"
        if self.kind == "drift":
            return f"feed proxy keeps {self.drift_factor:.0%} of each station's bikes (the rest shown as docks)"
        return f"endpoint models sleep {self.latency_s * 1000:.0f} ms per scoring call"
