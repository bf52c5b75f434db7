"""The product API on a real endpoint: station risk and top-N from the latest inference batch in a
real temp lake, refreshed when a newer batch lands; alert acknowledgement through the API."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import INFERENCE
from bikeshare.monitoring.alerts import Signal, evaluate
from bikeshare.monitoring.rules import load_rules
from bikeshare.monitoring.store import AlertStore

from .conftest import Endpoint, Store

T0 = datetime(2023, 3, 3, 12, 0, tzinfo=UTC)


def inference_rows(
    *, feature_time: datetime, stations: list[str], seed: int, alias: str = "production", shadow: bool = False
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    batch = f"b-{seed}-{alias}"
    for target in ("bikes", "docks"):
        proba = rng.random(len(stations))
        for horizon in (30, 60):
            for station, p in zip(stations, proba, strict=True):
                rows.append(
                    {
                        "batch_id": batch,
                        "prediction_time": feature_time + timedelta(seconds=40),
                        "feature_time": feature_time,
                        "target_time": feature_time + timedelta(minutes=horizon),
                        "horizon_min": horizon,
                        "station_id": station,
                        "target": target,
                        "alias": alias,
                        "model_name": f"bikeshare-x-{target}",
                        "model_version": "7" if alias == "production" else "8",
                        "probability": float(p) if horizon == 30 else 0.5,
                        "decision": bool(p >= 0.4),
                        "threshold": 0.4,
                        "current_count": int(rng.integers(0, 20)),
                        "capacity": 20,
                        "shadow": shadow,
                    }
                )
    return pd.DataFrame(rows)


def write_batch(lake: Lake, frame: pd.DataFrame, *, city: str, name: str) -> None:
    dt = partition_value(frame["feature_time"].iloc[0], INFERENCE.grain)
    assert lake.write(INFERENCE, frame, city=city, dt=dt, name=name) is not None


@pytest.fixture
def endpoint(store: Store, city_both: str, serve: Callable[..., Endpoint], tmp_path: Path) -> Endpoint:
    return serve(store.settings(city_both, lake_uri=str(tmp_path / "lake"), serve_risk_refresh_s=0.05))


def test_no_inference_yet_is_a_503_naming_the_command(endpoint: Endpoint) -> None:
    for path in ("/v1/stations/s1/risk", "/v1/risk"):
        response = endpoint.http.get(path)
        assert response.status_code == 503
        assert response.json()["error"] == "no_inference" and "bikeshare infer" in response.json()["detail"]


def test_station_risk_and_top_n_follow_the_latest_batch(endpoint: Endpoint) -> None:
    city = endpoint.settings.city
    lake = Lake.open(endpoint.settings.lake_uri)
    stations = [f"s{i:03d}" for i in range(30)]
    first = inference_rows(feature_time=T0, stations=stations, seed=1)
    write_batch(lake, first, city=city, name="production")
    # a staging batch in shadow for the same slot must not leak into the product API
    write_batch(lake, inference_rows(feature_time=T0, stations=stations, seed=9, alias="staging", shadow=True),
                city=city, name="staging")  # fmt: skip

    doc = endpoint.http.get("/v1/stations/s003/risk").json()
    expected = first[(first.station_id == "s003") & (first.horizon_min == 30)].set_index("target")
    assert doc["station_id"] == "s003" and doc["alias"] == "production" and doc["horizon_min"] == 30
    assert doc["feature_time"] == T0.isoformat() and doc["batch_id"] == "b-1-production"
    for target in ("bikes", "docks"):
        assert doc[target]["probability"] == pytest.approx(expected.loc[target, "probability"])
        assert doc[target]["short"] == bool(expected.loc[target, "decision"])
        assert doc[target]["current_count"] == expected.loc[target, "current_count"]
        assert doc[target]["model"] == {"name": f"bikeshare-x-{target}", "version": "7"}

    top = endpoint.http.get("/v1/risk", params={"target": "docks", "top": 5}).json()
    docks = first[(first.target == "docks") & (first.horizon_min == 30)].sort_values("probability", ascending=False)
    assert [s["station_id"] for s in top["stations"]] == docks["station_id"].head(5).tolist()
    assert top["target"] == "docks" and len(top["stations"]) == 5

    # a newer slot lands: the next request (after the refresh interval) serves it
    later = inference_rows(feature_time=T0 + timedelta(minutes=5), stations=stations[:10], seed=2)
    write_batch(lake, later, city=city, name="production")
    time.sleep(0.1)
    newer = endpoint.http.get("/v1/stations/s003/risk").json()
    assert newer["feature_time"] == (T0 + timedelta(minutes=5)).isoformat() and newer["batch_id"] == "b-2-production"
    unknown = endpoint.http.get("/v1/stations/s020/risk")  # not in the newest batch
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_station"
    assert "s020" in unknown.json()["detail"]
    assert len(endpoint.http.get("/v1/risk", params={"top": 1000}).json()["stations"]) == 10


def test_product_parameters_are_validated(endpoint: Endpoint) -> None:
    lake = Lake.open(endpoint.settings.lake_uri)
    write_batch(lake, inference_rows(feature_time=T0, stations=["a", "b"], seed=3), city=endpoint.settings.city,
                name="production")  # fmt: skip
    for params, needle in (
        ({"target": "cars"}, "target"),
        ({"top": "ten"}, "top"),
        ({"top": 0}, "top"),
        ({"top": 5000}, "top"),
    ):
        response = endpoint.http.get("/v1/risk", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"] == "invalid_request" and needle in response.json()["detail"]


def test_alert_ack_through_the_api(
    store: Store, city_both: str, serve: Callable[..., Endpoint], tmp_path: Path
) -> None:
    # a state-changing route: only on an endpoint with an API key (tests/serving/test_auth.py)
    endpoint = serve(store.settings(city_both, lake_uri=str(tmp_path / "lake"), serve_api_key="k"))
    endpoint.http.headers["X-API-Key"] = "k"
    lake = Lake.open(endpoint.settings.lake_uri)
    store = AlertStore(lake, city=endpoint.settings.city)
    fired_at = datetime.now(UTC) - timedelta(minutes=3)
    (event,) = evaluate([load_rules().get("data_delay")], [Signal("data_delay_s", 400.0, {"feed": "x"})], [], fired_at)
    store.append([event])
    path = f"/v1/alerts/{event.alert_id}/ack"

    assert endpoint.http.post(path, json={}).status_code == 422
    response = endpoint.http.post(path, json={"by": "oncall"})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["status"] == "acknowledged" and doc["acknowledged_by"] == "oncall"
    assert 170 < doc["mtta_s"] < 600
    assert store.get(event.alert_id).status == "acknowledged"
    again = endpoint.http.post(path, json={"by": "oncall"})
    assert again.status_code == 409 and "already acknowledged" in again.json()["detail"]
    missing = endpoint.http.post("/v1/alerts/nope/ack", json={"by": "oncall"})
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_alert"
