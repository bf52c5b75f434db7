"""End to end: `bikeshare dashboard` on a loopback port, every page loaded in headless Debian Chromium.

Each page is waited for until a value computed here from the lake shows, and until Streamlit reports
the script idle; then a screenshot is saved under the test's temp folder.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.lake.store import Lake

from .conftest import World

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if found is None:
        pytest.skip("Chromium is not installed here (Debian: apt-get install -y chromium); the browser test needs it")
    return found


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bikeshare dashboard exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"bikeshare dashboard did not listen on {port} within {timeout_s} s")


@pytest.fixture
def dashboard_url(world: World, free_port: int) -> Iterator[str]:
    """`bikeshare dashboard --port <free>` in its own process, stopped with SIGTERM."""
    cli = Path(sys.executable).with_name("bikeshare")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIKESHARE_")} | world.env()
    proc = subprocess.Popen([str(cli), "dashboard", "--port", str(free_port)], env=env)
    try:
        wait_for_port(free_port, proc, 90)
        yield f"http://127.0.0.1:{free_port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def expected_values(world: World) -> dict[str, str]:
    con = Lake.open(str(world.lake_dir)).connect()
    try:
        top = con.execute(
            """
            SELECT l.station_id, i.name FROM inference_latest l JOIN station_information_current i USING (station_id)
            GROUP BY ALL ORDER BY max(l.probability) DESC, l.station_id LIMIT 1
            """
        ).fetchall()[0]
        rolling = con.execute(
            "SELECT pr_auc FROM quality_rolling_24h WHERE target = 'bikes' AND NOT shadow "
            "ORDER BY window_end DESC LIMIT 1"
        ).fetchall()[0][0]
        p95 = con.execute("SELECT p95_ms FROM endpoint_metrics ORDER BY window_end DESC LIMIT 1").fetchall()[0][0]
        newest = con.execute("SELECT max(dt) FROM station_status").fetchall()[0][0]
    finally:
        con.close()
    snapshot = pd.Timestamp(pd.to_datetime(newest, format="%Y-%m-%d-%H-%M"), tz="UTC").tz_convert("America/Los_Angeles")
    return {
        "top_id": top[0],
        "top_name": top[1],
        "pr_auc": f"PR-AUC {rolling:.3f}",
        "p95": f"{p95:.1f}",
        "snapshot": f"Rows of the newest snapshot ({snapshot:%Y-%m-%d %H:%M %Z})",
    }


def test_every_page_renders_in_chromium(world: World, dashboard_url: str, tmp_path: Path) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    want = expected_values(world)
    pages = [
        ("map", "/", want["top_name"]),
        ("top-risk", "/top-risk", "Dispatch rule"),
        ("model-health", "/model-health", want["pr_auc"]),
        ("system-health", "/system-health", want["p95"]),
        ("freshness", "/freshness", want["snapshot"]),
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
            for name, path, text in pages:
                page.goto(dashboard_url + path, timeout=90_000)
                page.get_by_text(text, exact=False).first.wait_for(timeout=90_000)
                if name == "model-health":  # the registry panel arrives from its background read
                    page.get_by_text("Reading the MLflow registry").wait_for(state="detached", timeout=90_000)
                page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=90_000)
                page.wait_for_function(  # lazily loaded elements (tables, charts) show skeletons first
                    "document.querySelectorAll('[data-testid^=\"stSkeleton\"]').length === 0", timeout=90_000
                )
                page.wait_for_timeout(800)  # let the map and charts draw their canvases
                shot = tmp_path / f"{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert page.get_by_text("data as of", exact=False).count() >= 1, f"{name}: no status bar"
                assert page.get_by_text("Read from the lake at", exact=False).count() == 1, f"{name}: no last read"
                assert shot.stat().st_size > 20_000, f"{name}: screenshot looks blank"
                assert page.get_by_text("Page not found").count() == 0
                assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: exception shown"
                if name == "top-risk":
                    with page.expect_download() as download:
                        page.get_by_text("Download CSV").click()
                    rows = list(csv.DictReader(Path(download.value.path()).read_text().splitlines()))
                    assert rows[0]["station id"] == want["top_id"]
        finally:
            browser.close()
    print(f"screenshots in {tmp_path}")
