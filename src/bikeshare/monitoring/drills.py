"""Drills: inject a real fault into a running loop on the replay clock and time the alert.

A drill works in its own workspace (lake, MLflow store, replay server, endpoint), so it never
touches the user's lake. :func:`prepare_world` backfills the history before the drill start from
the shipped recording, trains a small model per target through the real trainer, logs and
registers it, stores its baselines and points ``production`` at it. :func:`run_drill` then serves
the recording from the drill start on a paused replay clock and steps it one minute at a time:
ingest every minute, infer and join actuals every ``infer_interval_min``, monitor every cycle.

The faults are real:

- ``feed-outage``: the replay server's own fault API (``POST /_replay/faults``, ``http_5xx`` or
  ``timeout`` on station_status) until the drill clears it (``DELETE``);
- ``drift``: a loopback proxy between the ingest and the replay server moves bikes to docks in every
  station_status document (``bikes * factor`` stay), so the lake, the features, the endpoint's input
  and its predictions all shift;
- ``latency``: the endpoint's models are wrapped so that each scoring call sleeps; the endpoint's
  own latency histogram (what the monitor scrapes) sees the slower answers.

The fault starts one replay minute after a monitor evaluation and stays until the expected alert
fired (or ``max_cycles`` passed); then it is cleared and the drill runs until the alert resolves.
Time to detect is counted from the fault start to the evaluation that fired, in evaluations and in
replay minutes; time to route is the real seconds from firing to each sink's delivery.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bikeshare.gbfs.recording import INFORMATION_FILE, MANIFEST, STATUS_FILE, Recording
from bikeshare.lake.store import Lake
from bikeshare.monitoring.alerts import AlertEvent
from bikeshare.monitoring.job import MonitorResult, run_monitor
from bikeshare.monitoring.sinks import Sink, sinks_from_settings
from bikeshare.profiles import with_profile
from bikeshare.settings import Settings
from bikeshare.training.bundle import ModelBundle

log = logging.getLogger(__name__)

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
        object.__setattr__(self, "start", _utc(self.start))

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


@dataclass(frozen=True)
class DrillWorld:
    """A prepared drill workspace."""

    root: Path
    settings: Settings
    recording: Recording  # what the replay server serves (the full recording)
    model_versions: dict[str, str]  # target -> registered version holding 'production'


@dataclass(frozen=True)
class CycleRecord:
    """One monitor evaluation of the drill."""

    index: int
    evaluated_at: pd.Timestamp
    phase: str  # warmup | fault | recovery
    watched: str
    events: tuple[str, ...]
    duration_s: float


@dataclass(frozen=True)
class Route:
    sink: str
    ok: bool
    seconds: float
    error: str | None


@dataclass(frozen=True)
class Detection:
    """The drill's alert: when it fired, where it went, when it was acknowledged and resolved."""

    alert_id: str
    rule: str
    severity: str | None
    message: str
    fired_at: pd.Timestamp
    ttd_min: float
    ttd_cycles: int
    routes: tuple[Route, ...]
    acknowledged_at: pd.Timestamp | None = None
    mtta_s: float | None = None
    resolved_at: pd.Timestamp | None = None


@dataclass
class DrillReport:
    """Everything a drill measured."""

    plan: DrillPlan
    fault_started_at: pd.Timestamp | None = None
    fault_cleared_at: pd.Timestamp | None = None
    cycles: list[CycleRecord] = field(default_factory=list)
    detection: Detection | None = None
    false_alarms: list[str] = field(default_factory=list)  # expected-rule alerts before the fault
    other_alerts: list[str] = field(default_factory=list)  # other rules that fired during the drill
    wall_s: float = 0.0
    setup_s: float = 0.0

    @property
    def detected(self) -> bool:
        return self.detection is not None

    @property
    def met_goal(self) -> bool:
        """Detected within two evaluations and delivered to every sink."""
        d = self.detection
        return bool(
            d is not None and d.ttd_cycles <= DETECTION_GOAL_CYCLES and d.routes and all(r.ok for r in d.routes)
        )

    def table(self) -> str:
        """The short report the CLI prints."""
        p = self.plan
        lines = [
            f"drill {p.kind}: {p.describe_fault()}",
            f"replay from {p.start:%Y-%m-%d %H:%M}Z, one evaluation every {p.cycle_min} replay min "
            f"(monitor window {p.cycle_min} min); setup {self.setup_s:.0f} s, drill {self.wall_s:.0f} s wall",
            "",
            f"{'cycle':>5}  {'replay':>5}  {'phase':<8}  {'watched signal':<42}  alerts",
        ]
        for c in self.cycles:
            events = "; ".join(c.events) or "-"
            lines.append(f"{c.index:>5}  {c.evaluated_at:%H:%M}  {c.phase:<8}  {c.watched:<42}  {events}")
        lines.append("")
        if self.fault_started_at is not None:
            lines.append(f"fault started   {self.fault_started_at:%H:%M}Z")
        if self.fault_cleared_at is not None:
            lines.append(f"fault cleared   {self.fault_cleared_at:%H:%M}Z")
        d = self.detection
        if d is None:
            lines.append(f"NOT DETECTED within {p.max_cycles} evaluations of the fault ({', '.join(p.expected_rules)})")
        else:
            goal = "met" if d.ttd_cycles <= DETECTION_GOAL_CYCLES else "MISSED"
            lines.append(
                f"fired           {d.fired_at:%H:%M}Z {d.rule} ({d.severity}), alert {d.alert_id}: {d.message}"
            )
            lines.append(
                f"time to detect  {d.ttd_cycles} evaluation(s), {d.ttd_min:.0f} replay min after the fault "
                f"(goal <= {DETECTION_GOAL_CYCLES} evaluations: {goal})"
            )
            routes = ", ".join(
                f"{r.sink} {r.seconds:.2f} s" + ("" if r.ok else f" FAILED ({r.error})") for r in d.routes
            )
            lines.append(f"time to route   {routes or 'no sink'}")
            if d.mtta_s is not None and d.acknowledged_at is not None:
                lines.append(
                    f"acknowledged    {d.acknowledged_at:%H:%M}Z by {RESPONDER}: MTTA {d.mtta_s / 60:.1f} min "
                    "(simulated responder, --ack-after-min)"
                )
            else:
                lines.append("acknowledged    no (MTTA not measured; --ack-after-min simulates a responder)")
            if d.resolved_at is not None:
                lines.append(f"resolved        {d.resolved_at:%H:%M}Z")
            else:
                lines.append(f"resolved        no, within {p.recovery_cycles} evaluations after the fault was cleared")
        if self.false_alarms:
            lines.append(f"before the fault (false alarms): {'; '.join(self.false_alarms)}")
        if self.other_alerts:
            lines.append(f"other alerts during the drill: {'; '.join(self.other_alerts)}")
        return "\n".join(lines)


# ---- the workspace -----------------------------------------------------------------------------


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
    settings = drill_settings(base_settings, root, city=source.city)
    lake = Lake.open(settings.lake_uri)
    say(f"backfilling {plan.history_hours} h of history before {start:%Y-%m-%d %H:%M}Z")
    history = cut_recording(source, root / "history", start=first, end=start)
    backfill(recording=history, lake=lake, settings=settings, workers=2, clock=lambda: start)
    train_end = start - pd.Timedelta(minutes=settings.horizon_min + settings.grid_minutes)
    train_start = train_end - pd.Timedelta(hours=plan.train_hours)
    say(f"building features {train_start:%m-%d %H:%M}..{train_end:%m-%d %H:%M}Z and training both targets")
    frame = build_features(lake=lake, city=settings.city, start=train_start, end=train_end, settings=settings)
    if mlflow_db is not None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mlflow_db, settings.state_dir / "mlflow.db")
    versions = {
        target: train_and_register(frame, target=target, settings=settings, lake=lake, now=start)
        for target in ("bikes", "docks")
    }
    say(f"production models: {', '.join(f'{t} v{v}' for t, v in versions.items())}")
    return DrillWorld(root=root, settings=settings, recording=source, model_versions=versions)


def train_and_register(frame: pd.DataFrame, *, target: str, settings: Settings, lake: Lake, now: pd.Timestamp) -> str:
    """Train ``target`` with the real trainer, log and register it, store its baselines, make it production."""
    from bikeshare.monitoring.model_baselines import store_baselines, training_baselines
    from bikeshare.registry.client import model_name, open_client
    from bikeshare.registry.tracking import log_training_run
    from bikeshare.training.train import train_model

    result = train_model(
        frame, target=target, settings=settings, artifacts_dir=settings.state_dir / "training" / target
    )
    client = open_client(settings)
    logged = log_training_run(client=client, result=result, settings=settings, input_example=frame.head(5))
    if logged.version is None:  # pragma: no cover - register=True always registers
        raise RuntimeError("the training run was not registered")
    version = str(logged.version.version)
    name = model_name(settings.city, target)
    baselines = training_baselines(frame, bundle=result.bundle, split=result.split, target=target, settings=settings)
    store_baselines(
        lake=lake,
        baselines=baselines,
        city=settings.city,
        model_name=name,
        model_version=version,
        target=target,
        created_at=now.to_pydatetime(),
        client=client,
        run_id=logged.run_id,
    )
    client.set_registered_model_alias(name, "production", version)
    return version


def cut_recording(source: Recording, dest: Path, *, start: pd.Timestamp, end: pd.Timestamp) -> Recording:
    """A recording folder with the snapshots of ``source`` whose ``start <= last_updated < end``."""
    dest.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(source.path / STATUS_FILE)
    stamps = table.column("last_updated")
    kept = table.filter(pc.and_(pc.greater_equal(stamps, start.to_pydatetime()), pc.less(stamps, end.to_pydatetime())))
    if kept.num_rows == 0:
        raise ValueError(f"{source.path}: no snapshot within {start.isoformat()}..{end.isoformat()}")
    pq.write_table(kept, dest / STATUS_FILE)
    shutil.copyfile(source.path / INFORMATION_FILE, dest / INFORMATION_FILE)
    times = pd.to_datetime(kept.column("last_updated").to_pandas(), utc=True)
    manifest = dict(source.manifest)
    manifest.update(
        start=times.min().isoformat(),
        end=times.max().isoformat(),
        snapshots=int(times.nunique()),
        status_rows=kept.num_rows,
        window_start=start.isoformat(),
        window_end=end.isoformat(),
    )
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return Recording.open(dest)


# ---- fault injectors ---------------------------------------------------------------------------


class FeedShiftProxy:
    """A loopback HTTP proxy in front of a GBFS server that, while ``active``, keeps ``factor`` of each
    station's bikes in station_status (the rest is shown as free docks, so bikes + docks stays)."""

    def __init__(self, upstream: str, *, factor: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.factor = factor
        self.active = False
        self.shifted_documents = 0
        self._http = httpx.Client(timeout=10.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FeedShiftProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._http.close()

    def shift(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The station_status document with ``factor`` of each station's bikes (any GBFS version).

        Each vehicle type's count is scaled (so the electric count stays within the bikes), and the
        bikes taken away are added to the free docks.
        """
        for station in doc.get("data", {}).get("stations", []):
            key = "num_vehicles_available" if "num_vehicles_available" in station else "num_bikes_available"
            bikes = station.get(key)
            if not isinstance(bikes, int):
                continue
            kept = math.floor(bikes * self.factor)
            types = [e for e in station.get("vehicle_types_available") or [] if isinstance(e.get("count"), int)]
            for entry in types:
                entry["count"] = math.floor(entry["count"] * self.factor)
            if types:  # the scaled types may hold fewer (rounding), never more (inconsistent input)
                kept = min(kept, sum(entry["count"] for entry in types))
            if isinstance(station.get("num_ebikes_available"), int):
                station["num_ebikes_available"] = min(math.floor(station["num_ebikes_available"] * self.factor), kept)
            station[key] = kept
            if isinstance(station.get("num_docks_available"), int):
                station["num_docks_available"] += max(bikes - kept, 0)
        return doc

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                try:
                    upstream = proxy._http.get(proxy.upstream + self.path)  # no validators: always the whole body
                except httpx.HTTPError as exc:
                    self._send(502, json.dumps({"error": f"upstream: {exc}"}).encode(), "application/json")
                    return
                body = upstream.content
                if (
                    proxy.active
                    and upstream.status_code == 200
                    and self.path.split("?")[0].endswith("station_status.json")
                ):
                    body = json.dumps(proxy.shift(upstream.json())).encode()
                    proxy.shifted_documents += 1
                elif upstream.status_code == 200 and self.path.split("?")[0].endswith("gbfs.json"):
                    body = body.replace(proxy.upstream.encode(), proxy.url.encode())  # feeds through the proxy
                self._send(upstream.status_code, body, upstream.headers.get("content-type", "application/json"))

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@dataclass(frozen=True)
class _DelayedBundle(ModelBundle):
    """A bundle whose scoring sleeps ``delay_s`` first (the drill's slow model)."""

    delay_s: float = 0.0

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().predict_proba(features)


class DelayedProvider:
    """Wraps a model provider; while ``delay_s`` > 0 every scoring request takes that much longer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.delay_s = 0.0

    def state(self) -> Any:
        return self.inner.state()

    def current(self, alias: str) -> Any:
        models = self.inner.current(alias)
        delay = self.delay_s
        if models is None or delay <= 0:
            return models
        slow = _DelayedBundle(meta=models.bikes.bundle.meta, scorer=models.bikes.bundle.scorer, delay_s=delay)
        return replace(models, bikes=replace(models.bikes, bundle=slow))

    def start(self) -> None:
        self.inner.start()

    def close(self) -> None:
        self.inner.close()


class ThreadedEndpoint:
    """The real endpoint app (serving.create_app) on uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Settings, provider: Any, lake: Lake) -> None:
        import uvicorn

        from bikeshare.serving.app import create_app

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings=settings, provider=provider, lake=lake)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, name=f"drill-endpoint-{self.port}", daemon=True)

    def start(self) -> ThreadedEndpoint:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the drill endpoint on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)


# ---- the drill ---------------------------------------------------------------------------------


class ReplayLoop:
    """The loop's stages on a paused replay clock, stepped one replay minute at a time.

    Each :meth:`step` sets the clock one minute on and ingests once; with an endpoint it also sends
    ``probes_per_min`` small scoring requests (client traffic) and, at every ``infer_interval_min``
    boundary, runs an inference batch and an actuals join. :meth:`monitor` runs the monitor job at
    the current replay time.
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
    ) -> None:
        from bikeshare.gbfs.client import CircuitBreaker, GbfsClient, RetryPolicy
        from bikeshare.ingest.poller import IngestState

        self.settings = settings
        self.lake = lake
        self.replay = replay
        self.clock = replay.clock
        self.probes_per_min = probes_per_min
        self._state = IngestState()
        self.feed = GbfsClient(
            feed_url,
            http=httpx.Client(timeout=settings.http_timeout_s, follow_redirects=True),
            retry=RetryPolicy.from_settings(settings),
            breaker=CircuitBreaker.from_settings(settings, clock=self._replay_seconds),
            sleep=lambda _s: None,
            clock=self._replay_seconds,
            utc_now=self.clock.now,
            owns_http=True,
        )
        self.scorer: Any = None
        self.source: Any = None
        self.run_settings = settings
        self._probe: tuple[bytes, int] | None = None
        self.set_endpoint(endpoint_url)

    def _replay_seconds(self) -> float:
        return float(self.clock.now().timestamp())

    @property
    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.clock.now())

    def set_endpoint(self, url: str | None) -> None:
        """Score through (and scrape) the endpoint at ``url``; None: no inference, no scraping."""
        from bikeshare.inference.endpoint_client import EndpointClient
        from bikeshare.monitoring.endpoint_metrics import HttpMetricsSource

        if self.scorer is not None:
            self.scorer.close()
        self.run_settings = self.settings.model_copy(update={"endpoint_url": url})
        self.scorer = EndpointClient.from_settings(self.run_settings, sleep=lambda _s: None) if url else None
        self.source = HttpMetricsSource(url, api_key=self.settings.serve_api_key) if url else None
        if url and self.probes_per_min and self._probe is None:
            self._probe = _probe_body(self.lake, settings=self.settings, at=self.now)

    def step(self) -> pd.Timestamp:
        """One replay minute of the loop; returns the new replay time."""
        from bikeshare.inference.actuals import run_actuals
        from bikeshare.inference.batch import run_inference_batch
        from bikeshare.ingest.poller import ingest_once

        now = self.clock.set(self.now.floor("min") + pd.Timedelta(minutes=1))
        ingest_once(client=self.feed, lake=self.lake, settings=self.settings, clock=self.clock.now, state=self._state)
        if self.scorer is not None:
            if self._probe is not None:
                _send_probes(self.scorer, self._probe, count=self.probes_per_min)
            if now == now.floor(f"{self.settings.infer_interval_min}min"):
                run_inference_batch(lake=self.lake, endpoint=self.scorer, settings=self.run_settings, now=now)
                run_actuals(lake=self.lake, settings=self.run_settings, now=now)
        return pd.Timestamp(now)

    def advance(self, minutes: int) -> pd.Timestamp:
        for _ in range(minutes):
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
        self.feed.close()
        if self.scorer is not None:
            self.scorer.close()


def run_drill(
    plan: DrillPlan,
    *,
    world: DrillWorld,
    sinks: Sequence[Sink] | None = None,
    on_cycle: Callable[[CycleRecord], None] | None = None,
) -> DrillReport:
    """Run the loop on the replay clock with the plan's fault; report detection, routing, ack, resolution."""
    from bikeshare.gbfs.replay import ReplayServer
    from bikeshare.monitoring.rules import load_rules
    from bikeshare.monitoring.store import AlertStore, ack_alert
    from bikeshare.serving.models import RegistryModelProvider

    began = time.monotonic()
    settings = world.settings
    lake = Lake.open(settings.lake_uri)
    rules = load_rules(settings.alert_rules_path)
    sinks = list(sinks) if sinks is not None else sinks_from_settings(settings)
    report = DrillReport(plan=plan)
    store = AlertStore(lake, city=settings.city)
    replay = ReplayServer(world.recording, gbfs_version=settings.replay_gbfs_version, start=plan.start, paused=True)
    with _started_stack() as stack:
        stack(replay)
        proxy = stack(FeedShiftProxy(replay.url, factor=plan.drift_factor)) if plan.kind == "drift" else None
        provider = None
        endpoint = None
        if plan.score:
            provider = DelayedProvider(RegistryModelProvider(settings=settings))
            provider.inner.load()
            endpoint = stack(ThreadedEndpoint(settings, provider, lake))
        loop = stack(
            ReplayLoop(
                settings=settings,
                lake=lake,
                replay=replay,
                feed_url=f"{proxy.url}/gbfs.json" if proxy is not None else replay.discovery_url,
                endpoint_url=endpoint.url if endpoint else None,
                probes_per_min=plan.probes_per_min,
            )
        )
        fault_at = plan.start + pd.Timedelta(minutes=plan.cycle_min * plan.warmup_cycles + 1)
        fault_active = False
        cycles_after_fault = cycles_after_clear = 0
        while True:
            upcoming = loop.now.floor("min") + pd.Timedelta(minutes=1)
            if report.fault_started_at is None and upcoming >= fault_at:
                _inject(plan, replay=replay, proxy=proxy, provider=provider)
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
            record = _record_cycle(plan, report, result, index=len(report.cycles) + 1, phase=phase)
            report.cycles.append(record)
            if on_cycle is not None:
                on_cycle(record)
            if fault_active:
                cycles_after_fault += 1
                if report.detection is not None or cycles_after_fault >= plan.max_cycles:
                    _clear(plan, replay=replay, proxy=proxy, provider=provider)
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
        report = run_drill(plan, world=world, sinks=sinks, on_cycle=on_cycle)
        report.setup_s = setup
    finally:
        if temporary and not keep:
            shutil.rmtree(root, ignore_errors=True)
    return report, (root if keep or not temporary else None)


# ---- internals ----------------------------------------------------------------------------------


def _inject(plan: DrillPlan, *, replay: Any, proxy: FeedShiftProxy | None, provider: DelayedProvider | None) -> None:
    if plan.kind == "feed-outage":
        fault: dict[str, Any] = {"kind": plan.outage}
        if plan.outage == "timeout":
            fault["delay_s"] = plan.timeout_delay_s
        response = httpx.post(f"{replay.url}/_replay/faults", json=fault, timeout=5.0)
        if response.status_code != 201:
            raise RuntimeError(f"the replay server refused the fault {fault}: {response.text}")
    elif plan.kind == "drift":
        assert proxy is not None
        proxy.active = True
    else:
        assert provider is not None
        provider.delay_s = plan.latency_s


def _clear(plan: DrillPlan, *, replay: Any, proxy: FeedShiftProxy | None, provider: DelayedProvider | None) -> None:
    if plan.kind == "feed-outage":
        httpx.delete(f"{replay.url}/_replay/faults", timeout=5.0).raise_for_status()
    elif plan.kind == "drift":
        assert proxy is not None
        proxy.active = False
    else:
        assert provider is not None
        provider.delay_s = 0.0


def _probe_body(lake: Lake, *, settings: Settings, at: pd.Timestamp, rows: int = 16) -> tuple[bytes, int] | None:
    """A small /invocations body (feature rows of a few stations at ``at``) for client traffic."""
    from bikeshare.features.build import online_features
    from bikeshare.inference.batch import feature_matrix, model_input_columns
    from bikeshare.inference.endpoint_client import split_payload

    features = online_features(lake=lake, city=settings.city, at=at, settings=settings).head(rows)
    if features.empty:
        log.warning("no feature rows at %s: the drill sends no probe traffic", at)
        return None
    columns = model_input_columns()
    ids = features["station_id"].astype(str).tolist()
    return split_payload(ids, columns, feature_matrix(features, columns)), len(ids)


def _send_probes(client: Any, probe: tuple[bytes, int], *, count: int) -> None:
    from bikeshare.inference.endpoint_client import EndpointError

    body, rows = probe
    for _ in range(count):
        try:
            client.invoke(body, rows=rows, alias="production")
        except EndpointError as exc:  # the endpoint's errors are what the monitor counts, not the drill's
            log.debug("probe failed: %s", exc)


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


def _record_cycle(
    plan: DrillPlan, report: DrillReport, result: MonitorResult, *, index: int, phase: str
) -> CycleRecord:
    events = []
    for event in result.cycle.events:
        what = f"{event.event} {event.fingerprint}" + (f" ({event.severity})" if event.event != "resolved" else "")
        events.append(what)
        expected = event.rule in plan.expected_rules
        if event.event == "fired":
            if expected and report.fault_started_at is None:
                report.false_alarms.append(f"{pd.Timestamp(event.at):%H:%M} {event.fingerprint}")
            elif expected and report.detection is None:
                report.detection = _detection(event, result, report, index=index)
            elif not expected:
                report.other_alerts.append(f"{pd.Timestamp(event.at):%H:%M} {event.fingerprint}")
        if event.event == "resolved" and report.detection is not None and event.alert_id == report.detection.alert_id:
            report.detection = replace(report.detection, resolved_at=pd.Timestamp(event.at))
    return CycleRecord(
        index=index,
        evaluated_at=result.evaluated_at,
        phase=phase,
        watched=_watched(plan, result),
        events=tuple(events),
        duration_s=result.duration_s,
    )


def _detection(event: AlertEvent, result: MonitorResult, report: DrillReport, *, index: int) -> Detection:
    fault = report.fault_started_at
    assert fault is not None
    fired = pd.Timestamp(event.at)
    before = sum(1 for c in report.cycles if c.evaluated_at <= fault)
    routes = tuple(
        Route(
            sink=r.sink or "?",
            ok=bool(r.ok),
            seconds=(pd.Timestamp(r.routed_at) - fired).total_seconds() if r.routed_at else math.nan,
            error=r.error,
        )
        for r in result.cycle.routes
        if r.alert_id == event.alert_id and r.routed_event == "fired"
    )
    return Detection(
        alert_id=event.alert_id,
        rule=event.rule,
        severity=event.severity,
        message=event.message,
        fired_at=fired,
        ttd_min=(fired - fault).total_seconds() / 60,
        ttd_cycles=index - before,
        routes=routes,
    )


def _watched(plan: DrillPlan, result: MonitorResult) -> str:
    if plan.kind == "feed-outage":
        age = result.metric("data_quality", "seconds_since_last_commit", subject="station_status")
        return f"last commit {age / 60:.0f} min ago" if age is not None else "no live commit yet"
    if plan.kind == "drift":
        values = [s for s in result.signals if s.name == "feature_psi" and s.value is not None]
        worst = max(values, key=lambda s: s.value or 0.0, default=None)
        prediction = [s.value for s in result.signals if s.name == "prediction_psi" and s.value is not None]
        head = f"max PSI {worst.value:.2f} ({worst.labels['feature']})" if worst else "PSI n/a"
        return head + (f", pred {max(prediction):.2f}" if prediction else "")
    p95 = result.signal("endpoint_p95_ms", route="/invocations")
    return f"/invocations p95 {p95.value:.0f} ms" if p95 is not None and p95.value is not None else "p95 n/a"


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    value = pd.Timestamp(ts)
    return value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
