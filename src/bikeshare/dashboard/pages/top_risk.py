"""Top-N risk: the riskiest stations of the latest batch, filtered, with a dispatch suggestion and CSV export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.context import PageContext, no_data, page_context, page_done, page_start
from bikeshare.dashboard.risk import DISPATCH_RULE, RiskFilter, top_risk
from bikeshare.dashboard.status import Clock

TARGET_LABELS = {"either": "either (max of both)", "bikes": "no bikes", "docks": "no docks"}
TABLE_COLUMNS = {
    "rank": "rank",
    "station_id": "station",
    "name": "name",
    "region_id": "region",
    "p_bikes": "P(no bikes)",
    "p_docks": "P(no docks)",
    "bikes_now": "bikes now",
    "docks_now": "docks now",
    "capacity": "capacity",
    "suggested_move": "suggested move",
    "action": "action",
    "distance_m": "distance (m)",
}


def filters(ctx: PageContext, stations: pd.DataFrame) -> tuple[RiskFilter, float]:
    """The filter widgets; returns the rule and the target fill."""
    c1, c2, c3, c4 = st.columns([2, 3, 2, 1])
    target = c1.radio("Target", list(TARGET_LABELS), format_func=TARGET_LABELS.get, horizontal=True, key="target")
    regions = sorted(str(r) for r in stations["region_id"].dropna().unique())
    chosen = c2.multiselect("Region", regions, key="regions", placeholder="every region")
    min_p = c3.slider("Minimum probability", 0.0, 1.0, 0.0, 0.05, key="min_p")
    top_n = int(c4.number_input("N", 1, 1000, ctx.settings.dashboard_top_n, key="top_n"))
    r1, r2, r3 = st.columns([1, 3, 2])
    mode = r1.radio("Radius around", ["nothing", "a station", "a point"], key="radius_mode")
    center: tuple[float, float] | None = None
    radius: float | None = None
    if mode == "a station":
        placed = stations[stations["lat"].notna()].sort_values("name", na_position="last")
        ids = placed["station_id"].astype(str).tolist()
        names = dict(zip(ids, placed["name"].fillna("(unnamed)"), strict=True))
        pick = r2.selectbox("Station", ids, format_func=lambda s: f"{names[s]} · {s}", key="radius_station")
        row = placed[placed["station_id"].astype(str) == pick].iloc[0]
        center = (float(row["lat"]), float(row["lon"]))
    elif mode == "a point":
        p1, p2 = r2.columns(2)
        lat0 = float(stations["lat"].median())
        lon0 = float(stations["lon"].median())
        center = (
            float(p1.number_input("Latitude", -90.0, 90.0, round(lat0, 5), format="%.5f", key="radius_lat")),
            float(p2.number_input("Longitude", -180.0, 180.0, round(lon0, 5), format="%.5f", key="radius_lon")),
        )
    if center is not None:
        radius = float(r3.slider("Radius (m)", 100, 5000, 1000, 100, key="radius_m"))
    fill = r3.slider(
        "Target fill for the dispatch", 0.0, 1.0, ctx.settings.dashboard_target_fill, 0.05, key="target_fill"
    )
    rule = RiskFilter(
        target=str(target),
        regions=tuple(chosen),
        center=center,
        radius_m=radius,
        min_probability=float(min_p),
        top_n=top_n,
    )
    return rule, float(fill)


def action_text(move: pd.Series) -> pd.Series:
    return move.map(
        lambda m: "-" if pd.isna(m) else ("leave" if m == 0 else (f"bring {m}" if m > 0 else f"take {-m} away"))
    )


def main() -> None:
    ctx = page_context()
    clock = page_start(ctx, "Top-N risk")
    try:
        render(ctx, clock)
    finally:
        page_done(ctx)


def render(ctx: PageContext, clock: Clock) -> None:
    batch = q.latest_batch(ctx.src, ctx.epoch)
    if batch.empty:
        no_data(ctx, "inference batch", "inference")
        return
    b = batch.iloc[0]
    stations = q.latest_risk(ctx.src, ctx.epoch, pd.Timestamp(b["feature_time"]))
    st.caption(
        f"Latest batch {ctx.fmt(b['feature_time'])} ({b['alias']}); probabilities of being short "
        f"(<= {ctx.settings.shortage_threshold}) {int(stations['horizon_min'].dropna().iloc[0])} min later."
    )
    rule, fill = filters(ctx, stations)
    st.info(f"**Dispatch rule** (target fill {fill:.0%}): {DISPATCH_RULE}")
    top = top_risk(stations, rule, target_fill=fill)
    if top.empty:
        st.warning("No station passes these filters: lower the minimum probability or widen the radius.")
        return
    top.insert(0, "rank", range(1, len(top) + 1))
    top["action"] = action_text(top["suggested_move"])
    columns = [c for c in TABLE_COLUMNS if c in top.columns]
    table = top[columns].rename(columns=TABLE_COLUMNS)
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "P(no bikes)": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            "P(no docks)": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            "distance (m)": st.column_config.NumberColumn(format="%.0f"),
        },
        key="top_table",
    )
    st.caption("Click a column header to sort.")
    csv = table.assign(batch_time=ctx.fmt(b["feature_time"]), target_fill=fill).to_csv(index=False)
    st.download_button(
        "Download CSV",
        csv,
        file_name=f"top-risk-{pd.Timestamp(b['feature_time']):%Y%m%dT%H%MZ}.csv",
        mime="text/csv",
        key="csv",
    )


if __name__ == "__main__":
    main()
