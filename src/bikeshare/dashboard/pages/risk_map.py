"""Map: every station coloured by max(P(no bikes), P(no docks)) of the latest batch; a station's panel;
the latest rebalancing plan's routes and benefit."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pydeck as pdk
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.charts import forecast_band, risk_colour, route_paths, text_time, time_lines
from bikeshare.dashboard.context import PageContext, no_data, page_context, page_done, page_start
from bikeshare.dashboard.status import Clock
from bikeshare.lake.store import parse_partition_value

PANEL_HOURS = 2


def station_label(row: pd.Series) -> str:
    name = row["name"] if isinstance(row["name"], str) else "(not in station_information)"
    return f"{name} · {row['station_id']}"


def render_map(ctx: PageContext, stations: pd.DataFrame, stops: pd.DataFrame) -> str | None:
    """The deck; returns the station id picked on it this run (None: no new pick)."""
    placed = stations[stations["lat"].notna() & stations["lon"].notna()].copy()
    placed["colour"] = risk_colour(placed["risk"])
    placed["risk_text"] = placed["risk"].map(lambda v: "not scored" if pd.isna(v) else f"{v:.0%}")
    placed["p_bikes_text"] = placed["p_bikes"].map(lambda v: "-" if pd.isna(v) else f"{v:.0%}")
    placed["p_docks_text"] = placed["p_docks"].map(lambda v: "-" if pd.isna(v) else f"{v:.0%}")
    columns = ["station_id", "name", "lat", "lon", "colour", "risk_text", "p_bikes_text", "p_docks_text"]
    layers = [
        pdk.Layer(
            "ScatterplotLayer",
            id="stations",
            data=placed[columns],
            get_position=["lon", "lat"],
            get_fill_color="colour",
            get_radius=45,
            radius_min_pixels=3,
            radius_max_pixels=14,
            pickable=True,
            auto_highlight=True,
        )
    ]
    if not stops.empty:
        layers.append(
            pdk.Layer(
                "PathLayer",
                id="routes",
                data=route_paths(stops),
                get_path="path",
                get_color="colour",
                width_min_pixels=3,
                pickable=False,
            )
        )
    view = pdk.ViewState(
        latitude=float(placed["lat"].median()), longitude=float(placed["lon"].median()), zoom=11.5, pitch=0
    )
    deck = pdk.Deck(
        layers=layers,
        initial_view_state=view,
        tooltip={"text": "{name}\nrisk {risk_text}\nP(no bikes) {p_bikes_text} · P(no docks) {p_docks_text}"},
        map_style=None,
    )
    event = st.pydeck_chart(deck, on_select="rerun", selection_mode="single-object", key="map", height=560)
    picked = (event.selection.get("objects", {}) if event is not None else {}).get("stations", [])
    return str(picked[0]["station_id"]) if picked else None


def render_panel(ctx: PageContext, row: pd.Series, end: pd.Timestamp) -> None:
    """Name, capacity, current counts, last 2 h observed with the predictions, latest probabilities."""
    st.subheader(row["name"] if isinstance(row["name"], str) else row["station_id"])
    region = row["region_id"] if isinstance(row["region_id"], str) else "-"
    capacity = "-" if pd.isna(row["capacity"]) else int(row["capacity"])
    st.caption(f"Station `{row['station_id']}` · region {region} · capacity {capacity}")
    start = end - timedelta(hours=PANEL_HOURS)
    history = q.station_history(ctx.src, ctx.epoch, str(row["station_id"]), start, end)
    preds = q.station_predictions(ctx.src, ctx.epoch, str(row["station_id"]), start, end)
    now_cols = st.columns(2)
    if history.empty:
        now_cols[0].metric("Bikes now", "-")
        now_cols[1].metric("Docks now", "-")
        no_data(ctx, f"snapshot of this station in the {PANEL_HOURS} h before {ctx.fmt(end)}", "station_status")
    else:
        last = history.iloc[-1]
        now_cols[0].metric("Bikes now", int(last["bikes"]))
        now_cols[1].metric("Docks now", int(last["docks"]))
        st.caption(f"Latest snapshot {ctx.fmt(last['last_updated'])}" + (" (masked)" if last["masked"] else ""))
    prob_cols = st.columns(2)
    for col, target, label in ((prob_cols[0], "bikes", "P(no bikes)"), (prob_cols[1], "docks", "P(no docks)")):
        value = row.get(f"p_{target}")
        col.metric(
            f"{label} in {int(row['horizon_min']) if pd.notna(row.get('horizon_min')) else '-'} min",
            "-" if pd.isna(value) else f"{value:.0%}",
        )
    if pd.notna(row.get("feature_time")):
        st.caption(
            f"Latest batch {ctx.fmt(row['feature_time'])} · {row['alias']} models: bikes v{row['version_bikes']} "
            f"(threshold {row['threshold_bikes']:.2f}), docks v{row['version_docks']} "
            f"(threshold {row['threshold_docks']:.2f})"
        )
    else:
        no_data(ctx, "prediction for this station in the latest batch (masked or no fresh snapshot)", "inference")

    st.markdown(f"**Last {PANEL_HOURS} h** · observed counts")
    if not history.empty:
        counts = history.melt(id_vars=["last_updated"], value_vars=["bikes", "docks"], var_name="series")
        st.altair_chart(
            time_lines(counts, x="last_updated", y="value", color="series", tz=ctx.tz, y_title="count", step=True),
            width="stretch",
        )
    st.markdown("**Predictions made over those hours** · plotted at the time they are about (t + horizon)")
    if preds.empty:
        no_data(ctx, f"prediction for this station in the last {PANEL_HOURS} h", "inference")
    else:
        chart = time_lines(
            preds.assign(series=preds["target"].map({"bikes": "P(no bikes)", "docks": "P(no docks)"})),
            x="target_time",
            y="probability",
            color="series",
            tz=ctx.tz,
            y_title="probability",
            y_domain=(0, 1),
            height=180,
        )
        st.altair_chart(chart, width="stretch")
    render_forecast(ctx, str(row["station_id"]), history, end)


def render_forecast(ctx: PageContext, station_id: str, history: pd.DataFrame, end: pd.Timestamp) -> None:
    """The next 2 h: expected bikes with the 80% band after the observed counts, and the two probabilities."""
    curve = q.station_forecast(ctx.src, ctx.epoch, station_id, end)
    st.markdown("**Next 2 h** · forecast of the multi-horizon model")
    if curve.empty:
        st.caption(
            "No forecast yet: run `bikeshare forecast train`, `bikeshare forecast promote --to production` "
            "and then `bikeshare infer` (the batch writes every horizon to the forecasts table)."
        )
        return
    first = curve.iloc[0]
    start = pd.DataFrame(
        {
            "target_time": [first["feature_time"]],
            **{c: [float(first["current_bikes"])] for c in ("expected_bikes", "bikes_lo", "bikes_hi")},
        }
    )
    band = pd.concat([start, curve[["target_time", "expected_bikes", "bikes_lo", "bikes_hi"]]], ignore_index=True)
    recent = history[history["last_updated"] >= end - timedelta(hours=PANEL_HOURS)]
    st.altair_chart(forecast_band(recent, band, tz=ctx.tz), width="stretch")
    probs = curve.melt(id_vars=["target_time"], value_vars=["p_no_bikes", "p_no_docks"], var_name="series")
    st.altair_chart(
        time_lines(probs, x="target_time", y="value", color="series", tz=ctx.tz, y_title="probability",
                   y_domain=(0, 1), height=160),
        width="stretch",
    )  # fmt: skip
    st.caption(
        f"Forecast of {ctx.fmt(first['feature_time'])} · {first['alias']} {first['model_name']} "
        f"v{first['model_version']} · horizons {', '.join(str(int(h)) for h in curve['horizon_min'])} min"
    )


def render_plan(ctx: PageContext, summary: pd.DataFrame, stops: pd.DataFrame) -> None:
    """Benefit of the latest plan against no action and greedy, and its stops."""
    st.subheader("Rebalancing plan")
    if summary.empty:
        no_data(ctx, "rebalancing plan", "plans")
        return
    plan = summary.iloc[0]
    st.caption(
        f"Plan {plan['plan_id']} for {ctx.fmt(plan['as_of'])} · {int(plan['trucks'])} trucks x "
        f"{int(plan['truck_capacity'])} bikes · {int(plan['horizon_min'])} min · solver {plan['status']} "
        f"({plan['solve_s']:.1f} s) · {int(plan['stations_in_need'])} stations in need"
    )
    benefit = pd.DataFrame(
        {
            "policy": ["no action", "greedy", "optimised plan"],
            "expected stockout station-min": [
                plan["stockout_min_no_action"],
                plan["stockout_min_greedy"],
                plan["stockout_min_plan"],
            ],
            "travel min": [0.0, plan["travel_min_greedy"], plan["travel_min_plan"]],
            "bikes moved": [0, plan["bikes_moved_greedy"], plan["bikes_moved_plan"]],
        }
    )
    benefit["plan avoids vs this"] = benefit["expected stockout station-min"] - plan["stockout_min_plan"]
    st.dataframe(benefit, hide_index=True)
    routes = stops[stops["method"] == "optimised"]
    if routes.empty:
        st.info("The optimised plan has no stop (nothing worth a truck trip in this horizon).")
        return
    table = routes.assign(arrival=text_time(routes["arrival"], ctx.tz))[
        ["truck", "stop_seq", "name", "station_id", "action", "quantity", "arrival", "load_after", "avoided_min"]
    ]
    st.dataframe(table, hide_index=True)


def main() -> None:
    ctx = page_context()
    clock = page_start(ctx, "Map")
    try:
        render(ctx, clock)
    finally:
        page_done(ctx)


def render(ctx: PageContext, clock: Clock) -> None:
    batch = q.latest_batch(ctx.src, ctx.epoch)
    feature_time = pd.Timestamp(batch["feature_time"].iloc[0]) if not batch.empty else None
    stations = q.latest_risk(ctx.src, ctx.epoch, feature_time)
    if stations.empty:
        no_data(ctx, "station", "station_information_versions")
        return
    if batch.empty:
        no_data(ctx, "inference batch", "inference", extra="Stations are shown grey until they are scored.")
    else:
        b = batch.iloc[0]
        st.caption(
            f"Colour: max(P(no bikes), P(no docks)) of the latest batch, {ctx.fmt(b['feature_time'])} "
            f"({b['alias']}; {int(b['stations_scored'])} stations scored, {int(b['stations_masked'])} masked, "
            f"{int(b['stations_missing'])} missing). Grey: not scored. Times in {ctx.tz}."
        )
    summary, stops = q.latest_plan(ctx.src, ctx.epoch)
    left, right = st.columns([3, 2])
    with left:
        picked = render_map(ctx, stations, stops)
        st.html(LEGEND_HTML)
    if picked is not None and picked != st.session_state.get("_map_pick"):
        st.session_state["_map_pick"] = picked
        st.session_state["station"] = picked
    ids = stations["station_id"].astype(str).tolist()
    labels = {str(r["station_id"]): station_label(r) for _, r in stations.iterrows()}
    if st.session_state.get("station") not in labels:
        st.session_state["station"] = ids[0]
    with right:
        chosen = st.selectbox("Station (or click one on the map)", ids, format_func=labels.get, key="station")
        status_dts = q.latest_partitions(ctx.src, ctx.epoch, "station_status", 1)
        end = parse_partition_value(status_dts[0]) + timedelta(minutes=1) if status_dts else pd.Timestamp.now("UTC")
        render_panel(ctx, stations[stations["station_id"].astype(str) == chosen].iloc[0], end)
    render_plan(ctx, summary, stops)


LEGEND_HTML = """
<div style="font-size: 0.8rem; color: #666;">
  <div style="height: 10px; border-radius: 4px;
              background: linear-gradient(to right, #1a9641, #fdae61, #d7191c);"></div>
  <div style="display: flex; justify-content: space-between;">
    <span>0 %</span><span>max(P(no bikes), P(no docks))</span><span>100 %</span>
  </div>
</div>
"""


if __name__ == "__main__":
    main()
