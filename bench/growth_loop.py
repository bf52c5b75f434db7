"""The world of ``bench/lake_growth.py``: a lake grown from shifted copies of a recording, plus the loop's tables.

Raw data goes through the real backfill (``ingest.backfill.backfill``) from a recording cut of copy
``k`` of the shared 4-week recording with every time moved ``k * 28`` days later. The loop's own
tables are synthetic (random values, real schemas, real file layout and cadence of the runner's
jobs): per 5-minute slot one ``inference`` file (every station x 2 targets, production), one
``forecasts`` file (every station x 2 horizons), one ``inference_batches`` record file and one
``quality`` file (the slot joined 30 minutes later); ``job_runs`` as the runner's recorder writes them
(one file per minute that had runs: ingest every minute, infer/actuals every 5, the hourly and daily
jobs); hourly ``plans``, ``monitoring_runs``, ``monitor_metrics``, ``endpoint_metrics`` and a few
``alert_events`` a day. The last slot of each growth step is scored for real (the bench's inference
batch), so the synthetic slots stop before it.

Ages count from the recording's first UTC day; copy ``k`` fills days ``[28k, 28k + 28)``. The
recording starts at 18:47 on its first day, so each copy leaves ~19 h without snapshots at the start
of its 28 days (as a feed outage would). The recording holds ~127 snapshots a day (a snapshot about
every 11 minutes, not every minute), so station_status gets ~127 files a day, not 1,440.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CITY = "sf"
COPY_DAYS = 28
SLOT_MIN = 5
MINUTE_TABLE_NAMES = ("station_status", "inference", "forecasts", "plans", "station_information_versions")
TIME_COLUMNS = ("last_updated", "last_reported", "fetched_at")


def disk_usage(lake_root: Path) -> dict[str, tuple[int, int]]:
    """(files, bytes) per table folder of the lake (``<prefix>`` up to ``city=``)."""
    out: dict[str, list[int]] = {}
    for folder, _dirs, files in os.walk(lake_root):
        rel = Path(folder).relative_to(lake_root).parts
        if not files or not any(p.startswith("city=") for p in rel):
            continue
        table = "/".join(p for p in rel[: next(i for i, p in enumerate(rel) if p.startswith("city="))])
        entry = out.setdefault(_table_name(table), [0, 0])
        for name in files:
            entry[0] += 1
            entry[1] += (Path(folder) / name).stat().st_size
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def _table_name(prefix: str) -> str:
    from bikeshare.lake.tables import ALL_TABLES

    for spec in ALL_TABLES:
        if spec.prefix == prefix:
            return spec.name
    return prefix


def shifted_cut(base: Path, dest: Path, *, copy: int, start: pd.Timestamp, end: pd.Timestamp) -> Path | None:
    """A recording of copy ``copy`` (times + copy * 28 days) with the snapshots in [start, end); None if empty."""
    from bikeshare.gbfs.recording import INFORMATION_FILE, MANIFEST, STATUS_FILE

    if (dest / MANIFEST).is_file():
        return dest
    table = pq.read_table(base / STATUS_FILE)
    shift = pa.scalar(timedelta(days=COPY_DAYS * copy), pa.duration("us"))
    for name in TIME_COLUMNS:
        index = table.schema.get_field_index(name)
        column = table.column(name)
        table = table.set_column(index, name, pc.add(column, shift).cast(column.type))
    stamps = table.column("last_updated")
    kept = table.filter(pc.and_(pc.greater_equal(stamps, start.to_pydatetime()), pc.less(stamps, end.to_pydatetime())))
    if kept.num_rows == 0:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    pq.write_table(kept, dest / STATUS_FILE)
    (dest / INFORMATION_FILE).write_bytes((base / INFORMATION_FILE).read_bytes())
    manifest = json.loads((base / MANIFEST).read_text())
    times = pd.to_datetime(kept.column("last_updated").to_pandas(), utc=True)
    manifest.update(start=times.min().isoformat(), end=times.max().isoformat(), snapshots=int(times.nunique()))
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return dest


@dataclass
class World:
    """The bench's lake, registry, endpoint and state (``world.json``: how far it is grown)."""

    work: Path
    base: Path  # the converted recording
    bench: Path  # bench/lake_growth.py (for its --rss-child wrapper)
    settings: Any
    lake: Any
    start: pd.Timestamp  # the recording's first day (ages count from it)
    first: pd.Timestamp  # its first snapshot
    stations: list[str]
    state: dict[str, Any] = field(default_factory=dict)
    endpoint: Any = None
    client: Any = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))

    @classmethod
    @contextmanager
    def open(cls, work: Path, shared: Path, *, bench: Path) -> Iterator[World]:
        from bikeshare.lake.store import Lake
        from bikeshare.settings import Settings
        from shared_data import shared_recording

        recording = shared_recording(shared, work)
        settings = Settings(
            city=CITY,
            lake_uri=str(work / "lake"),
            state_dir=work / "state",
            weather_enabled=False,
            compaction_remove_after_s=0.0,
            pipeline_train_days=28,
            infer_retry_base_delay_s=0.0,
            serve_model_poll_s=600.0,
        )
        info = recording.information_versions()[-1][1]
        state_file = work / "world.json"
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        world = cls(
            work=work,
            base=recording.path,
            bench=bench,
            settings=settings,
            lake=Lake.open(settings.lake_uri),
            start=recording.start.floor("D"),
            first=recording.start,
            stations=sorted(info["station_id"].astype(str)),
            state=state,
        )
        try:
            yield world
        finally:
            if world.endpoint is not None:
                world.endpoint.stop()

    # --- growth --------------------------------------------------------------------------------

    @property
    def lake_root(self) -> Path:
        return Path(self.settings.lake_uri)

    @property
    def end(self) -> pd.Timestamp:
        """The newest snapshot in the lake."""
        return pd.Timestamp(self.state["end"])

    @property
    def days(self) -> int:
        return int(self.state.get("days", 0))

    def save(self) -> None:
        (self.work / "world.json").write_text(json.dumps(self.state, indent=1))

    def grow_to(self, days: int, *, say: Callable[[str], None]) -> None:
        """Backfill and fill the loop's tables up to ``days`` days after the recording's first day."""
        from bikeshare.gbfs.recording import Recording
        from bikeshare.ingest.backfill import backfill

        if self.days >= days:
            self.ensure_models(say)
            return
        lo = self.start + pd.Timedelta(days=self.days)
        hi = self.start + pd.Timedelta(days=days)
        for copy in range(self.days // COPY_DAYS, (days - 1) // COPY_DAYS + 1):
            copy_lo = max(lo, self.start + pd.Timedelta(days=COPY_DAYS * copy))
            copy_hi = min(hi, self.start + pd.Timedelta(days=COPY_DAYS * (copy + 1)))
            dest = self.work / "copies" / f"{copy:02d}-{copy_lo:%Y%m%d}-{copy_hi:%Y%m%d}"
            cut = shifted_cut(self.base, dest, copy=copy, start=copy_lo, end=copy_hi)
            if cut is None:
                continue
            report = backfill(recording=Recording.open(cut), lake=self.lake, settings=self.settings, workers=2)
            say(f"backfill copy {copy} {copy_lo:%Y-%m-%d}..{copy_hi:%Y-%m-%d}: {report.summary()}")
        self.state["end"] = self._newest_snapshot().isoformat()
        loop_from = pd.Timestamp(self.state.get("loop_until", self.first.ceil(f"{SLOT_MIN}min").isoformat()))
        loop_until = self.end.floor(f"{SLOT_MIN}min") - pd.Timedelta(minutes=SLOT_MIN)
        self.fill_loop(loop_from, loop_until, say=say)
        self.state.update(days=days, loop_until=(loop_until + pd.Timedelta(minutes=SLOT_MIN)).isoformat())
        self.save()
        self.ensure_models(say)

    def _newest_snapshot(self) -> pd.Timestamp:
        from bikeshare.lake.store import parse_partition_value
        from bikeshare.lake.tables import STATION_STATUS

        newest = self.lake.partitions(STATION_STATUS, city=CITY)[-1]
        con = self.lake.connect()
        try:
            floor = parse_partition_value(newest)
            value = con.execute(
                "SELECT max(last_updated) FROM station_status WHERE last_updated >= ?", [floor.to_pydatetime()]
            ).fetchone()[0]
        finally:
            con.close()
        return pd.Timestamp(value).tz_convert("UTC")

    # --- the loop's own tables (synthetic values, real shapes) --------------------------------

    def fill_loop(self, start: pd.Timestamp, end: pd.Timestamp, *, say: Callable[[str], None]) -> None:
        """The runner's outputs for the slots in [start, end)."""
        day = start.floor("D")
        while day < end:
            lo, hi = max(day, start), min(day + pd.Timedelta(days=1), end)
            if lo < hi:
                files = self._fill_span(lo, hi)
                if day.day % 7 == 0 or hi == end:
                    say(f"loop tables {lo:%Y-%m-%d}: {files} files")
            day += pd.Timedelta(days=1)

    def _fill_span(self, lo: pd.Timestamp, hi: pd.Timestamp) -> int:
        from bikeshare.lake.store import partition_value
        from bikeshare.lake.tables import (
            ALERT_EVENTS,
            ENDPOINT_METRICS,
            FORECASTS,
            INFERENCE,
            INFERENCE_BATCHES,
            JOB_RUNS,
            MONITOR_METRICS,
            MONITORING_RUNS,
            PLANS,
            QUALITY,
            Grain,
        )

        write = self.lake.write
        n = len(self.stations)
        stations = np.array(self.stations * 2, dtype=object)
        targets = np.array(["bikes"] * n + ["docks"] * n, dtype=object)
        files = 0
        for slot in pd.date_range(lo, hi, freq=f"{SLOT_MIN}min", inclusive="left"):
            minute = partition_value(slot, Grain.MINUTE)
            day = partition_value(slot, Grain.DAY)
            batch_id = f"{slot:%Y%m%dT%H%M}Z-production-{slot.value % 99991:05d}"
            started = slot + pd.Timedelta(seconds=20)
            proba = self.rng.random(2 * n)
            counts = self.rng.integers(0, 20, 2 * n).astype("int32")
            prediction = {
                "batch_id": batch_id,
                "prediction_time": started,
                "feature_time": slot,
                "target_time": slot + pd.Timedelta(minutes=30),
                "horizon_min": np.full(2 * n, 30, "int32"),
                "station_id": stations,
                "target": targets,
                "alias": "production",
                "model_name": np.where(targets == "bikes", f"{CITY}-bikes", f"{CITY}-docks"),
                "model_version": "1",
                "probability": proba,
                "decision": proba > 0.5,
                "threshold": np.full(2 * n, 0.5),
                "current_count": counts,
                "capacity": np.full(2 * n, 20, "int32"),
                "shadow": np.zeros(2 * n, bool),
            }
            write(INFERENCE, pd.DataFrame(prediction), city=CITY, dt=minute, name="production")
            write(FORECASTS, self._forecasts(slot, started, batch_id), city=CITY, dt=minute, name="production")
            batch = {
                "batch_id": batch_id,
                "feature_time": slot,
                "started_at": started,
                "finished_at": started + pd.Timedelta(seconds=1),
                "duration_s": 0.8 + 0.4 * float(self.rng.random()),
                "status": "ok",
                "rows": 2 * n,
                "stations_scored": n,
                "stations_masked": 0,
                "stations_missing": 0,
                "attempts": 1,
                "endpoint": "http://127.0.0.1",
                "alias": "production",
                "shadow": False,
                "model_versions": json.dumps({"bikes": "1", "docks": "1"}),
                "forecast_status": "ok",
            }
            write(
                INFERENCE_BATCHES,
                pa.Table.from_pylist([batch], schema=INFERENCE_BATCHES.schema),
                city=CITY,
                dt=day,
                name=f"{started:%Y%m%dT%H%M%S}-{batch_id}",
            )
            joined = pd.DataFrame(prediction).assign(
                actual_count=self.rng.integers(0, 20, 2 * n).astype("int32"),
                actual_time=slot + pd.Timedelta(minutes=30),
                status="joined",
                joined_at=slot + pd.Timedelta(minutes=35),
            )
            joined["actual_label"] = joined["actual_count"] <= 2
            target_day = partition_value(slot + pd.Timedelta(minutes=30), Grain.DAY)
            write(QUALITY, joined, city=CITY, dt=target_day, name=f"actuals-{slot:%Y%m%dT%H%M}")
            files += 4
            for offset in range(SLOT_MIN):
                files += self._job_runs(slot + pd.Timedelta(minutes=offset), JOB_RUNS)
            if slot.minute == 0:
                files += self._hourly(slot, PLANS, MONITORING_RUNS, MONITOR_METRICS, ENDPOINT_METRICS, ALERT_EVENTS)
        return files

    def _forecasts(self, slot: pd.Timestamp, started: pd.Timestamp, batch_id: str) -> pd.DataFrame:
        n = len(self.stations)
        horizons = np.repeat(np.array([30, 60], "int32"), n)
        expected = self.rng.random(2 * n) * 20
        return pd.DataFrame(
            {
                "batch_id": batch_id,
                "prediction_time": started,
                "feature_time": slot,
                "target_time": slot + pd.to_timedelta(horizons, unit="min"),
                "horizon_min": horizons,
                "station_id": self.stations * 2,
                "alias": "production",
                "model_name": f"{CITY}-forecast",
                "model_version": "1",
                "p_no_bikes": self.rng.random(2 * n) * 0.2,
                "p_no_docks": self.rng.random(2 * n) * 0.2,
                "expected_bikes": expected,
                "bikes_lo": expected * 0.6,
                "bikes_hi": expected * 1.4,
                "current_bikes": self.rng.integers(0, 20, 2 * n).astype("int32"),
                "current_docks": self.rng.integers(0, 20, 2 * n).astype("int32"),
                "capacity": np.full(2 * n, 20, "int32"),
            }
        )

    def _job_runs(self, minute: pd.Timestamp, spec: Any) -> int:
        """The runs of one minute as the recorder writes them (one file per flush that had rows)."""
        from bikeshare.lake.store import partition_value
        from bikeshare.lake.tables import Grain

        jobs = ["ingest"]
        if minute.minute % SLOT_MIN == 0:
            jobs += ["infer", "actuals"]
        if minute.minute == 0:
            jobs += ["monitor", "plan", "compact"]
            if minute.hour == 3:
                jobs += ["retrain", "retention"]
        rows = []
        for job in jobs:
            duration = float(self.rng.gamma(2.0, 0.3 if job in ("ingest", "infer", "actuals") else 5.0))
            rows.append(
                {
                    "run_id": f"{job}-{minute:%Y%m%dT%H%M%S}-{self.rng.integers(1 << 30):08x}",
                    "job": job,
                    "scheduled_at": minute,
                    "started_at": minute,
                    "finished_at": minute + pd.Timedelta(seconds=duration).round("us"),
                    "duration_s": duration,
                    "lag_s": 0.0,
                    "status": "ok",
                    "error": None,
                    "details": "{}",
                }
            )
        name = f"runs-{minute:%Y%m%dT%H%M%S}"
        table = pa.Table.from_pylist(rows, schema=spec.schema)
        self.lake.write(spec, table, city=CITY, dt=partition_value(minute, Grain.DAY), name=name)
        return 1

    def _hourly(self, at: pd.Timestamp, plans: Any, runs: Any, metrics: Any, endpoint: Any, alerts: Any) -> int:
        from bikeshare.lake.store import partition_value
        from bikeshare.lake.tables import Grain

        day = partition_value(at, Grain.DAY)
        stops = 12
        plan_id = f"plan-{at:%Y%m%dT%H%M}"
        rows = 2 * stops + 1
        arrival = at + pd.to_timedelta(np.r_[0, np.arange(stops) * 4, np.arange(stops) * 4], unit="min")
        summary = {
            "trucks": 2,
            "truck_capacity": 20,
            "horizon_min": 60,
            "time_limit_s": 10.0,
            "solve_s": float(self.rng.random() * 5),
            "travel_cost": 120.0,
            "stockout_min_no_action": 900.0,
            "stockout_min_plan": 400.0,
            "stockout_min_greedy": 520.0,
            "travel_min_plan": 95.0,
            "travel_min_greedy": 110.0,
            "bikes_moved_plan": 60,
            "bikes_moved_greedy": 55,
            "stations_in_need": 30,
            "depot_lat": 37.77,
            "depot_lon": -122.42,
        }
        plan = pd.DataFrame(
            {
                "plan_id": plan_id,
                "as_of": at,
                "created_at": at + pd.Timedelta(seconds=30),
                "method": ["summary"] + ["optimised"] * stops + ["greedy"] * stops,
                "status": "optimal",
                "forecaster": "model",
                "truck": np.r_[0, np.arange(stops) % 2, np.arange(stops) % 2].astype("int32"),
                "stop_seq": np.r_[0, np.arange(stops), np.arange(stops)].astype("int32"),
                "station_id": [None, *list(self.rng.choice(self.stations, 2 * stops))],
                "name": [None] + [f"station {i}" for i in range(2 * stops)],
                "lat": 37.75 + self.rng.random(rows) * 0.05,
                "lon": -122.45 + self.rng.random(rows) * 0.05,
                "action": [None] + ["load", "unload"] * stops,
                "quantity": np.r_[0, self.rng.integers(1, 10, 2 * stops)].astype("int32"),
                "arrival": arrival,
                "departure": arrival + pd.Timedelta(minutes=2),
                "load_after": self.rng.integers(0, 20, rows).astype("int32"),
                "avoided_min": self.rng.random(rows) * 30,
                **summary,
            }
        )
        self.lake.write(plans, plan, city=CITY, dt=partition_value(at, Grain.MINUTE), name=plan_id)
        run_id = f"{at:%Y%m%dT%H%M%S}-{at.value % 99991:08x}"
        window = {"evaluated_at": at, "window_start": at - pd.Timedelta(hours=1), "window_end": at}
        self.lake.write(
            runs,
            pd.DataFrame(
                [
                    {
                        "run_id": run_id,
                        **window,
                        "started_at": at,
                        "duration_s": 2.0,
                        "status": "ok",
                        "signals": "[]",
                        "signals_measured": 12,
                        "signals_missing": 0,
                        "alerts_fired": 0,
                        "alerts_resolved": 0,
                        "routes_ok": 0,
                        "routes_failed": 0,
                        "notes": "[]",
                    }
                ]
            ),
            city=CITY,
            dt=day,
            name=run_id,
        )
        names = ["rows", "pass_rate", "pr_auc_24h", "f1_24h", "batches_ok", "batch_p95_s"] * 5
        self.lake.write(
            metrics,
            pd.DataFrame(
                {
                    "run_id": run_id,
                    **window,
                    "family": ["data_quality", "model_quality", "inference", "jobs", "data_quality"] * 6,
                    "metric": names,
                    "subject": "",
                    "value": self.rng.random(len(names)),
                }
            ),
            city=CITY,
            dt=day,
            name=run_id,
        )
        self.lake.write(
            endpoint,
            pd.DataFrame(
                [
                    {
                        "observed_at": at,
                        "window_start": at - pd.Timedelta(hours=1),
                        "window_end": at,
                        "route": "all",
                        "requests": 600,
                        "errors": 0,
                        "error_rate": 0.0,
                        "p50_ms": 9.0,
                        "p95_ms": 30.0,
                        "p99_ms": 48.0,
                        "model_versions": "{}",
                    }
                ]
            ),
            city=CITY,
            dt=day,
            name=run_id,
        )
        written = 4
        if at.hour in (8, 17):  # an alert fires in the rush hour and resolves the next hour
            written += self._alert(at, alerts, day)
        return written

    def _alert(self, at: pd.Timestamp, spec: Any, day: str) -> int:
        alert_id = f"alert-{at:%Y%m%dT%H}"
        rows = [
            {
                "event_id": f"{alert_id}-{event}",
                "alert_id": alert_id,
                "event": event,
                "status": status,
                "event_at": at + pd.Timedelta(minutes=offset),
                "recorded_at": at + pd.Timedelta(minutes=offset),
                "seq": np.int32(seq),
                "rule": "data_age",
                "fingerprint": "data_age{}",
                "signal": "data_age_s",
                "labels": "{}",
                "severity": "warning",
                "value": 900.0,
                "threshold": 600.0,
                "comparison": ">",
                "message": "data older than 10 minutes",
                "observed_at": at,
                "started_at": at,
                "evaluations": np.int32(1),
                "details": "{}",
            }
            for seq, (event, status, offset) in enumerate([("fired", "firing", 0), ("resolved", "resolved", 60)])
        ]
        self.lake.write(spec, pd.DataFrame(rows), city=CITY, dt=day, name=alert_id)
        return 1

    # --- models and endpoint -------------------------------------------------------------------

    def ensure_models(self, say: Callable[[str], None]) -> None:
        """Small LightGBM models on the first day's features, registered production; the endpoint serving them."""
        from bikeshare.features.build import build_features
        from bikeshare.orchestration.drills.endpoint import ThreadedEndpoint, registry_provider
        from bikeshare.registry.client import open_client

        if self.client is None:
            self.client = open_client(self.settings)
        if not self.state.get("models"):
            import inference_batch  # bench/inference_batch.py: its fit_and_register

            day = self.start + pd.Timedelta(days=1)
            frame = build_features(lake=self.lake, start=day, end=day + pd.Timedelta(hours=23), settings=self.settings)
            inference_batch.fit_and_register(frame, self.settings)
            self.state["models"] = True
            self.save()
            say(f"models trained on {len(frame)} feature rows of {day:%Y-%m-%d} and registered as production")
        if self.endpoint is None:
            provider = registry_provider(self.settings, lambda: self.client)
            self.endpoint = ThreadedEndpoint(self.settings, provider, self.lake).start()
            self.settings = self.settings.with_values(endpoint_url=self.endpoint.url)

    # --- the measured paths --------------------------------------------------------------------

    def ingest_next_snapshot(self) -> tuple[float, str]:
        """One snapshot after the lake's end through ``ingest_once`` against a ReplayServer: (seconds, outcome)."""
        import time

        from bikeshare.gbfs.client import GbfsClient
        from bikeshare.gbfs.recording import Recording
        from bikeshare.gbfs.replay import ReplayServer
        from bikeshare.ingest.poller import ingest_once

        end = self.end
        copy = int((end - self.start) / pd.Timedelta(days=COPY_DAYS))
        dest = self.work / "next" / f"{end:%Y%m%dT%H%M%S}"
        cut = shifted_cut(
            self.base, dest, copy=copy, start=end + pd.Timedelta(seconds=1), end=end + pd.Timedelta(days=1)
        )
        if cut is None:  # the copy ends here: the next copy's first snapshot
            cut = shifted_cut(
                self.base, dest, copy=copy + 1, start=end + pd.Timedelta(seconds=1), end=end + pd.Timedelta(days=1)
            )
        recording = Recording.open(cut)
        first = recording.start
        with ReplayServer(recording, start=first, paused=True) as replay:
            wall = time.perf_counter()

            def clock() -> pd.Timestamp:
                return (first + pd.Timedelta(seconds=5 + time.perf_counter() - wall)).floor("us")

            with GbfsClient.from_settings(self.settings, discovery_url=replay.discovery_url, utc_now=clock) as client:
                started = time.perf_counter()
                outcome = ingest_once(client=client, lake=self.lake, settings=self.settings, clock=clock)
                seconds = time.perf_counter() - started
        if outcome.published_at is not None:
            self.state["end"] = max(self.end, pd.Timestamp(outcome.published_at)).isoformat()
            self.save()
        return seconds, str(outcome.outcome)

    def online_features(self, now: pd.Timestamp) -> pd.DataFrame:
        from bikeshare.features.build import online_features

        return online_features(lake=self.lake, at=now, settings=self.settings)

    def inference_batch(self, now: pd.Timestamp) -> Any:
        from bikeshare.inference.batch import run_inference_batch
        from bikeshare.inference.endpoint_client import EndpointClient

        with EndpointClient.from_settings(self.settings) as endpoint:
            return run_inference_batch(lake=self.lake, endpoint=endpoint, settings=self.settings, now=now)

    def monitor_run(self, now: pd.Timestamp) -> Any:
        from bikeshare.monitoring.job import endpoint_source, run_monitor
        from bikeshare.monitoring.rules import load_rules

        source = endpoint_source(self.settings, self.endpoint.url)
        return run_monitor(
            lake=self.lake,
            settings=self.settings,
            now=now,
            endpoint_metrics_source=source,
            rules=load_rules(None),
            sinks=[],
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIKESHARE_")}
        env.update(
            BIKESHARE_CITY=CITY,
            BIKESHARE_LAKE_URI=self.settings.lake_uri,
            BIKESHARE_STATE_DIR=str(self.settings.state_dir),
            BIKESHARE_WEATHER_ENABLED="false",
            BIKESHARE_PIPELINE_TRAIN_DAYS="28",
        )
        return env

    def dashboard_first_views(self) -> dict[str, float]:
        """Seconds of each page's first view, one fresh process each (``bench/dashboard_load.py``)."""
        import dashboard_load

        out = {}
        for page in dashboard_load.PAGES:
            result = dashboard_load.measure(page, "served", self.env())
            if "error" in result:
                raise RuntimeError(f"{page}: the page raised: {result['error']}")
            out[page] = float(result["first"])
        return out

    def sql(self, query: str) -> float:
        """Wall seconds of ``bikeshare sql QUERY`` in a subprocess."""
        import time

        command = [str(Path(sys.executable).with_name("bikeshare")), "sql", query]
        started = time.perf_counter()
        done = subprocess.run(command, env=self.env(), capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if done.returncode:
            raise RuntimeError(f"bikeshare sql failed ({done.returncode}): {done.stderr[-2000:]}")
        return seconds

    def retrain(self, now: pd.Timestamp) -> dict[str, Any]:
        """``bikeshare pipeline --end NOW`` (28 training days) under the RSS wrapper: seconds, peak MB, exit."""
        command = [str(Path(sys.executable).with_name("bikeshare")), "pipeline", "--end", now.isoformat()]
        done = subprocess.run(
            [sys.executable, str(self.bench), "--rss-child", *command],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["exit"] not in (0, 1):  # 1: a gate refused (the run still trained)
            raise RuntimeError(f"retrain failed ({result['exit']}): {result['tail']}")
        return result
