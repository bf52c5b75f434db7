"""The forecast routes on a real endpoint (uvicorn on loopback) with the forecast model in a real
MLflow store: the per-horizon gate recorded at promotion, the batch route, forecasts written to the
lake by the inference job's writer and read back by GET /v1/stations/{id}/forecast, and clear
503/404 answers when the model or the forecasts are missing."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pandas as pd
import pytest

from bikeshare.inference.batch import write_forecasts
from bikeshare.inference.endpoint_client import NO_FORECAST_MODEL, EndpointClient, EndpointError
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import FORECASTS
from bikeshare.registry.audit import read_events
from bikeshare.registry.forecast import forecast_model_name, log_forecast_run, promote_forecast
from bikeshare.serving.forecast import RegistryForecastProvider
from bikeshare.training.forecast import ForecastTrainingResult

from .conftest import Endpoint, Store
from .realmodel import city_request


@pytest.fixture(scope="module")
def forecast_city(store: Store, forecast_run: ForecastTrainingResult) -> str:
    """A city with 30-minute production models and the forecast model gated for production."""
    city = store.city(production=True)
    settings = store.settings(city)
    logged = log_forecast_run(client=store.client, result=forecast_run, settings=settings)
    assert logged.version is not None and logged.version.name == forecast_model_name(city)
    return city


def _latest_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["slot"] == frame["slot"].max()].reset_index(drop=True)


def test_promotion_records_the_per_horizon_verdict(store: Store, forecast_city: str) -> None:
    settings = store.settings(forecast_city)
    lake = Lake.open(settings.lake_uri)
    refused_or_moved = promote_forecast(client=store.client, lake=lake, settings=settings, alias="staging", note="t")
    assert refused_or_moved.verdict is not None
    names = {c.name for c in refused_or_moved.verdict.checks}
    assert {f"beats_persistence_all@{h}" for h in (15, 30, 60, 90, 120)} <= names
    assert refused_or_moved.moved == refused_or_moved.verdict.passed
    holder = store.client.get_model_version(forecast_model_name(forecast_city), refused_or_moved.version)
    assert holder.tags["bikeshare.audit.staging.verdict"] == ("pass" if refused_or_moved.verdict.passed else "fail")
    events = read_events(lake, city=forecast_city, model_name=forecast_model_name(forecast_city))
    assert list(events["target"]) == ["forecast"]
    assert events["action"].iloc[0] == ("promote" if refused_or_moved.verdict.passed else "refused")


def test_curve_route_batch_route_and_stored_forecasts(
    store: Store,
    forecast_city: str,
    serve: Callable[..., Endpoint],
    slice_day_features: pd.DataFrame,
) -> None:
    settings = store.settings(forecast_city, serve_risk_refresh_s=0.001)
    lake = Lake.open(settings.lake_uri)
    promote_forecast(client=store.client, lake=lake, settings=settings, alias="production", note="t", force=True)
    provider = RegistryForecastProvider(settings=settings, registry=lambda: store.client)
    assert provider.refresh()
    endpoint = serve(settings, forecast_provider=provider)

    health = endpoint.http.get("/healthz").json()["forecast"]
    assert set(health) == {"production"} and health["production"]["name"] == forecast_model_name(forecast_city)

    missing = endpoint.http.get("/v1/stations/abc/forecast")
    assert missing.status_code == 503
    assert missing.json()["error"] == "no_forecast" and forecast_model_name(forecast_city) in missing.json()["detail"]

    rows = _latest_rows(slice_day_features)
    body = orjson.dumps(city_request(slice_day_features))
    answer = endpoint.http.post("/v1/forecast/invocations", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["model"]["name"] == forecast_model_name(forecast_city) and doc["alias"] == "production"
    assert doc["horizons_min"] == [15, 30, 60, 90, 120]
    curve = pd.DataFrame(doc["data"], columns=doc["columns"])
    assert len(curve) == len(rows) * 5 and set(curve["station_id"]) == set(rows["station_id"])

    slot = rows["slot"].iloc[0]
    with EndpointClient(endpoint.url) as client:
        path = write_forecasts(
            lake=lake, endpoint=client, settings=settings, body=body, features=rows, alias="production",
            batch_id="b1", prediction_time=slot, slot=slot,
        )  # fmt: skip
    assert path is not None
    stored = lake.read(FORECASTS, city=forecast_city).to_pandas()
    assert len(stored) == len(curve) and set(stored["horizon_min"]) == {15, 30, 60, 90, 120}
    assert (stored["target_time"] - stored["feature_time"] == pd.to_timedelta(stored["horizon_min"], unit="min")).all()

    station = str(rows["station_id"].iloc[0])
    got = endpoint.http.get(f"/v1/stations/{station}/forecast")
    assert got.status_code == 200, got.text
    one = got.json()
    assert one["model"]["name"] == forecast_model_name(forecast_city) and one["alias"] == "production"
    assert one["feature_time"] == slot.isoformat()
    assert [p["horizon_min"] for p in one["curve"]] == [15, 30, 60, 90, 120]
    expected = curve[curve["station_id"] == station].sort_values("horizon_min")
    assert [p["expected_bikes"] for p in one["curve"]] == pytest.approx(list(expected["expected_bikes"]))
    assert all(p["bikes_lo"] <= p["expected_bikes"] <= p["bikes_hi"] for p in one["curve"])
    assert one["current_bikes"] == int(rows["bikes"].iloc[0])

    unknown = endpoint.http.get("/v1/stations/no-such-station/forecast")
    assert unknown.status_code == 404 and "no-such-station" in unknown.json()["detail"]


def test_no_forecast_model_is_a_clear_503(store: Store, serve: Callable[..., Endpoint], slice_day_features) -> None:
    city = store.city(production=True)
    settings = store.settings(city)
    endpoint = serve(settings)
    body = orjson.dumps(city_request(slice_day_features))
    answer = endpoint.http.post("/v1/forecast/invocations", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 503
    assert answer.json()["error"] == NO_FORECAST_MODEL
    assert forecast_model_name(city) in answer.json()["detail"]
    assert endpoint.http.get("/healthz").json()["forecast"] == {}
    with EndpointClient(endpoint.url) as client, pytest.raises(EndpointError) as caught:
        client.forecast(body, rows=3, alias="production")
    assert caught.value.code == NO_FORECAST_MODEL and caught.value.attempts == 1


def test_the_logged_pyfunc_scores_the_curve_from_code(
    store: Store, forecast_city: str, slice_day_features: pd.DataFrame, forecast_run: ForecastTrainingResult
) -> None:
    import mlflow.pyfunc

    from bikeshare.registry.client import latest_version

    info = latest_version(store.client, forecast_model_name(forecast_city))
    location = store.client.get_model_version_download_uri(info.name, info.version)
    model = mlflow.pyfunc.load_model(location)
    rows = _latest_rows(slice_day_features).head(4)
    names = list(forecast_run.bundle.meta.feature_names)
    out = model.predict(rows[names].astype("float64"))  # the signature: every feature a double
    expected = forecast_run.bundle.curve(rows)
    assert len(out) == len(rows) * 5
    numbers = ["horizon_min", "p_no_bikes", "p_no_docks", "expected_bikes", "bikes_lo", "bikes_hi"]
    pd.testing.assert_frame_equal(out[numbers].reset_index(drop=True), expected[numbers])
