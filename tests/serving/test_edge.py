"""API key, canary share and Prometheus metrics on a real endpoint."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from .conftest import Endpoint, Store
from .realmodel import city_request


def _small(store: Store, rows: int = 2) -> dict:
    body = city_request(store.frame)
    return {"columns": body["columns"], "data": body["data"][:rows]}


def test_api_key_guards_every_route_but_ping_and_healthz(
    store: Store, city_both: str, serve: Callable[..., Endpoint]
) -> None:
    endpoint = serve(store.settings(city_both, serve_api_key="s3cret"))
    http, body = endpoint.http, _small(store)
    assert http.get("/ping").status_code == 200
    assert http.get("/healthz").status_code == 200
    for method, path in (("POST", "/invocations"), ("GET", "/metrics"), ("GET", "/v1/risk"),
                         ("GET", "/v1/stations/x/risk"), ("POST", "/v1/alerts/a/ack"), ("GET", "/docs")):  # fmt: skip
        missing = http.request(method, path, json=body)
        assert missing.status_code == 401, path
        assert missing.json() == {
            "error": "unauthorized",
            "detail": "this route needs an X-API-Key header (only /ping and /healthz are open)",
        }
        wrong = http.request(method, path, json=body, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401 and "does not match" in wrong.json()["detail"]
    ok = http.post("/invocations", json=body, headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200
    metrics = http.get("/metrics", headers={"X-API-Key": "s3cret"}).text
    assert 'bikeshare_http_errors_total{route="/invocations",status="401"} 2.0' in metrics


def test_canary_share_splits_traffic_and_says_who_answered(
    store: Store, city_both: str, serve: Callable[..., Endpoint]
) -> None:
    endpoint = serve(store.settings(city_both, serve_canary_share=0.3), rng=random.Random(11))
    body = _small(store)
    answers = []
    for _ in range(300):
        response = endpoint.http.post("/invocations", json=body)
        doc = response.json()
        assert response.headers["x-bikeshare-alias"] == doc["alias"]
        expected = "bikes=2,docks=2" if doc["alias"] == "staging" else "bikes=1,docks=1"
        assert response.headers["x-bikeshare-model-versions"] == expected
        answers.append(doc["alias"])
    share = answers.count("staging") / len(answers)
    assert 0.2 < share < 0.4, share  # binomial(300, 0.3): 5 sigma is +-0.13
    pinned = [
        endpoint.http.post("/invocations", json=body, headers={"X-Bikeshare-Alias": "production"}).json()["alias"]
        for _ in range(30)
    ]
    assert set(pinned) == {"production"}  # a pinned alias is never diverted
    metrics = endpoint.http.get("/metrics").text
    staged = float(re.search(r'bikeshare_invocations_total\{alias="staging"\} (\S+)', metrics).group(1))
    assert staged == answers.count("staging")


def test_canary_without_a_staging_model_stays_on_production(store: Store, serve: Callable[..., Endpoint]) -> None:
    city = store.city(production=True)
    endpoint = serve(store.settings(city, serve_canary_share=1.0))
    body = _small(store)
    assert {endpoint.http.post("/invocations", json=body).json()["alias"] for _ in range(10)} == {"production"}
    pinned = endpoint.http.post("/invocations", json=body, headers={"X-Bikeshare-Alias": "staging"})
    assert pinned.status_code == 503 and pinned.json()["error"] == "no_model"
    assert "staging" in pinned.json()["detail"] and "bikeshare promote" in pinned.json()["detail"]


def test_metrics_expose_latency_requests_errors_and_models(
    store: Store, city_both: str, serve: Callable[..., Endpoint]
) -> None:
    endpoint = serve(store.settings(city_both))
    http, body = endpoint.http, _small(store, rows=7)
    for _ in range(3):
        assert http.post("/invocations", json=body).status_code == 200
    assert http.post("/invocations", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert http.get("/v1/stations/x/risk").status_code == 503
    text = http.get("/metrics").text
    assert 'bikeshare_http_request_duration_seconds_count{route="/invocations"} 4.0' in text
    assert 'bikeshare_http_request_duration_seconds_bucket{le="0.005",route="/invocations"}' in text
    assert 'bikeshare_http_requests_total{route="/invocations",status="200"} 3.0' in text
    assert 'bikeshare_http_errors_total{route="/invocations",status="400"} 1.0' in text
    assert 'bikeshare_http_errors_total{route="/v1/stations/{station_id}/risk",status="503"} 1.0' in text
    assert 'bikeshare_scored_rows_total{alias="production"} 21.0' in text
    for alias, version in (("production", 1), ("staging", 2)):
        for target in ("bikes", "docks"):
            name = f"bikeshare-{city_both}-{target}"
            assert f'bikeshare_model_version{{alias="{alias}",name="{name}",target="{target}"}} {version}.0' in text
    ages = re.findall(r'bikeshare_model_seconds_since_load\{alias="production",target="bikes"\} (\S+)', text)
    assert len(ages) == 1 and 0 <= float(ages[0]) < 600
    assert "bikeshare_registry_up 1.0" in text and 'bikeshare_alias_servable{alias="production"} 1.0' in text
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["servable"] == ["production", "staging"]
    assert health["models"]["staging"]["docks"]["version"] == "2"
