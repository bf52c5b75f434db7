"""Build the lake the dashboard load benchmark reads: 4 weeks of the shared recording plus 3 weeks of
the system's own records at the volume a running deployment leaves behind.

Steps (each skipped when its output is already there, so a re-run resumes):

1. ``bikeshare recording import`` of the shared Bay Wheels recording, then ``backfill`` (4 weeks).
2. Features of 2023-03-05..07 (``build_features``), two small LightGBM versions per target logged to
   a real MLflow store and promoted through the gate (v1 production, forced; v2 staging).
3. Inference for every 5-minute slot from 2023-03-09 until 2 h before the end of the recording:
   the features of each day (``build_features``), scored with the production bundle in process and
   written by the batch job's own ``prediction_rows`` (one file per slot) with one
   ``inference_batches`` record per slot. A 30-minute endpoint outage on 2023-03-20 is recorded as
   failed batches. The last 2 h go through the real path: ``bikeshare serve``'s app on a loopback
   port and ``run_inference_batch`` (production served, staging in shadow).
4. ``run_actuals`` over all of it (quality), a drift evaluation per day against the training
   baselines, alert cycles on the signals read back from the lake, and a rebalancing plan.
5. ``job_runs`` and ``endpoint_metrics`` have no writer yet (loop runner, monitor job): one row per
   scheduled run (one file each, as a runner appends) and hourly endpoint windows are written in
   their schemas, with plausible made-up durations and latencies.

    .venv/bin/python bench/dashboard_lake.py --root /tmp/dashboard-bench [--shared ../shared/data]

The shared folder comes from ``--shared``, else BIKESHARE_SHARED_DATA, else ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CITY = "sf"
TRAIN_START, TRAIN_END = pd.Timestamp("2023-03-05T00:00Z"), pd.Timestamp("2023-03-07T23:55Z")
SCORE_START = pd.Timestamp("2023-03-09T00:00Z")
REAL_PATH_HOURS = 2
OUTAGE = (pd.Timestamp("2023-03-20T16:00Z"), pd.Timestamp("2023-03-20T16:30Z"))
FEATURES = (
    "bikes",
    "docks",
    "capacity",
    "fill_ratio",
    "net_flow_15",
    "net_flow_30",
    "net_flow_60",
    "bikes_min_60",
    "docks_min_60",
    "short_bikes_slots_60",
    "short_docks_slots_60",
    "nb_bikes",
    "nb_docks",
    "hist_short_bikes_h",
    "hist_short_docks_h",
    "hour_local",
    "weekday",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def settings_for(root: Path, **extra: Any) -> Any:
    from bikeshare.settings import Settings

    return Settings(
        city=CITY,
        lake_uri=str(root / "lake"),
        state_dir=root / "state",
        weather_enabled=False,
        infer_retry_base_delay_s=0.0,
        serve_model_poll_s=600.0,
        **extra,
    )


def ensure_backfill(root: Path, shared: Path) -> None:
    from bikeshare.ingest.backfill import backfill
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import STATION_STATUS

    settings = settings_for(root)
    lake = Lake.open(settings.lake_uri)
    if lake.partitions(STATION_STATUS, city=CITY, dt_glob="2023-03-29*"):
        return
    from shared_data import shared_recording

    recording = shared_recording(shared, root)
    log("backfilling 4 weeks")
    report = backfill(recording=recording, lake=lake, settings=settings, workers=2)
    log(f"backfill: {report}")


def shared_worlds() -> Any:
    """``tests/support/worlds.py``, the world builders the tests share (``tests/`` put on ``sys.path``)."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support import worlds

    return worlds


def fit(frame: pd.DataFrame, target: str, *, rounds: int, threshold: float) -> Any:
    """A LightGBM bundle on FEATURES, with its report against persistence on the last day."""
    return shared_worlds().fit_quick_run(
        frame,
        target,
        rounds=rounds,
        seed=7,
        test_from=TRAIN_END.floor("D"),
        features=FEATURES,
        decision_threshold=threshold,
        num_leaves=31,
        num_threads=2,
        params={"rounds": rounds},
        data_window=(TRAIN_START.isoformat(), TRAIN_END.isoformat()),
    )


def ensure_models(root: Path) -> dict[str, Any]:
    """Registered versions (v1 production, v2 staging) per target; returns the production bundles."""
    from bikeshare.features.build import build_features
    from bikeshare.lake.store import Lake
    from bikeshare.registry.client import list_versions, load_bundle, model_name, open_client

    settings = settings_for(root)
    lake = Lake.open(settings.lake_uri)
    client = open_client(settings)
    if not list_versions(client, model_name(CITY, "docks")):
        log("features for training")
        frame = build_features(lake=lake, start=TRAIN_START, end=TRAIN_END, settings=settings)
        worlds = shared_worlds()
        for target in ("bikes", "docks"):
            log(f"training {target} (60 and 120 rounds)")
            runs = [fit(frame, target, rounds=rounds, threshold=0.35) for rounds in (60, 120)]
            _, outcomes = worlds.register_production_and_staging(
                frame, target, runs=runs, client=client, lake=lake, settings=settings, note="dashboard bench",
                actor="bench", created_at=TRAIN_END, force_staging=False, commit="bench", say=log,
            )  # fmt: skip
            for outcome in outcomes:
                log(f"  {outcome.message}")
    bundles = {}
    for target in ("bikes", "docks"):
        bundles[target], _ = load_bundle(
            client, model_name(CITY, target), "production", settings.state_dir / "bundles", num_threads=2
        )
    return bundles


def _end_of_recording(root: Path) -> pd.Timestamp:
    from bikeshare.lake.store import Lake, parse_partition_value
    from bikeshare.lake.tables import STATION_STATUS

    lake = Lake.open(settings_for(root).lake_uri)
    return parse_partition_value(lake.partitions(STATION_STATUS, city=CITY, dt_glob="2023-03-29*")[-1])


def score_offline(root: Path, bundles: dict[str, Any], until: pd.Timestamp) -> None:
    """Inference files and batch records for every slot of [SCORE_START, until), a day at a time."""
    from bikeshare.features.build import build_features
    from bikeshare.inference.batch import BatchRecord, prediction_rows
    from bikeshare.inference.endpoint_client import Invocation, ModelRef
    from bikeshare.lake.store import Lake, partition_value
    from bikeshare.lake.tables import INFERENCE, INFERENCE_BATCHES, Grain
    from bikeshare.registry.client import model_name

    settings = settings_for(root)
    lake = Lake.open(settings.lake_uri)
    refs = {
        t: ModelRef(name=model_name(CITY, t), version="1", threshold=float(b.meta.decision_threshold))
        for t, b in bundles.items()
    }
    day = SCORE_START
    while day < until:
        day_end = min(day + pd.Timedelta(hours=23, minutes=55), until - pd.Timedelta(minutes=5))
        if lake.partitions(INFERENCE_BATCHES, city=CITY, dt_glob=f"{day:%Y-%m-%d}"):  # records come last
            day += pd.Timedelta(days=1)
            continue
        log(f"scoring {day:%Y-%m-%d}")
        frame = build_features(lake=lake, start=day, end=day_end, settings=settings, with_labels=False)
        records = []
        for slot, rows in frame.groupby("slot", sort=True):
            slot = pd.Timestamp(slot)
            started = slot + pd.Timedelta(seconds=20)
            batch_id = f"{slot:%Y%m%dT%H%M}Z-production-bench"
            base = {
                "batch_id": batch_id,
                "feature_time": slot,
                "started_at": started,
                "endpoint": "http://bench",
                "alias": "production",
                "shadow": False,
                "stations_masked": 0,
                "stations_missing": 0,
            }
            if OUTAGE[0] <= slot < OUTAGE[1]:
                records.append(
                    BatchRecord(
                        **base,
                        finished_at=started + pd.Timedelta(seconds=42),
                        duration_s=42.0,
                        status="failed",
                        rows=0,
                        stations_scored=0,
                        attempts=4,
                        error="http://bench/invocations: ConnectError (after 4 attempt(s))",
                    )
                )
                continue
            rows = rows.reset_index(drop=True)
            matrix = rows.loc[:, list(FEATURES)].astype("float64").to_numpy(np.float64, na_value=np.nan)
            proba = {t: b.predict_proba(matrix) for t, b in bundles.items()}
            invocation = Invocation(
                alias="production",
                models=refs,
                probabilities=proba,
                decisions={t: bundles[t].decide(p) for t, p in proba.items()},
                station_id=None,
                attempts=1,
                elapsed_s=0.05,
            )
            out = prediction_rows(
                invocation, rows, batch_id=batch_id, prediction_time=started, slot=slot, horizon_min=30, shadow=False
            )
            lake.write(INFERENCE, out, city=CITY, dt=partition_value(slot, Grain.MINUTE), name="production")
            duration = 0.8 + 0.4 * np.sin(slot.hour)
            records.append(
                BatchRecord(
                    **base,
                    finished_at=started + pd.Timedelta(seconds=duration).round("us"),
                    duration_s=float(duration),
                    status="ok",
                    rows=len(out),
                    stations_scored=len(rows),
                    attempts=1,
                    error=None,
                    model_versions={"bikes": "1", "docks": "1"},
                )
            )
        for record in records:
            lake.write(
                INFERENCE_BATCHES,
                pd.DataFrame([record.row()]),
                city=CITY,
                dt=partition_value(record.feature_time, Grain.DAY),
                name=f"{record.started_at:%Y%m%dT%H%M%S}-{record.batch_id}",
            )
        day += pd.Timedelta(days=1)


def score_real(root: Path, start: pd.Timestamp, end: pd.Timestamp) -> None:
    """The last hours through the real endpoint and batch job (production served, staging shadow)."""
    from bikeshare.inference.batch import run_inference_batch
    from bikeshare.inference.endpoint_client import EndpointClient
    from bikeshare.lake.store import Lake

    worlds = shared_worlds()
    port = worlds.free_loopback_port()
    settings = settings_for(root, endpoint_url=f"http://127.0.0.1:{port}")
    lake = Lake.open(settings.lake_uri)
    with worlds.EndpointServer(settings, port), EndpointClient.from_settings(settings) as endpoint:
        for slot in pd.date_range(start, end, freq="5min", inclusive="left"):
            record = run_inference_batch(
                lake=lake,
                endpoint=endpoint,
                settings=settings,
                now=slot + pd.Timedelta(seconds=20),
                aliases=("production", "staging"),
            )
            log(f"real batch {record.summary().splitlines()[0]}")


def run_all_actuals(root: Path, end: pd.Timestamp) -> None:
    from bikeshare.inference.actuals import run_actuals
    from bikeshare.lake.store import Lake

    settings = settings_for(root, actuals_lookback_h=14)
    lake = Lake.open(settings.lake_uri)
    at = SCORE_START + pd.Timedelta(hours=12)
    while True:
        at = min(at, end)
        report = run_actuals(lake=lake, settings=settings, now=at)
        log(f"actuals at {at}: {report}")
        if at >= end:
            break
        at += pd.Timedelta(hours=12)


def monitor(root: Path, end: pd.Timestamp) -> None:
    """Daily drift evaluations and a few alert cycles on signals read back from the lake."""
    from bikeshare.features.build import build_features
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import DRIFT_SCORES
    from bikeshare.monitoring.alerts import Signal
    from bikeshare.monitoring.cycle import run_alert_cycle
    from bikeshare.monitoring.drift import drift_table
    from bikeshare.monitoring.rules import load_rules
    from bikeshare.monitoring.store import AlertStore, ack_alert, read_baselines, write_drift_scores
    from bikeshare.registry.client import model_name

    settings = settings_for(root)
    lake = Lake.open(settings.lake_uri)
    if not lake.partitions(DRIFT_SCORES, city=CITY):
        baselines = {
            t: read_baselines(lake, city=CITY, model_name=model_name(CITY, t), model_version="1", target=t)
            for t in ("bikes", "docks")
        }
        day = SCORE_START + pd.Timedelta(days=1)
        while day <= end:
            live = build_features(
                lake=lake, start=day - pd.Timedelta(hours=6), end=day, settings=settings, with_labels=False
            )
            for target, base in baselines.items():
                write_drift_scores(
                    lake,
                    drift_table(base, live),
                    city=CITY,
                    evaluated_at=day.to_pydatetime(),
                    window_start=(day - pd.Timedelta(hours=6)).to_pydatetime(),
                    window_end=day.to_pydatetime(),
                    model_name=model_name(CITY, target),
                    model_version="1",
                    target=target,
                )
            log(f"drift at {day}")
            day += pd.Timedelta(days=1)
    store = AlertStore(lake, city=CITY)
    if store.alerts(include_resolved=True):
        return
    con = lake.connect()
    quality = con.execute(
        "SELECT target, pr_auc, f1 FROM quality_rolling_24h WHERE NOT shadow QUALIFY window_end = max(window_end) "
        "OVER (PARTITION BY target)"
    ).df()
    drift = con.execute("SELECT target, max(psi) AS psi FROM drift_latest GROUP BY target").df()
    con.close()
    signals = [Signal("endpoint_p95_ms", 320.0), Signal("inference_failure_rate", 0.0)]
    signals += [Signal("model_pr_auc_24h", r.pr_auc, {"target": r.target}) for r in quality.itertuples()]
    signals += [Signal("model_f1_24h", r.f1, {"target": r.target}) for r in quality.itertuples()]
    signals += [Signal("feature_psi", r.psi, {"target": r.target}) for r in drift.itertuples()]
    rules = load_rules(None)
    for minutes in (180, 120, 60):
        result = run_alert_cycle(
            store=store,
            rules=rules,
            signals=signals,
            sinks=[],
            now=(end - pd.Timedelta(minutes=minutes)).to_pydatetime(),
        )
        log(f"alert cycle: {len(result.events)} events")
    firing = [a for a in store.alerts() if a.status == "firing"]
    if firing:
        ack_alert(store=store, alert_id=firing[-1].alert_id, by="bench", at=end.to_pydatetime())


def ops_records(root: Path, end: pd.Timestamp) -> None:
    """job_runs (one file per run) and hourly endpoint_metrics windows (no writer exists yet)."""
    from bikeshare.lake.store import Lake, partition_value
    from bikeshare.lake.tables import ENDPOINT_METRICS, JOB_RUNS, Grain

    lake = Lake.open(settings_for(root).lake_uri)
    if lake.partitions(JOB_RUNS, city=CITY):
        return
    rng = np.random.default_rng(7)
    schedules = {"infer": "5min", "actuals": "5min", "monitor": "1h", "plan": "1h", "retrain": "1D"}
    count = 0
    for job, every in schedules.items():
        for at in pd.date_range(SCORE_START, end, freq=every, inclusive="left"):
            failed = job == "infer" and OUTAGE[0] <= at < OUTAGE[1]
            duration = float(rng.gamma(2.0, 0.5 if job in ("infer", "actuals") else 5.0))
            row = {
                "run_id": f"{job}-{at:%Y%m%dT%H%M}",
                "job": job,
                "scheduled_at": at,
                "started_at": at + pd.Timedelta(seconds=1),
                "finished_at": at + pd.Timedelta(seconds=1 + duration).round("us"),
                "duration_s": duration,
                "lag_s": 1.0,
                "status": "failed" if failed else "ok",
                "error": "endpoint unreachable" if failed else None,
                "details": "{}",
            }
            lake.write(JOB_RUNS, pd.DataFrame([row]), city=CITY, dt=partition_value(at, Grain.DAY), name=row["run_id"])
            count += 1
    log(f"job_runs: {count} files")
    windows = pd.date_range(SCORE_START + pd.Timedelta(hours=1), end, freq="1h")
    hours = windows.hour.to_numpy()
    requests = (300 + 200 * np.sin(hours / 24 * 2 * np.pi)).astype(int)
    p50 = 9 + 2 * rng.random(len(windows))
    p95 = 28 + 10 * rng.random(len(windows))
    errors = (rng.random(len(windows)) < 0.05).astype(int)
    frame = pd.DataFrame(
        {
            "observed_at": windows,
            "window_start": windows - pd.Timedelta(hours=1),
            "window_end": windows,
            "route": "all",
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p95 * 1.6,
            "model_versions": json.dumps({"bikes": "1"}),
        }
    )
    for day, part in frame.groupby(frame["window_end"].dt.strftime("%Y-%m-%d")):
        lake.write(ENDPOINT_METRICS, part, city=CITY, dt=str(day), name="hourly")


def plan(root: Path, end: pd.Timestamp) -> None:
    from typer.testing import CliRunner

    from bikeshare.cli import app
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import PLANS

    settings = settings_for(root)
    if Lake.open(settings.lake_uri).partitions(PLANS, city=CITY):
        return
    env = {
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_CITY": CITY,
    }
    result = CliRunner().invoke(app, ["rebalance", "plan", "--as-of", end.isoformat()], env=env)
    log(result.output.strip().splitlines()[0] if result.output else f"plan exit {result.exit_code}")


def build(root: Path, shared: Path) -> None:
    """Every step; each skips what is already there."""
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import INFERENCE

    ensure_backfill(root, shared)
    bundles = ensure_models(root)
    end = _end_of_recording(root).floor("5min")
    real_start = end - pd.Timedelta(hours=REAL_PATH_HOURS)
    score_offline(root, bundles, real_start)
    lake = Lake.open(settings_for(root).lake_uri)
    if not lake.partitions(INFERENCE, city=CITY, dt_glob=f"{end - pd.Timedelta(minutes=5):%Y-%m-%d-%H-%M}"):
        score_real(root, real_start, end)
    run_all_actuals(root, end + pd.Timedelta(minutes=5))
    monitor(root, end)
    ops_records(root, end)
    plan(root, end)
    log("done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="Folder of the bench lake, state and recording.")
    parser.add_argument("--shared", type=Path, default=None, help="Shared data folder (holding baywheels-2023-03/).")
    args = parser.parse_args()
    shared = args.shared or Path(os.environ.get("BIKESHARE_SHARED_DATA") or "../shared/data")
    args.root.mkdir(parents=True, exist_ok=True)
    build(args.root, shared)


if __name__ == "__main__":
    main()
