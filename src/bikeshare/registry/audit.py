"""The promotion audit trail: append-only events in the lake (table/view ``promotions``).

Each event is one small Parquet file that is never rewritten. Alias history is replayed from
these events: a promotion pushes the new holder, a rollback pops back to the previous one.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum

import pandas as pd

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import AUDIT


class Action(StrEnum):
    PROMOTE = "promote"  # gate passed, alias moved
    REFUSED = "refused"  # gate failed, nothing moved
    FORCED = "forced"  # gate failed, alias moved anyway on request
    ROLLBACK = "rollback"  # alias moved back to the previous holder


MOVES_ALIAS = frozenset({Action.PROMOTE, Action.FORCED})


@dataclass(frozen=True)
class AuditEvent:
    event_id: str
    at: datetime
    actor: str
    model_name: str
    target: str
    version: str
    alias: str
    action: str
    previous_version: str | None
    verdict: str  # pass | fail | none
    checks: str  # JSON
    note: str
    run_id: str

    @classmethod
    def new(cls, **fields: object) -> AuditEvent:
        """An event stamped now (UTC) with a fresh id."""
        return cls(event_id=uuid.uuid4().hex, at=datetime.now(UTC), **fields)  # type: ignore[arg-type]


def current_actor(explicit: str | None = None) -> str:
    """``explicit`` when given, else the OS user (``unknown`` when even that cannot be told)."""
    if explicit and explicit.strip():
        return explicit.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def append_event(lake: Lake, event: AuditEvent, *, city: str) -> str:
    """Write one event as its own file (never overwriting); returns its path."""
    at = pd.Timestamp(event.at)
    name = f"{at:%Y%m%dT%H%M%S%f}-{event.event_id}"
    frame = pd.DataFrame([asdict(event)])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    path = lake.write(AUDIT, frame, city=city, dt=partition_value(at, AUDIT.grain), name=name)
    if path is None:
        raise FileExistsError(f"audit event {event.event_id} already exists; refusing to overwrite history")
    return path


def read_events(lake: Lake, *, city: str, model_name: str | None = None, alias: str | None = None) -> pd.DataFrame:
    """Events in time order, optionally for one model and alias."""
    frame = lake.read(AUDIT, city=city).to_pandas()
    if model_name is not None:
        frame = frame[frame["model_name"] == model_name]
    if alias is not None:
        frame = frame[frame["alias"] == alias]
    return frame.sort_values(["at", "event_id"], kind="stable").reset_index(drop=True)


def holder_stack(events: pd.DataFrame) -> list[str]:
    """Replay one model+alias history: the versions that held it, oldest first, current last.

    A move (promote, forced) pushes its version, after the holder it replaced when that holder is
    not on top (the alias was set outside bikeshare). A rollback drops the top; should the history
    disagree with where the rollback went, that version becomes the holder.
    """
    stack: list[str] = []
    for action, version, previous in zip(events["action"], events["version"], events["previous_version"], strict=True):
        version = str(version)
        if action in MOVES_ALIAS:
            if isinstance(previous, str) and previous and (not stack or stack[-1] != previous):
                stack.append(previous)
            if not stack or stack[-1] != version:
                stack.append(version)
        elif action == Action.ROLLBACK:
            if stack:
                stack.pop()
            if not stack or stack[-1] != version:
                stack.append(version)
    return stack


def previous_holder(stack: Sequence[str]) -> str | None:
    """The holder a rollback returns to: the one below the current holder."""
    return stack[-2] if len(stack) >= 2 else None
