"""Fleet overview: one row per city (data age, batch success, online lift on all rows and on onsets,
firing alerts, served model family); a city's Open button shows its pages (sets the city picker)."""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.context import (
    PICK_KEY,
    PageContext,
    StatusItem,
    city_choices,
    city_context,
    page_clock,
    page_context,
    page_done,
    page_start,
    status_items,
)
from bikeshare.dashboard.status import LEVEL_BACKGROUNDS, LEVEL_COLOURS, worst
from bikeshare.settings import load_settings

MAP_PAGE = "pages/risk_map.py"
# Every city serves its own models today; a pooled family (one model over cities) is future work.
MODEL_FAMILY = "own"


@dataclass(frozen=True)
class CityRow:
    """What the overview shows of one city."""

    key: str
    name: str
    items: dict[str, StatusItem]
    batch_success: str
    lift_all: str
    lift_onsets: str
    family: str = MODEL_FAMILY


def batch_success(ctx: PageContext) -> str:
    """Share of the served batches of the newest feature day that succeeded, e.g. ``96 % (48/50)``."""
    hourly, _failed = q.batch_panels(ctx.src, ctx.epoch, 1)
    if hourly.empty:
        return "no batch yet"
    ok, failed = int(hourly["ok"].sum()), int(hourly["failed"].sum())
    if ok + failed == 0:
        return "only skipped batches"
    return f"{ok / (ok + failed):.0%} ({ok}/{ok + failed})"


def newest_lift(lift: pd.DataFrame, subset: str) -> str:
    """Lift (model PR-AUC minus persistence) of the newest local day per target, e.g. ``bikes +0.12``."""
    if lift.empty:
        return "-"
    rows = lift[(lift["subset"] == subset) & (lift["day"] == lift["day"].max())]
    wide = rows.pivot_table(index="target", columns="scorer", values="pr_auc")
    if "model" not in wide or "persistence" not in wide:
        return "-"
    parts = [f"{target} {value:+.3f}" for target, value in (wide["model"] - wide["persistence"]).dropna().items()]
    return " · ".join(parts) or "-"


def city_row(ctx: PageContext) -> CityRow:
    """The overview row of one city (its own clock, status rules and queries)."""
    items = {i.key: i for i in status_items(ctx, page_clock(ctx))}
    _rolling, lift, _calibration = q.quality_panels(ctx.src, ctx.epoch, 1, ctx.tz, ctx.settings.shortage_threshold)
    return CityRow(
        key=ctx.src.city,
        name=ctx.system_name or ctx.src.city,
        items=items,
        batch_success=batch_success(ctx),
        lift_all=newest_lift(lift, "all rows"),
        lift_onsets=newest_lift(lift, "onsets"),
    )


def _pill(item: StatusItem | None) -> str:
    if item is None:
        return "-"
    level = item.level
    return (
        f'<span class="bs-pill" data-key="{item.key}" data-level="{level}" title="{html.escape(item.detail)}" '
        f'style="background:{LEVEL_BACKGROUNDS[level]};color:{LEVEL_COLOURS[level]};border-radius:1rem;'
        f'padding:0.05rem 0.5rem;display:inline-block;">● {html.escape(item.text)}</span>'
    )


def fleet_html(rows: list[CityRow], picked: str) -> str:
    """The overview as an HTML table (``data-city`` on each row, ``data-level`` on each pill)."""
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "city",
            "data age",
            "batch success (newest day)",
            "online lift, all rows",
            "online lift, onsets",
            "alerts",
            "jobs",
            "model family",
        )
    )
    body = []
    for r in rows:
        overall = worst([i.level for i in r.items.values()])
        mark = " (shown)" if r.key == picked else ""
        body.append(
            f'<tr class="bs-city" data-city="{html.escape(r.key)}" data-level="{overall}">'
            f"<td><b>{html.escape(r.name)}</b><br><code>{html.escape(r.key)}</code>{mark}</td>"
            f"<td>{_pill(r.items.get('data'))}</td><td>{html.escape(r.batch_success)}</td>"
            f'<td class="bs-lift-all">{html.escape(r.lift_all)}</td>'
            f'<td class="bs-lift-onsets">{html.escape(r.lift_onsets)}</td>'
            f"<td>{_pill(r.items.get('alerts'))}</td><td>{_pill(r.items.get('jobs'))}</td>"
            f"<td>{html.escape(r.family)}</td></tr>"
        )
    rows_html = "".join(body)
    table = '<table class="bs-fleet" style="width:100%;font-size:0.85rem;">'
    return f"{table}<thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"


def main() -> None:
    ctx = page_context()
    page_start(ctx, "Fleet")
    try:
        render(ctx)
    finally:
        page_done(ctx)


def render(ctx: PageContext) -> None:
    base = load_settings()
    keys = city_choices(base)
    rows = [city_row(city_context(base, key)) for key in keys]
    st.markdown(fleet_html(rows, ctx.src.city), unsafe_allow_html=True)
    st.caption(
        f"{len(rows)} cit{'y' if len(rows) == 1 else 'ies'}: those in the lake and in the fleet file. Data age, "
        "alerts and jobs follow the status bar's rules, each city on its own clock. Batch success: served "
        "batches of the newest feature day, ok / (ok + failed). Lift: PR-AUC of the model minus persistence's on "
        "the newest local day (Model health has the days). Model family: every city serves its **own** models "
        "today; a pooled family (one model over cities) is future work."
    )
    st.markdown("**Open a city's pages**")
    per_line = 6
    for start in range(0, len(rows), per_line):
        chunk = rows[start : start + per_line]
        for column, row in zip(st.columns(per_line), chunk, strict=False):
            with column:
                if st.button(f"Open {row.key}", key=f"open_{row.key}", help=f"Show {row.name} on every page"):
                    st.session_state[PICK_KEY] = row.key  # the picker takes it on the next run
                    st.switch_page(MAP_PAGE)


if __name__ == "__main__":
    main()
