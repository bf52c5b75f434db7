"""The forecast call's outcome is part of the batch record: a failed ``/v1/forecast/invocations`` after a
good ``/invocations`` is recorded (``forecast_status``, ``forecast_error``), a re-run of the slot fills
the missing forecasts without scoring the 30-minute models again, and the monitor counts the failures.
The endpoint is the real app serving a real forecast bundle, behind a loopback proxy that can fail
the forecast route alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bikeshare.inference.batch import BatchRecord, run_inference_batch
from bikeshare.inference.endpoint_client import EndpointClient
from bikeshare.lake.store import partition_value
from bikeshare.lake.tables import FORECASTS, INFERENCE, INFERENCE_BATCHES, Grain
from bikeshare.monitoring.alerts import evaluate
from bikeshare.monitoring.rules import load_rules
from bikeshare.monitoring.signals import Window, measure_inference
from bikeshare.serving.forecast import FolderForecastProvider
from support.proxy import FaultProxy

from .conftest import HISTORY_END, EndpointServer, Env, World, fit_forecast_bundle, free_loopback_port, settings_for

NOW = HISTORY_END - pd.Timedelta(minutes=1)  # 16:59 -> slot 16:55
SLOT = pd.Timestamp("2023-03-07T16:55Z")
SLOT_DT = partition_value(SLOT, Grain.MINUTE)
FORECAST_ROUTE = "/v1/forecast/invocations"


def forecast_faults(upstream: str) -> FaultProxy:
    """A proxy that answers 503 on the forecast route alone (until ``failing`` is replaced)."""
    return FaultProxy(upstream, failing=lambda path, _n: path == FORECAST_ROUTE)


@pytest.fixture(scope="module")
def forecast_endpoint(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointServer]:
    """The real endpoint with the session's 30-minute models and a forecast bundle from a folder."""
    root = tmp_path_factory.mktemp("forecast-endpoint")
    settings = settings_for(root / "lake", world.state_dir)
    folder = fit_forecast_bundle(world.train_frame, root / "forecast")
    provider = FolderForecastProvider(folder, settings=settings)
    server = EndpointServer(settings, free_loopback_port(), forecast_provider=provider).start()
    yield server
    server.stop()


def run(env: Env, url: str, *, now: pd.Timestamp = NOW) -> BatchRecord:
    settings = env.settings.model_copy(update={"endpoint_url": url})
    with EndpointClient.from_settings(settings, sleep=lambda _s: None) as client:
        return run_inference_batch(lake=env.lake, endpoint=client, settings=settings, now=now)


WINDOW = Window(start=SLOT - pd.Timedelta(hours=1), end=SLOT + pd.Timedelta(minutes=5))


def monitor_counts(env: Env) -> dict[str, float | None]:
    part = measure_inference(env.lake, settings=env.settings, window=WINDOW)
    metrics = {row["metric"]: row["value"] for row in part.metrics}
    (signal,) = [s for s in part.signals if s.name == "forecast_failure_rate"]
    return {
        "ok": metrics["forecasts_ok"],
        "failed": metrics["forecasts_failed"],
        "skipped": metrics["forecasts_skipped"],
        "rate": signal.value,
    }


def test_a_failed_forecast_call_is_recorded_and_a_re_run_fills_the_slot(
    env: Env, forecast_endpoint: EndpointServer
) -> None:
    with forecast_faults(forecast_endpoint.url) as proxy:
        first = run(env, proxy.url)

        assert first.status == "ok" and first.rows > 0
        assert first.forecast_status == "failed"
        assert "HTTP 503" in (first.forecast_error or "") and "injected fault" in (first.forecast_error or "")
        assert "forecasts failed" in first.summary()
        assert proxy.calls == {"/invocations": 1, FORECAST_ROUTE: env.settings.infer_retry_attempts}
        assert not env.lake.exists(FORECASTS, city="sf", dt=SLOT_DT, name="production")
        inference_files = env.lake.files(INFERENCE, city="sf")
        assert monitor_counts(env) == {"ok": 0, "failed": 1, "skipped": 0, "rate": 1.0}
        signals = measure_inference(env.lake, settings=env.settings, window=WINDOW).signals
        (fired,) = evaluate([load_rules().get("forecast_failures")], signals, [], WINDOW.end.to_pydatetime())
        assert (fired.event, fired.rule, fired.severity, fired.value) == ("fired", "forecast_failures", "warning", 1.0)

        proxy.failing = lambda _path, _n: False
        second = run(env, proxy.url, now=NOW + pd.Timedelta(seconds=30))  # same slot

        assert second.status == "skipped" and "already scored" in (second.error or "")
        assert second.forecast_status == "ok" and second.forecast_error is None
        assert proxy.calls["/invocations"] == 1  # the 30-minute models were not asked again
        assert env.lake.files(INFERENCE, city="sf") == inference_files
        assert len(env.lake.read(INFERENCE, city="sf")) == first.rows
        forecasts = env.lake.read(FORECASTS, city="sf").to_pandas()
        assert len(forecasts) == 5 * first.stations_scored
        assert set(forecasts["batch_id"]) == {second.batch_id}
        assert (forecasts["feature_time"] == SLOT).all()
        assert not forecasts.duplicated(["station_id", "horizon_min"]).any()

        third = run(env, proxy.url, now=NOW + pd.Timedelta(seconds=40))
        assert third.status == "skipped" and third.forecast_status == "skipped"
        assert "already written" in (third.forecast_error or "")
        assert proxy.calls[FORECAST_ROUTE] == env.settings.infer_retry_attempts + 1  # no call for a full slot
        assert len(env.lake.read(FORECASTS, city="sf")) == len(forecasts)

    rows = (
        env.lake.connect()
        .sql("SELECT status, forecast_status, forecast_error IS NULL FROM inference_batches ORDER BY started_at")
        .fetchall()
    )
    assert rows == [("ok", "failed", False), ("skipped", "ok", True), ("skipped", "skipped", False)]
    assert monitor_counts(env) == {"ok": 1, "failed": 1, "skipped": 1, "rate": 0.5}


def test_no_forecast_model_is_skipped_not_failed(env: Env) -> None:
    """The session endpoint has no forecast model: the normal state before one is promoted."""
    record = run(env, env.settings.endpoint_url or "")
    assert record.status == "ok"
    assert record.forecast_status == "skipped" and "no_forecast_model" in (record.forecast_error or "")
    assert monitor_counts(env) == {"ok": 0, "failed": 0, "skipped": 1, "rate": None}


def test_batch_records_written_before_the_forecast_columns_still_read(env: Env, tmp_path: Path) -> None:
    # A record file of an older release: the spec's columns minus the two forecast ones.
    old_fields = [f for f in INFERENCE_BATCHES.schema if not f.name.startswith("forecast_")]
    old = pa.table(
        {
            "batch_id": ["old"],
            "feature_time": [SLOT - pd.Timedelta(minutes=5)],
            "started_at": [SLOT - pd.Timedelta(minutes=5)],
            "status": ["ok"],
            "shadow": [False],
            "alias": ["production"],
        }
    )
    old = pa.table({f.name: old[f.name] if f.name in old.column_names else pa.nulls(1, f.type) for f in old_fields})
    old = old.cast(pa.schema(old_fields))
    folder = env.lake.partition_dir(INFERENCE_BATCHES, city="sf", dt=partition_value(SLOT, Grain.DAY))
    env.lake.fs.makedirs(folder, exist_ok=True)
    pq.write_table(old, f"{folder}/00000000T000000-old.parquet")
    assert monitor_counts(env) == {"ok": 0, "failed": 0, "skipped": 0, "rate": None}  # only old files so far

    run(env, env.settings.endpoint_url or "")

    rows = (
        env.lake.connect().sql("SELECT batch_id, forecast_status FROM inference_batches ORDER BY started_at").fetchall()
    )
    assert rows[0] == ("old", None) and rows[1][1] == "skipped"
    assert monitor_counts(env)["skipped"] == 1
