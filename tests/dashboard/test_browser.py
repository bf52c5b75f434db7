"""End to end: `bikeshare dashboard` on a loopback port, every page loaded in headless Debian Chromium.

The lake is the world's with a second, stale city (Oslo, see ``build_fleet_world``). Each page is
waited for until a value computed here from the lake shows, and until Streamlit reports the script
idle; then the rendered DOM is checked (status bar colours, the map's fitted bounds and its ringed
station, the masked station's notice, the onset-lift row, the fleet overview) and a screenshot is
saved under the test's temp folder. One dashboard, one browser, each page visited once.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from bikeshare.lake.store import Lake
from support.processes import running_dashboard

from .conftest import OSLO, World

if TYPE_CHECKING:
    from playwright.sync_api import Page

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


@pytest.fixture
def dashboard_url(fleet_world: World, free_port: int) -> Iterator[str]:
    """`bikeshare dashboard --port <free>` on the two-city lake in its own process, stopped with SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIKESHARE_")} | fleet_world.env()
    with running_dashboard(env, port=free_port, timeout_s=90) as url:
        yield url


def lake_rows(world: World, sql: str) -> pd.DataFrame:
    con = Lake.open(str(world.lake_dir)).connect()
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def expected_values(world: World) -> dict[str, str]:
    """Values of the sf city computed from the lake, that the pages must show."""
    top = lake_rows(
        world,
        """
        SELECT l.station_id, i.name FROM inference_latest l JOIN station_information_current i USING (city, station_id)
        WHERE l.city = 'sf' GROUP BY ALL ORDER BY max(l.probability) DESC, l.station_id LIMIT 1
        """,
    ).iloc[0]
    rolling = lake_rows(
        world,
        "SELECT pr_auc FROM quality_rolling_24h WHERE city = 'sf' AND target = 'bikes' AND NOT shadow "
        "ORDER BY window_end DESC LIMIT 1",
    ).iloc[0, 0]
    p95 = lake_rows(
        world, "SELECT p95_ms FROM endpoint_metrics WHERE city = 'sf' ORDER BY window_end DESC LIMIT 1"
    ).iloc[0, 0]
    newest = lake_rows(world, "SELECT max(dt) FROM station_status WHERE city = 'sf'").iloc[0, 0]
    snapshot = pd.Timestamp(pd.to_datetime(newest, format="%Y-%m-%d-%H-%M"), tz="UTC").tz_convert("America/Los_Angeles")
    masked = lake_rows(
        world,
        f"SELECT station_id FROM station_status WHERE city = 'sf' AND dt = '{newest}' AND masked "
        "ORDER BY station_id LIMIT 1",
    ).iloc[0, 0]
    return {
        "top_id": top["station_id"],
        "top_name": top["name"],
        "pr_auc": f"PR-AUC {rolling:.3f}",
        "p95": f"{p95:.1f}",
        "snapshot": f"Rows of the newest snapshot ({snapshot:%Y-%m-%d %H:%M %Z})",
        "masked_id": masked,
    }


def settle(page: Page) -> None:
    """Until Streamlit's script is idle and no element shows a loading skeleton."""
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=90_000)
    page.wait_for_function(  # lazily loaded elements (tables, charts) show skeletons first
        "document.querySelectorAll('[data-testid^=\"stSkeleton\"]').length === 0", timeout=90_000
    )


def shoot(page: Page, folder: Path, name: str) -> None:
    page.wait_for_timeout(500)  # let the map and charts draw their canvases
    shot = folder / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000, f"{name}: screenshot looks blank"
    assert page.get_by_text("Page not found").count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: exception shown"
    assert page.get_by_text("Read from the lake at", exact=False).count() == 1, f"{name}: no last read"


def pill_level(page: Page, key: str) -> str:
    """The colour (green/amber/red) of a status bar pill."""
    return str(page.locator(f'.bs-status .bs-pill[data-key="{key}"]').get_attribute("data-level"))


def map_view(page: Page) -> dict[str, float | str]:
    marker = page.locator(".bs-map-view")
    out: dict[str, float | str] = {
        k: float(marker.get_attribute(f"data-{k}") or "nan") for k in ("south", "west", "north", "east", "lat", "lon")
    }
    out["highlight"] = marker.get_attribute("data-highlight") or ""
    return out


def pick_from_list(page: Page, label: str, typed: str) -> None:
    """Choose an option of a Streamlit selectbox by typing part of it."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).locator("input")
    box.click()
    box.fill(typed)
    page.keyboard.press("Enter")


def check_map(page: Page, world: World, want: dict[str, str], folder: Path) -> None:
    """Status bar, fitted bounds containing every station, list pick -> ring and pan, masked notice."""
    assert pill_level(page, "data") in {"green", "amber"}, "sf is live in its replay: not red"
    view = map_view(page)
    stations = lake_rows(world, "SELECT station_id, lat, lon FROM station_information_current WHERE city = 'sf'")
    outside = stations[
        ~stations["lat"].between(view["south"], view["north"]) | ~stations["lon"].between(view["west"], view["east"])
    ]
    assert len(stations) > 100 and outside.empty, f"{len(outside)} of {len(stations)} stations outside {view}"
    assert page.locator('[data-testid="stDeckGlJsonChart"] canvas').count() >= 1, "no map canvas"
    shoot(page, folder, "map")

    pick_from_list(page, "Station (or click one on the map)", want["masked_id"])
    page.wait_for_selector(f'.bs-map-view[data-highlight="{want["masked_id"]}"]', state="attached", timeout=60_000)
    settle(page)
    station = stations[stations["station_id"] == want["masked_id"]].iloc[0]
    picked = map_view(page)
    assert abs(float(picked["lat"]) - station["lat"]) < 1e-5 and abs(float(picked["lon"]) - station["lon"]) < 1e-5
    notice = page.locator('[data-testid="stAlert"]').filter(has_text="Not scored: the station is masked as")
    assert notice.count() == 1, "no masked-station notice"
    assert page.get_by_text("run `bikeshare infer`", exact=False).count() == 0
    shoot(page, folder, "map-masked-pick")


def check_fleet(page: Page, url: str, folder: Path) -> None:
    """Two cities, Oslo red (stale); Open oslo shows its pages, and the pick holds across pages."""
    rows = page.locator("table.bs-fleet tr.bs-city")
    assert [rows.nth(i).get_attribute("data-city") for i in range(rows.count())] == ["oslo", "sf"]
    oslo = page.locator(f'tr.bs-city[data-city="{OSLO}"]')
    assert oslo.locator('.bs-pill[data-key="data"]').get_attribute("data-level") == "red"
    assert "3 h" in oslo.locator('.bs-pill[data-key="data"]').inner_text()
    assert oslo.locator(".bs-lift-onsets").inner_text() == "-"  # no model served there
    sf = page.locator('tr.bs-city[data-city="sf"]')
    assert sf.locator('.bs-pill[data-key="data"]').get_attribute("data-level") != "red"
    assert "bikes" in sf.locator(".bs-lift-onsets").inner_text()
    assert "own" in sf.inner_text()
    shoot(page, folder, "fleet")

    page.get_by_role("button", name=f"Open {OSLO}").click()
    page.get_by_role("heading", name="Map").wait_for(timeout=60_000)
    settle(page)
    assert f"city={OSLO}" in page.url
    assert pill_level(page, "data") == "red", "the stale city's status bar is not red"
    assert page.locator(".bs-status").get_attribute("data-level") == "red"
    shoot(page, folder, "oslo-map")
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Data freshness").click()
    page.get_by_role("heading", name="Data freshness").wait_for(timeout=60_000)
    settle(page)
    assert page.locator('[data-testid="stSidebar"]').get_by_text(f"city {OSLO}", exact=False).count() >= 1
    assert pill_level(page, "data") == "red"
    shoot(page, folder, "oslo-freshness")


def test_every_page_renders_in_chromium(fleet_world: World, dashboard_url: str, tmp_path: Path) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    want = expected_values(fleet_world)
    pages = [
        ("map", "/", want["top_name"]),
        ("top-risk", "/top-risk", "Dispatch rule"),
        ("model-health", "/model-health", want["pr_auc"]),
        ("system-health", "/system-health", want["p95"]),
        ("freshness", "/freshness", want["snapshot"]),
        ("fleet", "/fleet", "Open a city's pages"),
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
                settle(page)
                assert page.get_by_text("data as of", exact=False).count() >= 1, f"{name}: no status bar"
                assert pill_level(page, "data") in {"green", "amber", "red"}
                if name == "map":
                    check_map(page, fleet_world, want, tmp_path)
                    continue
                if name == "fleet":
                    check_fleet(page, dashboard_url, tmp_path)
                    continue
                shoot(page, tmp_path, name)
                if name == "top-risk":
                    with page.expect_download() as download:
                        page.get_by_text("Download CSV").click()
                    rows = list(csv.DictReader(Path(download.value.path()).read_text().splitlines()))
                    assert rows[0]["station id"] == want["top_id"]
                if name == "model-health":
                    onsets = page.locator(".bs-onset-lift")
                    targets = {onsets.nth(i).get_attribute("data-target") for i in range(onsets.count())}
                    assert targets == {"bikes", "docks"}, f"onset-lift row: {targets}"
        finally:
            browser.close()
    print(f"screenshots in {tmp_path}")
