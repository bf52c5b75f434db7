"""Top-N risk: the riskiest stations of the latest batch, filtered, with a dispatch suggestion and CSV export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.context import PageContext, no_data, page_context, page_done, page_start
from bikeshare.dashboard.risk import DISPATCH_RULE, NO_REGION, TOP_N_BOUNDS, RiskFilter, plan_notes, top_risk
from bikeshare.dashboard.status import Clock

TARGET_LABELS = {"either": "either (max of both)", "bikes": "no bikes", "docks": "no docks"}
# Key columns first (what to act on), the station id last.
TABLE_COLUMNS = {
    "rank": "rank",
    "name": "station",
    "score": "probability",
    "suggested_move": "suggested move",
    "action": "action",
    "shortfall": "shortfall",
    "truck_plan": "truck plan",
    "plan_differs": "why the plan differs",
    "p_bikes": "P(no bikes)",
    "p_docks": "P(no docks)",
    "bikes_now": "bikes now",
    "docks_now": "docks now",
    "capacity": "capacity",
    "region": "region",
    "distance_m": "distance (m)",
    "station_id": "station id",
}
PROBABILITY_COLUMNS = ("probability", "P(no bikes)", "P(no docks)")


def filters(ctx: PageContext, stations: pd.DataFrame) -> tuple[RiskFilter, float]:
    """The filter widgets; returns the rule and the target fill."""
    c1, c2, c3, c4 = st.columns([2, 3, 2, 1])
    target = c1.radio("Target", list(TARGET_LABELS), format_func=TARGET_LABELS.get, horizontal=True, key="target")
    regions = sorted(str(r) for r in stations["region_id"].dropna().unique())
    if stations["region_id"].isna().any():
        regions.append(NO_REGION)
    chosen = c2.multiselect(
        "Region", regions, format_func=region_label, key="regions", placeholder="every region",
        help="The feed's region id (this lake keeps no region names); '(no region)': stations without one.",
    )  # fmt: skip
    min_p = c3.slider("Minimum probability", 0.0, 1.0, 0.0, 0.05, key="min_p")
    lo, hi = TOP_N_BOUNDS
    asked = int(c4.number_input("N", value=ctx.settings.dashboard_top_n, step=1, key="top_n"))
    top_n = min(max(asked, lo), hi)
    if top_n != asked:
        st.warning(f"N must be between {lo} and {hi}: {asked} asked, showing {top_n}.")
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


def region_label(region: str) -> str:
    return region if region == NO_REGION else f"region {region}"


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
    top["region"] = top["region_id"].map(lambda r: NO_REGION if pd.isna(r) else region_label(str(r)))
    summary, stops = q.latest_plan(ctx.src, ctx.epoch)
    top = top.join(plan_notes(top, stops, summary))
    columns = [c for c in TABLE_COLUMNS if c in top.columns]
    table = top[columns].rename(columns=TABLE_COLUMNS)
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            **{
                c: st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)
                for c in PROBABILITY_COLUMNS
            },
            "distance (m)": st.column_config.NumberColumn(format="%.0f"),
            "station id": st.column_config.TextColumn(width="small"),
        },
        key="top_table",
    )
    ties = int(top["tied"].sum())
    st.caption(
        f"Order: probability ({TARGET_LABELS[rule.target]}), then the shortfall (bikes to bring for no bikes, "
        f"docks to free for no docks), then the station id. {ties} of {len(top)} rows share their probability "
        f"(to 0.1 %) with another row and are ordered by the shortfall. Click a column header to sort."
        + ("" if len(top) == rule.top_n else f" Only {len(top)} stations pass the filters.")
    )
    if (top["plan_differs"] != "").any():
        st.caption(
            "Where the truck plan differs from the suggested move: the plan is capacity-bound (its trucks, their "
            "capacity and the horizon), the suggested move is each station's own need."
        )
    csv = csv_table(table.assign(batch_time=ctx.fmt(b["feature_time"]), target_fill=fill)).to_csv(index=False)
    st.download_button(
        "Download CSV",
        csv,
        file_name=f"top-risk-{pd.Timestamp(b['feature_time']):%Y%m%dT%H%MZ}.csv",
        mime="text/csv",
        key="csv",
    )


def csv_table(table: pd.DataFrame) -> pd.DataFrame:
    """The CSV of the table: probabilities rounded to 3 decimals, distances to metres, readable headers."""
    out = table.copy()
    for column in PROBABILITY_COLUMNS:
        if column in out:
            out[column] = out[column].round(3)
    if "distance (m)" in out:
        out["distance (m)"] = out["distance (m)"].round(0)
    return out.rename(columns={"batch_time": "batch time", "target_fill": "target fill"})


if __name__ == "__main__":
    main()
