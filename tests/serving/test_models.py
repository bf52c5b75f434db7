"""Model loading and swapping on a real endpoint: hot swap after `promote` under load, the registry
unreachable at start and going away later, staging removal, and the folder provider."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app as cli
from bikeshare.lake.store import Lake
from bikeshare.registry.client import RegistryUnavailable, model_name
from bikeshare.registry.promotion import promote
from bikeshare.serving.models import FolderModelProvider, RegistryModelProvider, export_alias
from bikeshare.serving.server import build_provider

from .conftest import Endpoint, Store
from .realmodel import city_request


def _loop(url: str, body: dict, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as http:
        while not stop.is_set():
            try:
                response = http.post("/invocations", json=body)
                seen.append((response.status_code, response.headers.get("x-bikeshare-model-versions", "")))
            except httpx.HTTPError as exc:  # a dropped request is a failure too
                seen.append((0, repr(exc)))


def test_hot_swap_after_promote_drops_no_request(store: Store, serve: Callable[..., Endpoint]) -> None:
    city = store.city(production=True)
    settings = store.settings(city)
    endpoint = serve(settings)
    body = {k: v[:20] if k == "data" else v for k, v in city_request(store.frame).items()}
    before = endpoint.http.post("/invocations", json=body)
    assert before.headers["x-bikeshare-model-versions"] == "bikes=1,docks=1"

    lake = Lake.open(settings.lake_uri)
    fresh = {target: store.log(settings, target, seed=5, trees=20) for target in ("bikes", "docks")}
    stop, seen = threading.Event(), []
    loop = threading.Thread(target=_loop, args=(endpoint.url, body, stop, seen))
    loop.start()
    try:
        time.sleep(0.3)
        for target, v2 in fresh.items():
            outcome = promote(client=store.client, lake=lake, settings=settings, target=target, alias="production",
                              note="hot swap test", evaluator=None, version=v2.version, force=True)  # fmt: skip
            assert outcome.moved
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not seen or seen[-1][1] != "bikes=2,docks=2"):
            time.sleep(0.05)
        time.sleep(0.3)  # keep the load on after the swap
    finally:
        stop.set()
        loop.join(timeout=20)
    statuses = [status for status, _ in seen]
    versions = [v for _, v in seen]
    assert len(seen) > 20
    assert statuses.count(200) == len(seen), [s for s in seen if s[0] != 200][:3]
    assert versions[-1] == "bikes=2,docks=2"
    assert set(versions) <= {"bikes=1,docks=1", "bikes=2,docks=1", "bikes=1,docks=2", "bikes=2,docks=2"}
    after = endpoint.http.post("/invocations", json=body).json()
    assert after["p_bikes"] != before.json()["p_bikes"]
    assert endpoint.provider.state().swaps >= 4  # two first loads + two swaps


def test_registry_unreachable_at_start_is_a_clear_error(store: Store, free_port: int, tmp_path: Path) -> None:
    settings = store.settings("sf", mlflow_tracking_uri=f"http://127.0.0.1:{free_port}", mlflow_http_max_retries=0,
                              mlflow_http_timeout_s=2)  # fmt: skip
    with pytest.raises(RegistryUnavailable, match=f"127.0.0.1:{free_port}"):
        build_provider(settings)  # the endpoint's builder: its Resources set the MLflow retries once
    result = CliRunner().invoke(
        cli,
        ["serve", "--port", "0"],
        env={
            "BIKESHARE_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port}",
            "BIKESHARE_MLFLOW_HTTP_MAX_RETRIES": "0",
            "BIKESHARE_MLFLOW_HTTP_TIMEOUT_S": "2",
            "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
            "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        },
    )
    assert result.exit_code == 3, result.output
    assert "cannot start the endpoint" in result.output and "unavailable" in result.output


def test_endpoint_keeps_serving_when_the_registry_goes_away(
    store: Store, city_both: str, serve: Callable[..., Endpoint], tmp_path: Path
) -> None:
    db = tmp_path / "mlflow-copy.db"
    shutil.copyfile(store.state / "mlflow.db", db)
    settings = store.settings(city_both, mlflow_tracking_uri=f"sqlite:///{db}", serve_model_poll_s=0.1)
    endpoint = serve(settings)
    body = {k: v[:3] if k == "data" else v for k, v in city_request(store.frame).items()}
    assert endpoint.http.get("/healthz").json()["source"]["reachable"] is True

    db.write_bytes(b"this is not a database any more" * 100)  # the store breaks under the endpoint
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and endpoint.provider.state().registry_reachable is not False:
        time.sleep(0.05)
    health = endpoint.http.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded" and health.json()["source"]["reachable"] is False
    assert "unavailable" in health.json()["source"]["last_error"]
    response = endpoint.http.post("/invocations", json=body)
    assert response.status_code == 200 and response.json()["models"]["bikes"]["version"] == "1"
    assert endpoint.http.get("/ping").status_code == 200
    assert "bikeshare_registry_up 0.0" in endpoint.http.get("/metrics").text


def test_staging_removed_is_unloaded_and_production_kept(store: Store, tmp_path: Path) -> None:
    city = store.city(production=True)
    settings = store.settings(city)
    for target in ("bikes", "docks"):
        store.client.set_registered_model_alias(model_name(city, target), "staging", "1")
    provider = RegistryModelProvider(settings=settings, registry=lambda: store.client)
    provider.load()
    assert set(provider.state().sets) == {"production", "staging"}
    for target in ("bikes", "docks"):
        store.client.delete_registered_model_alias(model_name(city, target), "staging")
    store.client.delete_registered_model_alias(model_name(city, "bikes"), "production")
    assert provider.refresh()
    state = provider.state()
    assert set(state.sets) == {"production"}  # production keeps its last loaded version
    assert "no 'production' alias any more" in (state.last_error or "")


def test_folder_provider_serves_an_exported_alias(store: Store, city_both: str, tmp_path: Path) -> None:
    settings = store.settings(city_both)
    written = export_alias(store.client, settings=settings, alias="staging", dest=tmp_path / "model")
    provider = FolderModelProvider(tmp_path / "model", settings=settings)
    state = provider.load()
    served = state.sets["production"]  # a flat folder is served as the endpoint's alias
    assert served.bikes.version == written["bikes"]["version"] and served.bikes.name == model_name(city_both, "bikes")
    with pytest.raises(FileNotFoundError, match="no model bundles"):
        FolderModelProvider(tmp_path, settings=settings).load()


def test_serve_refuses_a_model_folder_without_bundles(tmp_path: Path) -> None:
    (tmp_path / "model" / "bikes").mkdir(parents=True)
    env = {"BIKESHARE_STATE_DIR": str(tmp_path / "state"), "BIKESHARE_LAKE_URI": str(tmp_path / "lake")}
    for workers in ("1", "2"):
        result = CliRunner().invoke(
            cli, ["serve", "--port", "0", "--workers", workers, "--model-dir", str(tmp_path / "model")], env=env
        )
        assert result.exit_code == 2, result.output
        assert "no model bundles in" in result.output and "bikes/bundle.json" in result.output
