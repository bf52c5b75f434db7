"""``bikeshare demo``: the whole loop on the shipped slice, from an empty workspace, in minutes.

1. A replay server serves the shipped recording from ``demo_live_start`` (paused while setting up).
2. The recording before that time is backfilled into the workspace lake.
3. The pipeline builds the features, trains both targets (the ``demo`` settings profile,
   ``profiles/demo.toml``: its ``pipeline_train_days`` and demo-sized boosting), registers them,
   runs the gate and moves ``staging``.
4. The endpoint starts (``bikeshare serve`` in a child process).
5. **Staging soak** on the replay clock: ingest (HTTP from the replay server), inference of
   ``staging`` through the endpoint and actuals, until staging has ``staging_min_online_hours`` of joined
   online predictions.
6. ``production`` is promoted through the full gate, admission included (staging's online hours,
   online KPIs, no worse than production). Should it refuse, the demo forces it with a note, which
   the audit history records, and says so.
7. The dashboard starts (Streamlit, child process), and the loop runner replays
   ``demo_live_hours`` more hours with every job: ingest, inference (production served, staging in
   shadow when they differ), actuals, monitor, retrain (every ``retrain_interval_h``), plans, and
   compaction (hourly; the backfilled days before the live start are closed on the replay clock).
8. The summary: URLs, model against persistence on what was joined live, endpoint latency, batch
   success, alerts, what compaction left, job runs. With ``serve`` the endpoint and dashboard stay up until Ctrl-C.

Everything lives under ``demo_dir`` (lake, state, logs, model card); a second run reuses it (every
step is idempotent) unless ``reset``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from bikeshare.lake.store import Lake
from bikeshare.orchestration.runner import RunnerReport
from bikeshare.profiles import with_profile
from bikeshare.registry.online import average_precision
from bikeshare.settings import Settings
from bikeshare.utc import parse_utc

log = logging.getLogger(__name__)

SOAK_JOBS = ("ingest", "infer", "actuals")
# Online hours count joined target times: a batch lost to an overrun, or a target time with no
# snapshot observed near it, does not count. The soak is planned this much longer than the hours
# needed, and extended by SOAK_EXTENSION (at most MAX_SOAK_EXTENSIONS times) if still short.
SOAK_MARGIN = pd.Timedelta(minutes=15)
SOAK_EXTENSION = pd.Timedelta(minutes=15)
MAX_SOAK_EXTENSIONS = 4


class DemoError(RuntimeError):
    """The demo cannot go on (a child process did not start, the slice is too short, ...)."""


@dataclass(frozen=True)
class DemoPlan:
    """The demo's timeline on the replay clock."""

    live_start: pd.Timestamp
    soak_end: pd.Timestamp
    live_end: pd.Timestamp
    train_days: float

    @classmethod
    def from_settings(
        cls, settings: Settings, *, recording_start: pd.Timestamp, recording_end: pd.Timestamp
    ) -> DemoPlan:
        start = parse_utc(settings.demo_live_start, what="demo_live_start")  # a setting: zone-less is UTC
        if not recording_start + pd.Timedelta(days=1) <= start < recording_end:
            raise DemoError(
                f"demo_live_start {start.isoformat()} must leave a day of history in the recording "
                f"({recording_start.isoformat()}..{recording_end.isoformat()})"
            )
        # staging needs soak_hours of joined predictions: the first target time is a horizon after the
        # start, and the last one is joined settle minutes after it (then the next actuals run)
        settle_min = settings.horizon_min + settings.actuals_settle_min + settings.actuals_interval_min
        settle = pd.Timedelta(minutes=settle_min)
        soak_end = start + pd.Timedelta(hours=settings.staging_min_online_hours) + settle + SOAK_MARGIN
        live_end = recording_end
        if settings.demo_live_hours is not None:
            live_end = min(recording_end, soak_end + pd.Timedelta(hours=settings.demo_live_hours))
        if soak_end >= live_end:
            raise DemoError(
                f"the soak ends at {soak_end.isoformat()}, after the recording's end {live_end.isoformat()}"
            )
        return cls(start, soak_end, live_end, settings.pipeline_train_days or 0.0)


@dataclass
class DemoSummary:
    """What the demo prints at the end of its batch part."""

    urls: dict[str, str]
    quality: pd.DataFrame  # target, scope, rows, positives, model/persistence PR-AUC and F1
    latency: dict[str, float | None]
    batches: dict[str, object]
    alerts: pd.DataFrame
    jobs: pd.DataFrame
    promotions: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    replay_speed: float = 1.0
    compaction: list[str] = field(default_factory=list)  # per minute-grain table: days compacted, files open

    def text(self) -> str:
        """The summary as printed."""
        lines = ["", "=== bikeshare demo: summary ==="]
        lines += [f"{name:<10} {url}" for name, url in self.urls.items()]
        lines += ["", "Promotions:"] + [f"  {p}" for p in self.promotions]
        lines += ["", "Model vs persistence on the predictions joined live (PR-AUC = average precision):"]
        if self.quality.empty:
            lines.append("  (no joined predictions)")
        else:
            lines.append(
                "  " + self.quality.to_string(index=False, float_format=lambda v: f"{v:.3f}").replace("\n", "\n  ")
            )
        lat = self.latency
        lines += [
            "",
            "Endpoint /invocations (server side, whole run): " + ", ".join(f"{k} {_fmt(v)}" for k, v in lat.items()),
            "Inference batches: " + ", ".join(f"{k} {v}" for k, v in self.batches.items()),
            "",
            "Alerts:",
        ]
        if self.alerts.empty:
            lines.append("  (none fired)")
        else:
            lines.append("  " + self.alerts.to_string(index=False).replace("\n", "\n  "))
            if self.replay_speed > 1:
                lines.append(
                    f"  (replayed at {self.replay_speed:g}x: a job that waits one real second for the CPU starts "
                    f"{self.replay_speed / 60:g} min late on the job clock, and a delay or freshness alert counts "
                    "that wait; max_lag_s below shows how late each job got)"
                )
        lines += ["", "Compaction (the live loop's compact job, on the replay clock):"]
        lines += [f"  {line}" for line in self.compaction] or ["  (nothing compacted)"]
        lines += ["", "Job runs (live loop and soak):"]
        lines.append("  " + self.jobs.to_string(index=False, float_format=lambda v: f"{v:.2f}").replace("\n", "\n  "))
        lines += ["", "Timings (wall seconds): " + ", ".join(f"{k} {v:.0f}" for k, v in self.timings.items())]
        return "\n".join(lines)


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} ms" if isinstance(value, float) else str(value)


# --- workspace and children -----------------------------------------------------------------------


def demo_settings(base: Settings, *, workspace: Path) -> Settings:
    """The base settings with the ``demo`` profile (demo-sized models, offline weather), in the workspace."""
    return with_profile(
        base, "demo", lake_uri=str((workspace / "lake").resolve()), state_dir=(workspace / "state").resolve()
    )


def free_port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DemoError("no free loopback port")  # pragma: no cover


class Child:
    """A child process with its output in a log file; stopped with SIGTERM, then killed."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv of this interpreter
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


def wait_http(url: str, *, child: Child, timeout_s: float, ok: Callable[[httpx.Response], bool] | None = None) -> None:
    """Poll ``url`` until it answers (and ``ok`` accepts the answer); raise if the child died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise DemoError(f"the {child.name} exited (code {child.process.returncode}); see {child.log_path}")
        try:
            response = httpx.get(url, timeout=2.0)
            if ok is None or ok(response):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the {child.name} did not answer {url} within {timeout_s:.0f} s; see {child.log_path}")


# --- the run ------------------------------------------------------------------------------------


def run_demo(
    *,
    base: Settings,
    reset: bool = False,
    serve: bool = True,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
) -> DemoSummary:
    """Run the demo (see the module doc); returns the summary it printed."""
    from bikeshare.dashboard.launch import settings_env, streamlit_command
    from bikeshare.gbfs.recording import Recording, default_recording_path
    from bikeshare.gbfs.replay import ReplayServer
    from bikeshare.ingest.backfill import backfill
    from bikeshare.orchestration.jobs import LoopEndpoints, run_loop
    from bikeshare.orchestration.pipeline import run_pipeline
    from bikeshare.resources import Resources

    stop = stop or threading.Event()
    workspace = base.demo_dir.resolve()
    if reset and workspace.exists():
        say(f"--reset: removing {workspace}")
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(base, workspace=workspace)
    recording = Recording.open(settings.recording_path or default_recording_path())
    plan = DemoPlan.from_settings(settings, recording_start=recording.start, recording_end=recording.end)
    timings: dict[str, float] = {}
    promotions: list[str] = []
    reports: list[RunnerReport] = []
    started = time.perf_counter()

    def phase(name: str, began: float) -> None:
        timings[name] = time.perf_counter() - began

    with contextlib.ExitStack() as children:
        # 1. replay server, paused until the loop starts
        replay = ReplayServer(recording, speed=base.demo_speed, start=plan.live_start, paused=True, port=0)
        replay.start()
        children.callback(replay.stop)
        resources = Resources.build(settings, replay_url=replay.url)  # the jobs schedule on the replay clock
        children.callback(resources.close)
        lake, clock = resources.lake, resources.clock
        say(
            f"replay server {replay.url} serving {recording.path.name} from {plan.live_start:%Y-%m-%d %H:%M}Z "
            f"at {base.demo_speed:g}x (paused during set-up)"
        )
        # 2. backfill the slice before the live start
        t = time.perf_counter()
        history = recording.cut(workspace / "history", start=recording.start, end=plan.live_start)
        report = backfill(recording=history, lake=lake, settings=settings, workers=2, clock=lambda: plan.live_start)
        phase("backfill", t)
        say(f"backfill {recording.start:%m-%d %H:%M}..{plan.live_start:%m-%d %H:%M}Z: {report.summary()}")
        # 3. pipeline: features, both targets, gate, staging
        t = time.perf_counter()
        client = resources.registry()
        result = run_pipeline(lake=lake, client=client, settings=settings, end=plan.live_start, progress=say)
        phase("pipeline", t)
        say(result.summary())
        for outcome in result.targets.values():
            promotions.append(f"{outcome.model_name} v{outcome.version}: staging {outcome.staging} (pipeline)")
        if result.forecast is not None:
            f = result.forecast
            promotions.append(f"{f.model_name} v{f.version}: staging {f.staging} (pipeline)")
        _check_stop(stop)
        # 4. endpoint
        env = settings_env(settings)
        port = free_port(settings.serve_port)
        endpoint_url = f"http://127.0.0.1:{port}"
        t = time.perf_counter()
        endpoint = Child(
            "endpoint",
            [sys.executable, "-m", "bikeshare", "serve", "--port", str(port)],
            env=env,
            log_path=workspace / "logs" / "endpoint.log",
        )
        children.callback(endpoint.stop)
        wait_http(f"{endpoint_url}/healthz", child=endpoint, timeout_s=120, ok=lambda r: r.status_code in (200, 503))
        phase("endpoint_start", t)
        say(f"endpoint {endpoint_url} up (log {endpoint.log_path})")
        endpoints = LoopEndpoints(feed_url=replay.discovery_url, endpoint_url=endpoint_url)

        def show(run: object) -> None:
            log.debug("%s", run)

        # 5. staging soak
        t = time.perf_counter()
        say(
            f"staging soak: {', '.join(SOAK_JOBS)} on the replay clock {plan.live_start:%H:%M}..{plan.soak_end:%H:%M}Z "
            f"(staging served, {settings.staging_min_online_hours:g} h of online quality needed)"
        )
        soak_settings = settings.with_values(serve_alias="staging", run_shadow_aliases=[])
        soak_end = plan.soak_end
        for _ in range(MAX_SOAK_EXTENSIONS + 1):
            replay.clock.pause(False)
            reports.append(
                run_loop(
                    settings=soak_settings, lake=lake, clock=clock, endpoints=endpoints, stop=stop,
                    names=SOAK_JOBS, until=soak_end, on_run=show, registry=resources.registry,
                )
            )  # fmt: skip
            replay.clock.pause(True)
            say(reports[-1].summary())
            hours = staging_online_hours(lake=lake, settings=settings, client=client)
            if stop.is_set() or hours >= settings.staging_min_online_hours or soak_end >= plan.live_end:
                break
            soak_end = min(plan.live_end, soak_end + SOAK_EXTENSION)
            say(f"staging has {hours:.2f} h of joined online predictions: soaking on until {soak_end:%H:%M}Z")
        plan = replace(plan, soak_end=soak_end, live_end=max(plan.live_end, soak_end))
        phase("soak", t)
        _check_stop(stop)
        # 6. production through the admission rule
        t = time.perf_counter()
        promotions += promote_production(settings=settings, lake=lake, client=client, say=say)
        _wait_for_production(endpoint_url, client=client, settings=settings, child=endpoint)
        phase("production", t)
        # 7. dashboard, then the live loop with every job
        dash_port = free_port(settings.dashboard_port)
        dashboard = Child(
            "dashboard",
            streamlit_command(port=dash_port),
            env=settings_env(settings.with_values(dashboard_port=dash_port)),
            log_path=workspace / "logs" / "dashboard.log",
        )
        children.callback(dashboard.stop)
        t = time.perf_counter()
        say(
            f"live loop: every job on the replay clock {plan.soak_end:%m-%d %H:%M}..{plan.live_end:%m-%d %H:%M}Z "
            f"at {base.demo_speed:g}x (production served, staging in shadow when it differs)"
        )
        replay.clock.pause(False)
        reports.append(
            run_loop(
                settings=settings, lake=lake, clock=clock, endpoints=endpoints, stop=stop,
                until=plan.live_end, on_run=show, registry=resources.registry,
            )
        )  # fmt: skip
        replay.clock.pause(True)
        phase("live_loop", t)
        say(reports[-1].summary())
        dashboard_url = f"http://127.0.0.1:{dash_port}"
        if dashboard.alive():
            with contextlib.suppress(DemoError):
                wait_http(dashboard_url, child=dashboard, timeout_s=60)
        timings["batch_total"] = time.perf_counter() - started
        summary = summarise(
            lake=lake,
            settings=settings,
            plan=plan,
            endpoint_url=endpoint_url,
            reports=reports,
            promotions=promotions,
            timings=timings,
            urls={
                "dashboard": dashboard_url,
                "endpoint": f"{endpoint_url}  (docs {endpoint_url}/docs, risk {endpoint_url}/v1/risk)",
                "mlflow": f".venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000",
                "workspace": str(workspace),
            },
            replay_speed=base.demo_speed,
        )
        write_model_card(client=client, lake=lake, settings=settings, plan=plan, summary=summary, dest=workspace)
        say(summary.text())
        if serve and not stop.is_set():
            say("\nThe endpoint and the dashboard stay up; Ctrl-C stops them.")
            while not stop.wait(0.5):
                if not endpoint.alive():
                    say(f"the endpoint exited; see {endpoint.log_path}")
                    break
        say("stopping the endpoint, the dashboard and the replay server")
    return summary


def _check_stop(stop: threading.Event) -> None:
    if stop.is_set():
        raise DemoError("stopped on request")


def promote_production(*, settings: Settings, lake: Lake, client: object, say: Callable[[str], None]) -> list[str]:
    """Promote each target's staging holder to production through the full gate; force (noted) on refusal."""
    from bikeshare.registry.client import alias_holder, model_name
    from bikeshare.registry.promotion import lake_window_evaluator, promote

    lines = []
    for target in ("bikes", "docks"):
        name = model_name(settings.city, target)
        staged = alias_holder(client, name, "staging")  # type: ignore[arg-type]
        if staged is None:
            raise DemoError(f"nothing holds {name}@staging: the pipeline's gate refused it")
        args = {
            "client": client,
            "lake": lake,
            "settings": settings,
            "target": target,
            "alias": "production",
            "version": staged.version,
            "actor": "demo",
            "evaluator": lake_window_evaluator(lake=lake, settings=settings),
        }
        outcome = promote(note="demo: staging soak on the replay clock", **args)  # type: ignore[arg-type]
        if outcome.verdict is not None and not outcome.verdict.passed:
            say(outcome.message)
            outcome = promote(
                note="demo: admission refused, forced so the demo can go on (see the refused audit row)",
                force=True,
                **args,  # type: ignore[arg-type]
            )
        head = outcome.message.splitlines()[0]
        say(outcome.message)
        lines.append(head)
    lines += promote_forecast_production(settings=settings, lake=lake, client=client, say=say)
    return lines


def promote_forecast_production(
    *, settings: Settings, lake: Lake, client: object, say: Callable[[str], None]
) -> list[str]:
    """Gate the forecast model's staging holder for production (its per-horizon gate); nothing if none is staged."""
    from bikeshare.registry.client import alias_holder
    from bikeshare.registry.forecast import forecast_model_name, promote_forecast

    name = forecast_model_name(settings.city)
    staged = alias_holder(client, name, "staging")  # type: ignore[arg-type]
    if staged is None:
        say(f"{name}: nothing holds staging (not trained, or refused by its gate); no forecast curves")
        return [f"{name}: not promoted (no staging holder)"]
    outcome = promote_forecast(
        client=client, lake=lake, settings=settings, alias="production", version=staged.version,  # type: ignore[arg-type]
        note="demo: the per-horizon gate passed for staging", actor="demo",
    )  # fmt: skip
    say(outcome.message)
    return [outcome.message]


def staging_online_hours(*, lake: Lake, settings: Settings, client: object) -> float:
    """The fewest online hours the staging holders of both targets have (0 when one has none)."""
    from bikeshare.registry.client import alias_holder, model_name
    from bikeshare.registry.online import online_quality

    hours = []
    for target in ("bikes", "docks"):
        name = model_name(settings.city, target)
        holder = alias_holder(client, name, "staging")  # type: ignore[arg-type]
        if holder is None:
            return 0.0
        quality = online_quality(
            lake, city=settings.city, model_name=name, version=holder.version, alias="staging",
            interval_min=settings.infer_interval_min,
        )  # fmt: skip
        hours.append(quality.hours)
    return min(hours)


def _wait_for_production(endpoint_url: str, *, client: object, settings: Settings, child: Child) -> None:
    from bikeshare.registry.client import alias_holder, model_name

    wanted = {}
    for target in ("bikes", "docks"):
        holder = alias_holder(client, model_name(settings.city, target), "production")  # type: ignore[arg-type]
        if holder is not None:
            wanted[target] = holder.version

    def loaded(response: httpx.Response) -> bool:
        models = response.json().get("models", {}).get("production", {})
        return all(models.get(t, {}).get("version") == v for t, v in wanted.items())

    wait_http(f"{endpoint_url}/healthz", child=child, timeout_s=60, ok=loaded)


# --- the summary ----------------------------------------------------------------------------------


def quality_table(rows: pd.DataFrame, *, threshold: int) -> pd.DataFrame:
    """Model against persistence (score = -current count; decision = short now) per target and scope.

    ``rows``: joined predictions (target, probability, decision, current_count, actual_label).
    Scopes: ``all`` rows and ``onsets`` (not short now, where a warning matters).
    """
    out = []
    for target, group in rows.groupby("target", sort=True):
        for scope, part in (("all", group), ("onsets", group[group["current_count"] > threshold])):
            y = part["actual_label"].astype(bool).to_numpy()
            model_bins = pd.DataFrame({"score": part["probability"].round(3), "pos": y, "neg": ~y})
            persist_bins = pd.DataFrame({"score": -part["current_count"].astype(float), "pos": y, "neg": ~y})
            out.append(
                {
                    "target": target,
                    "scope": scope,
                    "rows": len(part),
                    "positives": int(y.sum()),
                    "model_pr_auc": _nan(average_precision(model_bins)),
                    "persistence_pr_auc": _nan(average_precision(persist_bins)),
                    "model_f1": _f1(y, part["decision"].astype(bool).to_numpy()),
                    "persistence_f1": _f1(y, (part["current_count"] <= threshold).to_numpy()),
                }
            )
    return pd.DataFrame(out)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _f1(y: np.ndarray, decision: np.ndarray) -> float:
    tp = int((y & decision).sum())
    denominator = 2 * tp + int((~y & decision).sum()) + int((y & ~decision).sum())
    return 2 * tp / denominator if denominator else float("nan")


def summarise(
    *,
    lake: Lake,
    settings: Settings,
    plan: DemoPlan,
    endpoint_url: str,
    reports: list[RunnerReport],
    promotions: list[str],
    timings: dict[str, float],
    urls: dict[str, str],
    replay_speed: float = 1.0,
) -> DemoSummary:
    """Read what the demo's loops wrote back from the lake (and the endpoint's /metrics)."""
    from bikeshare.inference.batch import batch_success_rate
    from bikeshare.lake.tables import JOB_RUNS
    from bikeshare.monitoring.store import AlertStore, alert_frame

    con = lake.connect(views=["quality", "job_runs"])
    try:
        rows = con.execute(
            """
            SELECT target, probability, decision, current_count, actual_label
            FROM quality WHERE status = 'joined' AND city = $city AND NOT shadow
              AND target_time >= $start AND target_time <= $end
            """,
            {"city": settings.city, "start": plan.live_start.to_pydatetime(), "end": plan.live_end.to_pydatetime()},
        ).df()
        jobs = con.execute(
            f"""
            SELECT job, count(*) AS runs,
                   count(*) FILTER (WHERE status = 'ok') AS ok,
                   count(*) FILTER (WHERE status = 'skipped') AS skipped,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   median(duration_s) AS median_s, max(duration_s) AS max_s, max(lag_s) AS max_lag_s
            FROM {JOB_RUNS.name} WHERE started_at >= $start AND started_at <= $end
            GROUP BY job ORDER BY job
            """,
            {"start": plan.live_start.to_pydatetime(), "end": plan.live_end.to_pydatetime()},
        ).df()
    finally:
        con.close()
    quality = quality_table(rows, threshold=settings.shortage_threshold)
    served = batch_success_rate(lake=lake, city=settings.city, start=plan.live_start, end=plan.live_end)
    shadow = batch_success_rate(lake=lake, city=settings.city, start=plan.live_start, end=plan.live_end, shadow=True)
    batches: dict[str, object] = {
        "served ok": served.ok,
        "failed": served.failed,
        "skipped": served.skipped,
        "success rate": f"{served.rate:.1%}" if served.rate is not None else "n/a",
        "shadow ok": shadow.ok,
        "shadow skipped (same versions or no staging)": shadow.skipped,
    }
    compaction = compaction_lines(lake, city=settings.city)
    alerts = alert_frame(AlertStore(lake, city=settings.city).alerts(include_resolved=True))
    if len(alerts):
        alerts = alerts.groupby(["rule", "severity", "status"], as_index=False).size().rename(columns={"size": "count"})
    return DemoSummary(
        urls=urls,
        quality=quality,
        latency=endpoint_latency(endpoint_url),
        batches=batches,
        alerts=alerts,
        jobs=jobs,
        promotions=promotions,
        timings=timings,
        replay_speed=replay_speed,
        compaction=compaction,
    )


def compaction_lines(lake: Lake, *, city: str) -> list[str]:
    """What compaction left, per minute-grain table with a compacted day: its days and the minute files still open."""
    from bikeshare.lake.compaction import MINUTE_TABLES

    out = []
    for spec in MINUTE_TABLES:
        days = lake.compacted_days(spec, city=city)
        if days:
            held = sum(len(lake.compacted_entries(spec, city=city, day=day)) for day in days)
            still = sum(len(names) for names in lake.minute_files(spec, city=city).values())
            out.append(
                f"{spec.name}: {len(days)} day(s) {days[0]}..{days[-1]} in {len(days)} file(s) "
                f"(were {held} minute files); {still} minute files open"
            )
    return out


def endpoint_latency(endpoint_url: str) -> dict[str, float | None]:
    """Requests and p50/p95/p99 of /invocations since the endpoint started (its /metrics)."""
    from datetime import UTC, datetime

    from bikeshare.monitoring.endpoint_metrics import parse_scrape, window_between

    try:
        text = httpx.get(f"{endpoint_url}/metrics", timeout=5.0).text
        window = window_between(None, parse_scrape(text, observed_at=datetime.now(UTC)))
    except Exception as exc:  # the summary still prints without it
        log.warning("endpoint metrics unreadable: %s", exc)
        return {"requests": None}
    route = window.route("/invocations")
    if route is None:
        return {"requests": 0}
    return {"requests": route.requests, "p50": route.p50_ms, "p95": route.p95_ms, "p99": route.p99_ms}


def write_model_card(
    *, client: object, lake: Lake, settings: Settings, plan: DemoPlan, summary: DemoSummary, dest: Path
) -> Path:
    """``model_card.md``: the production versions' training model cards plus their online quality in this run."""
    import tempfile

    from bikeshare.registry.client import alias_holder, model_name, reachable, uri_of

    parts = [
        "# Model card (generated by `bikeshare demo`)",
        "",
        f"Generated from a demo run on the shipped slice: trained on the {plan.train_days:g} days before "
        f"{plan.live_start:%Y-%m-%d %H:%M}Z, then scored live on the replay clock until "
        f"{plan.live_end:%Y-%m-%d %H:%M}Z. The demo's boosting is smaller than the default "
        f"(train_num_trees={settings.train_num_trees}); regenerate with `make demo`.",
        "",
        "## Online quality in the demo run (served predictions joined with what happened)",
        "",
        _markdown(summary.quality),
        "",
    ]
    for target in ("bikes", "docks"):
        name = model_name(settings.city, target)
        holder = alias_holder(client, name, "production")  # type: ignore[arg-type]
        if holder is None:
            continue
        with tempfile.TemporaryDirectory() as tmp, reachable(uri_of(client)):  # type: ignore[arg-type]
            try:
                local = client.download_artifacts(holder.run_id, "model_card.md", tmp)  # type: ignore[attr-defined]
            except Exception as exc:
                parts += [f"## {name} v{holder.version}", "", f"(model card not readable: {exc})", ""]
                continue
            card = Path(local).read_text(encoding="utf-8")
        parts += [f"## {name} v{holder.version} (production)", "", _demote_headings(card), ""]
    path = dest / "model_card.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no joined predictions)"
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([head, rule, *body])


def _demote_headings(text: str) -> str:
    return "\n".join("##" + line if line.startswith("#") else line for line in text.splitlines())
