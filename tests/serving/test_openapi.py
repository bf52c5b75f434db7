"""The OpenAPI document against the live endpoint: schemathesis with every check, on loopback.

The endpoint serves everything a route can answer 200 for (both aliases of the 30-minute models,
the forecast model, an inference and a forecast batch in the lake, an API key), so a 5xx or an
undocumented answer is a real disagreement between the document and the server.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import FORECASTS
from bikeshare.serving.forecast import FolderForecastProvider
from bikeshare.training.forecast import ForecastTrainingResult

from .conftest import Endpoint, Store
from .test_product_api import T0, inference_rows, write_batch

API_KEY = "schemathesis-key"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _forecast_rows(stations: list[str], horizons: tuple[int, ...]) -> pd.DataFrame:
    rows = [
        {
            "batch_id": "f-1",
            "prediction_time": T0 + timedelta(seconds=40),
            "feature_time": T0,
            "target_time": T0 + timedelta(minutes=h),
            "horizon_min": h,
            "station_id": station,
            "alias": "production",
            "model_name": "bikeshare-x-forecast",
            "model_version": "3",
            "p_no_bikes": 0.1,
            "p_no_docks": 0.2,
            "expected_bikes": 4.0,
            "bikes_lo": 2.0,
            "bikes_hi": 6.0,
            "current_bikes": 4,
            "current_docks": 7,
            "capacity": 11,
        }
        for station in stations
        for h in horizons
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def full_endpoint(
    store: Store,
    city_both: str,
    serve: Callable[..., Endpoint],
    forecast_run: ForecastTrainingResult,
    tmp_path: Path,
) -> Endpoint:
    settings = store.settings(city_both, lake_uri=str(tmp_path / "lake"), serve_api_key=API_KEY)
    lake = Lake.open(settings.lake_uri)
    stations = [f"s{i:03d}" for i in range(5)]
    write_batch(lake, inference_rows(feature_time=T0, stations=stations, seed=1), city=city_both, name="production")
    horizons = tuple(forecast_run.bundle.meta.horizons_min)
    dt = partition_value(pd.Timestamp(T0), FORECASTS.grain)
    assert lake.write(FORECASTS, _forecast_rows(stations, horizons), city=city_both, dt=dt, name="production")
    forecast_run.bundle.save(tmp_path / "forecast")
    forecaster = FolderForecastProvider(tmp_path / "forecast", settings=settings)
    return serve(settings, forecast_provider=forecaster)


def test_the_live_endpoint_conforms_to_its_openapi_document(full_endpoint: Endpoint, tmp_path: Path) -> None:
    doc = full_endpoint.http.get("/openapi.json", headers={"X-API-Key": API_KEY})
    assert doc.status_code == 200
    schema = tmp_path / "openapi.json"
    schema.write_bytes(doc.content)
    command = [
        str(SCHEMATHESIS),
        "run",
        str(schema),
        "--url",
        full_endpoint.url,
        "--checks",
        "all",
        "--max-examples",
        "15",
        "--seed",
        "20260101",
        "--workers",
        "1",
        "--header",
        f"X-API-Key: {API_KEY}",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None and counts.group(1) == counts.group(2) and int(counts.group(1)) > 500, output[-5000:]
    assert elapsed < 60, f"schemathesis took {elapsed:.0f} s"
    assert httpx.get(f"{full_endpoint.url}/ping").status_code == 200


def test_the_document_names_the_error_shape_the_features_and_the_allowed_methods(
    store: Store, city_both: str, serve: Callable[..., Endpoint]
) -> None:
    endpoint = serve(store.settings(city_both))
    doc = endpoint.http.get("/openapi.json").json()
    paths = doc["paths"]
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["error", "detail"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith("4") or (status == "503" and path != "/healthz"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
            assert "Allow" in operation["responses"]["405"]["headers"], (method, path)
    assert set(paths["/invocations"]["post"]["responses"]) >= {"200", "400", "405", "413", "415", "422", "503"}
    assert set(paths["/v1/alerts/{alert_id}/ack"]["post"]["responses"]) >= {"403", "404", "409", "413", "422"}
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert "security" not in paths["/invocations"]["post"]  # no key configured, nothing to declare
    body = paths["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    split, records = body["anyOf"]
    features = list(endpoint.provider.current("production").features)
    assert split["properties"]["columns"]["const"] == features
    assert records["properties"]["instances"]["items"]["required"] == features
    params = {p["name"]: p for p in paths["/invocations"]["post"]["parameters"]}
    for name, values in (("target", ["bikes", "docks"]), ("X-Bikeshare-Alias", ["production", "staging"])):
        assert params[name]["schema"]["enum"] == values and not params[name]["required"]  # the StrEnum's values
    top = {p["name"]: p for p in paths["/v1/risk"]["get"]["parameters"]}["target"]["schema"]
    assert "anyOf" not in top  # optional, never "or null"
    ack = paths["/v1/alerts/{alert_id}/ack"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert ack == {"$ref": "#/components/schemas/AckRequest"}

    wrong = endpoint.http.get("/invocations")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json() == {"error": "method_not_allowed", "detail": "GET is not allowed on /invocations"}
    assert endpoint.http.delete("/ping").headers["allow"] == "GET"
