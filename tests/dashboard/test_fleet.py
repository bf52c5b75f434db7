"""The fleet parts under AppTest, on the two-city lake (the world's sf and a stale Oslo): the city
picker of the app's entry, kept across pages and in the URL; the fleet overview and its Open buttons;
the cities of a fleet file beside the lake's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bikeshare.dashboard.app import PAGES_DIR

from .conftest import OSLO, World

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

APP = str(PAGES_DIR.parent / "app.py")


@pytest.fixture
def fleet_env(fleet_world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in fleet_world.env().items():
        monkeypatch.setenv(name, value)
    for name in ("BIKESHARE_CONFIG", "BIKESHARE_FLEET"):
        monkeypatch.delenv(name, raising=False)
    yield fleet_world


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sidebar_text(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.sidebar.markdown)


def fleet_rows(at: AppTest) -> dict[str, str]:
    """The overview table's rows by city (their HTML)."""
    table = next(str(m.value) for m in at.markdown if "bs-fleet" in str(m.value))
    return dict(re.findall(r'<tr class="bs-city" data-city="([^"]+)"[^>]*>(.*?)</tr>', table))


def test_the_picker_offers_the_lake_cities_and_holds_across_pages(fleet_env: World) -> None:
    at = run_app()
    picker = at.sidebar.selectbox(key="city")
    assert list(picker.options) == [OSLO, "sf"] and picker.value == "sf"  # the city setting first
    assert "city `sf`" in sidebar_text(at)
    picker.select(OSLO).run()
    assert not at.exception
    assert at.query_params["city"] in (OSLO, [OSLO])
    assert "city `oslo`" in sidebar_text(at) and "Europe/Oslo" in "\n".join(c.value for c in at.sidebar.caption)
    at.switch_page("pages/freshness.py").run()
    assert not at.exception
    assert "city `oslo`" in sidebar_text(at)  # (AppTest runs a switched-to page without the entry's picker)


def test_a_city_in_the_url_is_the_one_shown(fleet_env: World) -> None:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["city"] = OSLO
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="city").value == OSLO and at.title[0].value == "Map"


def test_the_overview_has_a_row_per_city_and_opens_one(fleet_env: World) -> None:
    at = run_app()
    at.switch_page("pages/fleet.py").run()
    assert not at.exception, [e.value for e in at.exception]
    rows = fleet_rows(at)
    assert list(rows) == [OSLO, "sf"]
    assert re.search(r'data-key="data" data-level="red"[^>]*>● data as of [^<]*\(3 h', rows[OSLO]), rows[OSLO]
    assert "no batch yet" in rows[OSLO] and "own" in rows[OSLO]
    assert 'data-key="data" data-level="red"' not in rows["sf"]
    assert re.search(r'bs-lift-onsets">bikes [+-]\d\.\d{3} · docks [+-]\d\.\d{3}<', rows["sf"]), rows["sf"]
    assert re.search(r"\d+% \(\d+/\d+\)", rows["sf"]), rows["sf"]  # batch success
    at.button(key=f"open_{OSLO}").click().run()
    assert not at.exception
    assert at.title[0].value == "Map" and "city `oslo`" in sidebar_text(at)


def test_the_cities_of_a_fleet_file_join_the_lake_ones(
    fleet_env: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        "\n".join(
            f'[[cities]]\nkey = "{key}"\nfeed_url = "http://127.0.0.1:9/{key}/gbfs.json"\n' for key in ("sf", "paris")
        )
    )
    monkeypatch.setenv("BIKESHARE_FLEET", str(fleet))
    at = run_app()
    assert list(at.sidebar.selectbox(key="city").options) == ["sf", "paris", OSLO]  # the file's order, then the lake's
    at.switch_page("pages/fleet.py").run()
    assert not at.exception, [e.value for e in at.exception]
    rows = fleet_rows(at)
    assert list(rows) == ["sf", "paris", OSLO]
    assert "no data yet" in rows["paris"] and "no batch yet" in rows["paris"]
