"""The batch job against the real endpoint: rows in the lake, masked stations, idempotence, outages,
retries of transient errors, shadow scoring."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bikeshare.features.build import online_features
from bikeshare.inference.batch import BatchRecord, batch_success_rate, run_inference_batch
from bikeshare.inference.endpoint_client import EndpointClient
from bikeshare.lake.store import partition_value
from bikeshare.lake.tables import INFERENCE, INFERENCE_BATCHES, STATION_STATUS, Grain
from bikeshare.registry.client import load_bundle, model_name, open_client
from support.proxy import FaultProxy
from support.worlds import EndpointServer, free_loopback_port

from .conftest import HISTORY_END, Env, World, fit_run, settings_for

NOW = HISTORY_END - pd.Timedelta(minutes=1)  # 16:59 -> slot 16:55
SLOT = pd.Timestamp("2023-03-07T16:55Z")


def client_for(env: Env, url: str | None = None) -> EndpointClient:
    settings = env.settings if url is None else env.settings.model_copy(update={"endpoint_url": url})
    return EndpointClient.from_settings(settings, sleep=lambda _s: None)


def run(env: Env, *, now: pd.Timestamp = NOW, url: str | None = None, aliases=("production",)) -> BatchRecord:
    with client_for(env, url) as client:
        return run_inference_batch(lake=env.lake, endpoint=client, settings=env.settings, now=now, aliases=aliases)


def masked_latest(env: Env, at: pd.Timestamp) -> set[str]:
    """Stations whose newest snapshot within max_snapshot_age_min of ``at`` is masked (independent SQL)."""
    lo = at - pd.Timedelta(minutes=env.settings.max_snapshot_age_min)
    rows = (
        env.lake.connect()
        .execute(
            """
            SELECT station_id, masked FROM station_status WHERE last_updated BETWEEN ? AND ?
            QUALIFY row_number() OVER (PARTITION BY station_id ORDER BY last_updated DESC) = 1
            """,
            [lo.to_pydatetime(), at.to_pydatetime()],
        )
        .fetchall()
    )
    return {sid for sid, masked in rows if masked}


def test_a_batch_scores_every_unmasked_station_with_the_registered_models(env: Env, world: World) -> None:
    record = run(env)

    assert record.status == "ok", record.error
    assert record.feature_time == SLOT and record.attempts == 1 and not record.shadow
    assert record.model_versions == {"bikes": "1", "docks": "1"}
    slot_dt = partition_value(SLOT, Grain.MINUTE)
    assert env.lake.partitions(INFERENCE, city="sf") == [slot_dt]
    assert [p.rsplit("/", 1)[-1] for p in env.lake.files(INFERENCE, city="sf")] == ["production.parquet"]
    rows = env.lake.read(INFERENCE, city="sf").to_pandas()
    assert len(rows) == record.rows == 2 * record.stations_scored
    assert set(rows["batch_id"]) == {record.batch_id}
    assert (rows["feature_time"] == SLOT).all()
    assert (rows["target_time"] == SLOT + pd.Timedelta(minutes=30)).all()
    assert (rows["prediction_time"] == NOW).all() and (rows["horizon_min"] == 30).all()
    assert set(rows["alias"]) == {"production"} and not rows["shadow"].any()
    assert set(zip(rows["target"], rows["model_name"], rows["model_version"], strict=True)) == {
        ("bikes", "bikeshare-sf-bikes", "1"),
        ("docks", "bikeshare-sf-docks", "1"),
    }

    # The probabilities are the registered bundles' on the same online feature rows.
    features = online_features(lake=env.lake, at=NOW, settings=env.settings)
    masked = masked_latest(env, SLOT)
    scored = features[~features["station_id"].isin(masked)].set_index("station_id")
    client = open_client(env.settings)
    for target in ("bikes", "docks"):
        bundle, _ = load_bundle(client, model_name("sf", target), "production", env.settings.state_dir / "check")
        mine = rows[rows["target"] == target].set_index("station_id").loc[scored.index]
        x = scored.loc[:, list(bundle.meta.feature_names)].astype("float64").to_numpy(np.float64, na_value=np.nan)
        np.testing.assert_allclose(mine["probability"].to_numpy(), bundle.predict_proba(x), rtol=1e-9)
        assert (mine["decision"].to_numpy() == bundle.decide(bundle.predict_proba(x))).all()
        assert (mine["threshold"] == bundle.meta.decision_threshold).all()
        assert (mine["current_count"].to_numpy() == scored[target].to_numpy()).all()
        assert (mine["capacity"].astype("float64").to_numpy() == scored["capacity"].astype("float64").to_numpy()).all()

    # The batch is recorded, and the product API's view sees this slot.
    con = env.lake.connect()
    [(status, n, versions, masked_count)] = con.sql(
        "SELECT status, rows, model_versions, stations_masked FROM inference_batches"
    ).fetchall()
    assert (status, n, json.loads(versions)) == ("ok", record.rows, {"bikes": "1", "docks": "1"})
    assert masked_count == record.stations_masked == len(masked)
    assert con.sql("SELECT count(*), min(feature_time) FROM inference_latest").fetchall() == [(len(rows), SLOT)]


def test_stations_masked_by_the_contract_are_not_scored_but_counted(env: Env) -> None:
    before = masked_latest(env, SLOT)
    features = online_features(lake=env.lake, at=NOW, settings=env.settings)
    victim = next(s for s in features["station_id"] if s not in before)
    # A newer snapshot of the victim, masked (not renting): its older unmasked snapshot is still
    # within max_snapshot_age_min, so the feature SQL gives it a row; the job must leave it out.
    seen = SLOT - pd.Timedelta(minutes=1)
    last = (
        env.lake.connect()
        .execute(
            "SELECT * EXCLUDE (city, dt) FROM station_status WHERE station_id = ? ORDER BY last_updated DESC LIMIT 1",
            [victim],
        )
        .df()
    )
    last = last.assign(last_updated=seen, fetched_at=seen, is_renting=False, masked=True, mask_reasons="not_renting")
    env.lake.write(STATION_STATUS, last, city="sf", dt=partition_value(seen, Grain.MINUTE), name="late-mask")
    assert victim in set(online_features(lake=env.lake, at=NOW, settings=env.settings)["station_id"])

    record = run(env)

    assert record.status == "ok"
    assert record.stations_masked == len(before) + 1
    rows = env.lake.read(INFERENCE, city="sf").to_pandas()
    assert victim not in set(rows["station_id"])
    assert not (set(rows["station_id"]) & before)
    assert record.stations_scored == len(features) - len(set(features["station_id"]) & (before | {victim}))


def test_re_running_a_slot_does_not_duplicate_it(env: Env) -> None:
    first = run(env)
    files = env.lake.files(INFERENCE, city="sf")
    again = run(env, now=NOW + pd.Timedelta(seconds=30))  # same slot

    assert first.status == "ok" and again.status == "skipped" and "already scored" in (again.error or "")
    assert env.lake.files(INFERENCE, city="sf") == files
    assert len(env.lake.read(INFERENCE, city="sf")) == first.rows
    statuses = sorted(env.lake.read(INFERENCE_BATCHES, city="sf").column("status").to_pylist())
    assert statuses == ["ok", "skipped"]
    rate = batch_success_rate(lake=env.lake, city="sf", start=SLOT, end=SLOT + pd.Timedelta(minutes=5))
    assert (rate.ok, rate.failed, rate.skipped, rate.rate) == (1, 0, 1, 1.0)


def test_a_stopped_endpoint_gives_a_failed_batch_and_no_partition(env: Env, world: World, tmp_path: Path) -> None:
    port = free_loopback_port()
    settings = settings_for(tmp_path / "endpoint-lake", world.state_dir)
    server = EndpointServer(settings, port).start()
    url = server.url
    assert run(env, url=url, now=NOW - pd.Timedelta(minutes=5)).status == "ok"
    server.stop()

    record = run(env, url=url)

    assert record.status == "failed"
    assert record.attempts == env.settings.infer_retry_attempts == 3
    assert "ConnectError" in (record.error or "") and url in (record.error or "")
    slot_dt = partition_value(SLOT, Grain.MINUTE)
    assert slot_dt not in env.lake.partitions(INFERENCE, city="sf")
    assert not env.lake.fs.exists(env.lake.partition_dir(INFERENCE, city="sf", dt=slot_dt))
    assert not [p for p in env.lake.fs.find(env.lake.table_root(INFERENCE)) if not p.endswith(".parquet")]
    day = (SLOT.floor("D"), SLOT.floor("D") + pd.Timedelta(days=1))
    rate = batch_success_rate(lake=env.lake, city="sf", start=day[0], end=day[1])
    assert (rate.ok, rate.failed, rate.rate) == (1, 1, 0.5)
    con = env.lake.connect()
    assert con.sql("SELECT status, attempts FROM inference_batches ORDER BY feature_time").fetchall() == [
        ("ok", 1),
        ("failed", 3),
    ]
    [(ok, failed, success)] = con.sql("SELECT ok, failed, success_rate FROM inference_success").fetchall()
    assert (ok, failed, success) == (1, 1, 0.5)

    # Back up on the same port: the next run scores the slot.
    server = EndpointServer(settings, port).start()
    try:
        assert run(env, url=url).status == "ok"
    finally:
        server.stop()


def failing_proxy(upstream: str, *, failures: int) -> FaultProxy:
    """A proxy answering 503 to the first ``failures`` calls of /invocations (the forecast route passes)."""
    return FaultProxy(upstream, failing=lambda path, n: path == "/invocations" and n <= failures)


def test_a_transient_5xx_is_retried_and_the_batch_succeeds(env: Env, endpoint: EndpointServer) -> None:
    with failing_proxy(endpoint.url, failures=2) as proxy:
        record = run(env, url=proxy.url)
    assert record.status == "ok" and record.attempts == 3 and proxy.calls["/invocations"] == 3
    assert len(env.lake.read(INFERENCE, city="sf")) == record.rows > 0

    with failing_proxy(endpoint.url, failures=3) as proxy:
        failed = run(env, url=proxy.url, now=NOW + pd.Timedelta(minutes=5))
    assert failed.status == "failed" and failed.attempts == 3 and "HTTP 503 overloaded" in (failed.error or "")


@pytest.fixture
def staging_alias(world: World, endpoint: EndpointServer) -> Iterator[object]:
    client = open_client(settings_for(world.lake_dir, world.state_dir))
    yield client
    for target in ("bikes", "docks"):
        with contextlib.suppress(Exception):  # already absent
            client.delete_registered_model_alias(model_name("sf", target), "staging")
    endpoint.provider.refresh()


def test_shadow_scores_staging_only_when_it_differs_from_production(
    env: Env, world: World, endpoint: EndpointServer, staging_alias: object
) -> None:
    from bikeshare.registry.tracking import log_training_run

    client = staging_alias
    aliases = ("production", "staging")
    nothing = run(env, aliases=aliases, now=NOW - pd.Timedelta(minutes=10))
    assert nothing.status == "ok" and nothing.shadows[0].status == "skipped"
    assert "no_model" in (nothing.shadows[0].error or "")

    for target in ("bikes", "docks"):
        client.set_registered_model_alias(model_name("sf", target), "staging", "1")
    endpoint.provider.refresh()
    same = run(env, aliases=aliases, now=NOW - pd.Timedelta(minutes=5))
    assert same.shadows[0].status == "skipped" and "same model versions" in (same.shadows[0].error or "")

    versions = {}
    for target in ("bikes", "docks"):
        logged = log_training_run(
            client=client,
            result=fit_run(world.train_frame, target, rounds=8, seed=5),
            settings=env.settings,
            commit="t",
        )
        versions[target] = logged.version.version
        client.set_registered_model_alias(model_name("sf", target), "staging", logged.version.version)
    endpoint.provider.refresh()
    both = run(env, aliases=aliases)

    assert both.status == "ok" and both.shadows[0].status == "ok" and both.shadows[0].shadow
    assert both.shadows[0].model_versions == versions
    slot_dt = partition_value(SLOT, Grain.MINUTE)
    names = sorted(p.rsplit("/", 1)[-1] for p in env.lake.files(INFERENCE, city="sf", dts=[slot_dt]))
    assert names == ["production.parquet", "staging.parquet"]
    con = env.lake.connect()
    shadow_rows = con.sql(
        "SELECT alias, bool_and(shadow), min(model_version), count(*) FROM inference "
        f"WHERE dt = '{slot_dt}' GROUP BY alias ORDER BY alias"
    ).fetchall()
    assert shadow_rows == [
        ("production", False, "1", both.rows),
        ("staging", True, min(versions.values()), both.shadows[0].rows),
    ]
    assert con.sql("SELECT DISTINCT alias FROM inference_latest").fetchall() == [("production",)]
    batches = con.sql("SELECT alias, shadow, status FROM inference_batches ORDER BY feature_time, shadow").fetchall()
    assert batches[-2:] == [("production", False, "ok"), ("staging", True, "ok")]


def test_an_alias_with_its_own_endpoint_is_asked_there(env: Env, endpoint: EndpointServer) -> None:
    from bikeshare.inference.batch import alias_clients

    with failing_proxy(endpoint.url, failures=0) as staging:
        settings = env.settings.model_copy(update={"infer_alias_endpoints": {"staging": staging.url}})
        routes = alias_clients(settings, ("production", "staging"), sleep=lambda _s: None)
        assert set(routes) == {"staging"}
        with client_for(env) as client, routes["staging"]:
            record = run_inference_batch(
                lake=env.lake,
                endpoint=client,
                settings=settings,
                now=NOW,
                aliases=("production", "staging"),
                alias_endpoints=routes,
            )
    assert staging.calls["/invocations"] == 1
    assert record.endpoint == f"{endpoint.url}/invocations"
    assert record.shadows[0].endpoint == f"{staging.url}/invocations"
    bad = env.settings.model_copy(update={"infer_alias_endpoints": {"canary": staging.url}})
    with pytest.raises(ValueError, match="unknown alias"):
        alias_clients(bad, ("production",))
