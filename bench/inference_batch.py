"""Batch inference benchmark: one `bikeshare infer` batch for every station of the shipped slice.

Backfills the shipped 8-day slice into a temporary lake, fits two small LightGBM models (bikes,
docks) on every feature column of a few hours of it, registers them as ``production`` in a
temporary MLflow store, starts ``bikeshare serve`` on a loopback port (its own process), then runs
``run_inference_batch`` for consecutive 5-minute slots and ``run_actuals`` after them. Prints the
median, min and max of the batch duration and of its parts (features, census, endpoint call,
lake write), the stations scored/masked/missing, and the actuals join time.

    .venv/bin/python bench/inference_batch.py [--batches 12] [--start 2023-03-08T15:00Z]

Only what the repo ships is read (data/recordings/); nothing under ../shared.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fit_and_register(frame: pd.DataFrame, settings: object) -> None:
    """Register a small LightGBM per target on all model input columns, as ``production``."""
    import lightgbm

    from bikeshare.inference.batch import model_input_columns
    from bikeshare.registry.client import model_name, open_client
    from bikeshare.registry.tracking import log_training_run
    from bikeshare.training.bundle import BundleMeta, IsotonicCalibration, LightGBMScorer, ModelBundle
    from bikeshare.training.report import EvaluationReport, ScoreMetrics, SliceComparison

    columns = model_input_columns()
    client = open_client(settings)  # type: ignore[arg-type]
    for target in ("bikes", "docks"):
        rows = frame[frame[f"y_{target}"].notna()]
        x = rows.loc[:, list(columns)].astype("float64").to_numpy(np.float64, na_value=np.nan)
        y = rows[f"y_{target}"].astype(bool).to_numpy().astype(int)
        booster = lightgbm.train(
            {"objective": "binary", "num_leaves": 31, "learning_rate": 0.05, "verbose": -1, "num_threads": 1},
            lightgbm.Dataset(x, label=y),
            num_boost_round=300,
        )
        meta = BundleMeta(
            target=target,  # type: ignore[arg-type]
            horizon_min=30,
            shortage_threshold=2,
            algo="lightgbm",
            feature_names=columns,
            decision_threshold=0.5,
            calibration=IsotonicCalibration.identity(),
            feature_version="1",
            booster_file=LightGBMScorer.FILE,
        )
        metrics = ScoreMetrics(pr_auc=0.0, f1=0.0, precision=0.0, recall=0.0, brier=0.0, rows=len(y), positives=0)
        report = EvaluationReport(
            target=target,
            window_start=str(frame["slot"].min()),
            window_end=str(frame["slot"].max()),
            decision_threshold=0.5,
            slices={s: SliceComparison(model=metrics, baseline=metrics) for s in ("all", "onsets", "recoveries")},
        )

        run = SimpleNamespace(
            bundle=ModelBundle(meta=meta, scorer=LightGBMScorer(booster=booster)),
            report=report,
            params={"rounds": 300},
            artifacts={},
            data_window=(report.window_start, report.window_end),
        )
        logged = log_training_run(client=client, result=run, settings=settings, commit="bench")  # type: ignore[arg-type]
        client.set_registered_model_alias(model_name("sf", target), "production", logged.version.version)


def timed(parts: dict[str, list[float]], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    parts.setdefault(name, []).append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--start", default="2023-03-08T15:00Z", help="Time of the first batch (UTC).")
    args = parser.parse_args()

    import bikeshare.inference.batch as batch_module
    from bikeshare.features.build import build_features
    from bikeshare.gbfs.recording import Recording, default_recording_path
    from bikeshare.inference.actuals import run_actuals
    from bikeshare.inference.batch import run_inference_batch
    from bikeshare.inference.endpoint_client import EndpointClient
    from bikeshare.ingest.backfill import backfill
    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    port = free_port()
    settings = Settings(
        city="sf",
        lake_uri=str(work / "lake"),
        state_dir=work / "state",
        weather_enabled=False,
        endpoint_url=f"http://127.0.0.1:{port}",
    )
    lake = Lake.open(settings.lake_uri)
    t0 = time.perf_counter()
    backfill(recording=Recording.open(default_recording_path()), lake=lake, settings=settings)
    print(f"backfilled the shipped slice in {time.perf_counter() - t0:.1f}s", flush=True)
    start = pd.Timestamp(args.start)
    frame = build_features(
        lake=lake,
        start=start - pd.Timedelta(hours=30),
        end=start - pd.Timedelta(hours=24),
        settings=settings,
    )
    fit_and_register(frame, settings)
    env = {
        **os.environ,
        "BIKESHARE_CITY": "sf",
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("bikeshare")), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{settings.endpoint_url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the endpoint did not start")
            time.sleep(0.2)

        parts: dict[str, list[float]] = {}
        # Time the stages inside the job by wrapping the functions it calls (same work; lake write = the rest).
        originals = {"station_census": batch_module.station_census}
        import bikeshare.features.build as features_module

        online = features_module.online_features
        features_module.online_features = lambda **kw: timed(parts, "features", online, **kw)
        batch_module.station_census = lambda **kw: timed(parts, "census", originals["station_census"], **kw)
        records = []
        with EndpointClient.from_settings(settings) as client:
            real_invoke = client.invoke
            client.invoke = lambda *a, **kw: timed(parts, "endpoint call", real_invoke, *a, **kw)  # type: ignore[method-assign]
            for i in range(args.batches):
                now = start + pd.Timedelta(minutes=5 * i)
                records.append(run_inference_batch(lake=lake, endpoint=client, settings=settings, now=now))
        features_module.online_features = online
        for name, fn in originals.items():
            setattr(batch_module, name, fn)
        failed = [r for r in records if r.status != "ok"]
        if failed:
            sys.exit(f"{len(failed)} batches did not succeed: {failed[0].error}")
        durations = [r.duration_s for r in records]
        print(
            f"\n{len(records)} batches at {start:%Y-%m-%d %H:%M}Z + 5 min steps, 2 targets, {records[0].rows} rows each"
        )
        print(f"{'part':<16}{'median s':>10}{'min s':>10}{'max s':>10}")
        for name, values in [("whole batch", durations), *parts.items()]:
            print(f"{name:<16}{statistics.median(values):>10.3f}{min(values):>10.3f}{max(values):>10.3f}")
        scored = [r.stations_scored for r in records]
        print(
            f"stations scored {min(scored)}-{max(scored)}, masked {min(r.stations_masked for r in records)}-"
            f"{max(r.stations_masked for r in records)}, missing {min(r.stations_missing for r in records)}-"
            f"{max(r.stations_missing for r in records)}"
        )
        after = start + pd.Timedelta(minutes=5 * args.batches + 35)
        report = run_actuals(lake=lake, settings=settings, now=after)
        print(f"actuals at {after:%H:%M}Z: {report.summary()}")
        again = run_actuals(lake=lake, settings=settings, now=after + pd.Timedelta(minutes=5))
        print(f"actuals re-run: {again.summary()}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
