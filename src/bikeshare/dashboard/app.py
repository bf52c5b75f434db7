"""Entry of the operations dashboard: ``streamlit run`` this file (``bikeshare dashboard`` does)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).parent / "pages"
# (file, title, url path): the pages in menu order; the map is the default.
DEFAULT_PAGE = "map"
PAGES: tuple[tuple[str, str, str], ...] = (
    ("fleet.py", "Fleet", "fleet"),
    ("risk_map.py", "Map", "map"),
    ("top_risk.py", "Top-N risk", "top-risk"),
    ("model_health.py", "Model health", "model-health"),
    ("system_health.py", "System health", "system-health"),
    ("freshness.py", "Data freshness", "freshness"),
)


def main() -> None:
    """Page set-up, the city picker (one widget for every page), and the page the operator chose."""
    from bikeshare.dashboard.context import city_picker
    from bikeshare.settings import load_settings

    st.set_page_config(page_title="Bike share operations", page_icon=":bike:", layout="wide")
    pages = [
        st.Page(PAGES_DIR / file, title=title, url_path=url, default=url == DEFAULT_PAGE) for file, title, url in PAGES
    ]
    page = st.navigation(pages)
    city_picker(load_settings())
    page.run()


if __name__ == "__main__":
    main()
