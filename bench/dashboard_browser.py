"""Browser mode of the dashboard load benchmark (``bench/dashboard_load.py --browser``).

``bikeshare dashboard`` runs on a loopback port over the lake; Debian's Chromium (no browser
download) is driven with playwright-core's Python client. Each measurement opens the page in a fresh
browser page (a new Streamlit session, so its session state is empty; the server's query caches are
not cleared, as for a second operator within ``dashboard_cache_ttl_s``, except on the first run):

- content: navigation start until the page's main content is drawn (the map canvas with its
  stations' view, the tables and charts filled: no skeleton left, the script idle);
- interactions: a filter change on Top-N (the Target radio), a station pick from the Map's list
  (until the ring is on the picked station and the script is idle).

``--cities N`` measures the fleet overview on a lake of N cities: the bench lake's city copied
under N - 1 more keys (same data, other ``city=`` folders).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
GOAL_CONTENT_S, GOAL_INTERACTION_S = 1.5, 0.8
IDLE = '[data-test-script-state="notRunning"]'
NO_SKELETON = "document.querySelectorAll('[data-testid^=\"stSkeleton\"]').length === 0"
# page url -> the selector of its main content
PAGES: dict[str, str] = {
    "/": '[data-testid="stDeckGlJsonChart"] canvas',
    "/top-risk": '[data-testid="stDataFrame"]',
    "/model-health": '[data-testid="stVegaLiteChart"]',
    "/system-health": '[data-testid="stDataFrame"]',
    "/freshness": '[data-testid="stDataFrame"]',
    "/fleet": "table.bs-fleet tr.bs-city",
}


@contextmanager
def dashboard(env: dict[str, str]) -> Iterator[str]:
    """`bikeshare dashboard` on a free port until the block ends (``tests/support/processes.py``)."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.processes import running_dashboard

    with running_dashboard(env) as url:
        yield url


def settle(page: Any) -> None:
    page.wait_for_selector(IDLE, state="attached", timeout=120_000)
    page.wait_for_function(NO_SKELETON, timeout=120_000)


WATCH_RUNS = """() => {
    window.__bsRuns = 0;
    new MutationObserver((changes) => {
        for (const c of changes) {
            if (c.target.getAttribute('data-test-script-state') === 'running') window.__bsRuns += 1;
        }
    }).observe(document.body, {attributes: true, subtree: true, attributeFilter: ['data-test-script-state']});
}"""
RAN_AND_IDLE = "() => window.__bsRuns > 0 && document.querySelector('[data-test-script-state=\"notRunning\"]') !== null"


def wait_rerun(page: Any) -> None:
    """After an action: until the script has run again (counted by WATCH_RUNS) and is idle."""
    page.wait_for_function(RAN_AND_IDLE, timeout=120_000)
    settle(page)


def content_time(browser: Any, url: str, selector: str) -> float:
    """Seconds from navigation start to the page's main content drawn and the script idle."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    try:
        started = time.perf_counter()
        page.goto(url, wait_until="commit", timeout=120_000)
        page.wait_for_selector(selector, state="visible", timeout=120_000)
        if selector == PAGES["/"]:  # the map: its stations' view too
            page.wait_for_selector(".bs-map-view", state="attached", timeout=120_000)
        settle(page)
        return time.perf_counter() - started
    finally:
        page.close()


def interaction_time(browser: Any, url: str, ready: str, act: Callable[[Any], str | None]) -> float:
    """Seconds of one interaction on a page already drawn: ``act`` does it and returns a selector that
    must then be attached (or None)."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    try:
        page.goto(url, timeout=120_000)
        page.wait_for_selector(ready, state="visible", timeout=120_000)
        settle(page)
        page.evaluate(WATCH_RUNS)
        started = time.perf_counter()
        expect = act(page)
        if expect:
            page.wait_for_selector(expect, state="attached", timeout=120_000)
        wait_rerun(page)
        return time.perf_counter() - started
    finally:
        page.close()


def change_target(page: Any) -> None:
    radio = page.locator('[data-testid="stRadio"]').filter(has_text="Target")
    radio.locator("label").filter(has=page.locator("input:not(:checked)")).first.click()


def pick_station(station_id: str) -> Callable[[Any], str]:
    def act(page: Any) -> str:
        box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Station (or click").locator("input")
        box.click()
        box.fill(station_id)
        page.keyboard.press("Enter")
        return f'.bs-map-view[data-highlight="{station_id}"]'

    return act


def copy_cities(lake: Path, city: str, n: int, out: Path) -> Path:
    """A lake of ``n`` cities: ``lake`` with ``city``'s folders copied as ``<city>2`` ... ``<city>n``."""
    if out.exists():
        return out
    shutil.copytree(lake, out)
    for source in list(out.rglob(f"city={city}")):  # every table's folder of the city, in any zone
        for i in range(2, n + 1):
            shutil.copytree(source, source.with_name(f"city={city}{i}"))
    return out


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f}s ({min(values):.2f}-{max(values):.2f})"


def run(env: dict[str, str], lake: Path, city: str, runs: int, cities: list[int], work: Path) -> None:
    """Measure and print the table (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    from bikeshare.lake.store import Lake

    con = Lake.open(str(lake)).connect()
    station = con.execute(
        "SELECT station_id FROM station_information_current WHERE city = ? ORDER BY station_id DESC LIMIT 1", [city]
    ).fetchone()[0]
    con.close()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    rows: list[tuple[str, list[float], float]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            with dashboard(env) as url:
                for path, selector in PAGES.items():
                    times = [content_time(browser, url + path, selector) for _ in range(runs + 1)]
                    rows.append((f"content {path}", times[1:], times[0]))
                    print(f"  {rows[-1][0]}: first {times[0]:.2f}s, then {fmt(times[1:])}", flush=True)
                top = [
                    interaction_time(browser, url + "/top-risk", PAGES["/top-risk"], change_target) for _ in range(runs)
                ]
                rows.append(("filter change (Top-N target)", top, float("nan")))
                pick = [interaction_time(browser, url + "/", PAGES["/"], pick_station(station)) for _ in range(runs)]
                rows.append(("station pick (Map list)", pick, float("nan")))
            for n in cities:
                lake_n = copy_cities(lake, city, n, work / f"lake-{n}-cities")
                with dashboard(env | {"BIKESHARE_LAKE_URI": str(lake_n)}) as url:
                    times = [content_time(browser, url + "/fleet", PAGES["/fleet"]) for _ in range(runs + 1)]
                    rows.append((f"content /fleet, {n} cities", times[1:], times[0]))
                    print(f"  {rows[-1][0]}: first {times[0]:.2f}s, then {fmt(times[1:])}", flush=True)
        finally:
            browser.close()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    print(f"\n| measure | first (empty caches) | median (min-max) of {runs} | goal |")
    print("| --- | --- | --- | --- |")
    for name, values, first in rows:
        goal = GOAL_INTERACTION_S if name.startswith(("filter", "station")) else GOAL_CONTENT_S
        first_text = "-" if first != first else f"{first:.2f} s"
        verdict = "ok" if statistics.median(values) <= goal else "over"
        print(f"| {name} | {first_text} | {fmt(values).strip()} | <= {goal} s: {verdict} |")
