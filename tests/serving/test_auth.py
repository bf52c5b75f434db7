"""Who may change state and where the endpoint may listen (issue 15, item 5): the alert ack needs the
API key and is disabled (403) on an endpoint without one; a start on a non-loopback host without a
key is refused unless explicitly allowed, which the SageMaker entry point does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bikeshare.lake.store import Lake
from bikeshare.monitoring.alerts import AlertEvent, Signal, evaluate
from bikeshare.monitoring.rules import load_rules
from bikeshare.monitoring.store import AlertStore
from bikeshare.serving.models import RegistryModelProvider, export_alias
from bikeshare.serving.server import run_server

from .conftest import Endpoint, Store
from .realmodel import city_request

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"
UNASSIGNED = "192.0.2.1"  # TEST-NET-1: never an address of this machine, so nothing is ever exposed


def _firing_alert(lake: Lake, city: str) -> tuple[AlertStore, AlertEvent]:
    store = AlertStore(lake, city=city)
    fired_at = datetime.now(UTC) - timedelta(minutes=3)
    (event,) = evaluate([load_rules().get("data_delay")], [Signal("data_delay_s", 400.0, {"feed": "x"})], [], fired_at)
    store.append([event])
    return store, event


def test_ack_is_disabled_on_an_endpoint_without_a_key(
    store: Store, city_both: str, serve: Callable[..., Endpoint], tmp_path: Path
) -> None:
    endpoint = serve(store.settings(city_both, lake_uri=str(tmp_path / "lake")))
    alerts, event = _firing_alert(Lake.open(endpoint.settings.lake_uri), endpoint.settings.city)
    for body in ({"by": "oncall"}, {}, None):
        response = endpoint.http.post(f"/v1/alerts/{event.alert_id}/ack", json=body)
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "writes_disabled"
        assert "serve_api_key" in response.json()["detail"] and "X-API-Key" in response.json()["detail"]
    assert alerts.get(event.alert_id).status == "firing"  # nothing changed
    # reading and scoring stay open: they change nothing
    small = {k: v[:2] if k == "data" else v for k, v in city_request(store.frame).items()}
    assert endpoint.http.post("/invocations", json=small).status_code == 200
    assert endpoint.http.get("/ping").status_code == 200


def test_ack_needs_the_key_when_one_is_set(
    store: Store, city_both: str, serve: Callable[..., Endpoint], tmp_path: Path
) -> None:
    endpoint = serve(store.settings(city_both, lake_uri=str(tmp_path / "lake"), serve_api_key="s3cret"))
    alerts, event = _firing_alert(Lake.open(endpoint.settings.lake_uri), endpoint.settings.city)
    path = f"/v1/alerts/{event.alert_id}/ack"
    assert endpoint.http.post(path, json={"by": "oncall"}).status_code == 401
    assert endpoint.http.post(path, json={"by": "oncall"}, headers={"X-API-Key": "guess"}).status_code == 401
    assert alerts.get(event.alert_id).status == "firing"
    done = endpoint.http.post(path, json={"by": "oncall"}, headers={"X-API-Key": "s3cret"})
    assert done.status_code == 200 and done.json()["acknowledged_by"] == "oncall"


def test_a_non_loopback_start_without_a_key_is_refused(store: Store, city_both: str) -> None:
    settings = store.settings(city_both)
    with pytest.raises(ValueError, match=rf"refusing to listen on {UNASSIGNED} without an API key") as refused:
        run_server(settings=settings, host=UNASSIGNED, port=0)
    assert "serve_api_key" in str(refused.value) and "serve_allow_unauthenticated" in str(refused.value)


def test_which_hosts_need_a_key(store: Store, city_both: str) -> None:
    from bikeshare.serving.server import check_exposure  # decided without binding anything

    open_settings = store.settings(city_both)
    for host in ("0.0.0.0", "::", "10.1.2.3", "bikes.example", ""):
        with pytest.raises(ValueError, match="without an API key"):
            check_exposure(open_settings, host)
        check_exposure(store.settings(city_both, serve_api_key="s3cret"), host)
        check_exposure(store.settings(city_both, serve_allow_unauthenticated=True), host)
    for host in ("127.0.0.1", "127.0.0.5", "localhost", "::1", "[::1]"):
        check_exposure(open_settings, host)


def test_a_key_or_the_explicit_opt_out_lets_the_endpoint_start(store: Store, city_both: str) -> None:
    base = store.settings(city_both)
    provider = RegistryModelProvider(settings=base, registry=lambda: store.client)
    provider.load()
    for settings in (
        store.settings(city_both, serve_api_key="s3cret"),
        store.settings(city_both, serve_allow_unauthenticated=True),
    ):
        # past the check, the start fails only because TEST-NET-1 is not an address of this machine
        with pytest.raises(OSError, match=f"cannot listen on {UNASSIGNED}"):
            run_server(settings=settings, host=UNASSIGNED, port=0, provider=provider)


def test_the_sagemaker_entrypoint_opts_out_explicitly(store: Store, city_both: str, tmp_path: Path) -> None:
    export_alias(store.client, settings=store.settings(city_both), alias="production", dest=tmp_path / "model")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "BIKESHARE_SERVE_HOST": UNASSIGNED,  # where the container's 0.0.0.0 would be: not loopback
        "BIKESHARE_SERVE_PORT": "0",
        "BIKESHARE_SERVE_WORKERS": "1",
        "BIKESHARE_CITY": city_both,
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
    }
    env.pop("BIKESHARE_SERVE_API_KEY", None)
    env.pop("BIKESHARE_SERVE_ALLOW_UNAUTHENTICATED", None)
    opted = subprocess.run(["sh", str(ENTRYPOINT), "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert opted.returncode == 2, opted.stderr
    assert f"cannot listen on {UNASSIGNED}" in opted.stderr and "refusing" not in opted.stderr
    env["BIKESHARE_SERVE_ALLOW_UNAUTHENTICATED"] = "false"  # an operator can still say no
    refused = subprocess.run(["sh", str(ENTRYPOINT), "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "refusing to listen on" in refused.stderr, refused.stderr
