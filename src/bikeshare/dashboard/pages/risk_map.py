"""Map: every station coloured by max(P(no bikes), P(no docks)) of the latest batch; a station's panel;
the latest rebalancing plan's routes and benefit."""

from __future__ import annotations

import html
from datetime import timedelta

import pandas as pd
import pydeck as pdk
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.charts import (
    DEPOT_COLOUR,
    HIGHLIGHT_COLOUR,
    fit_view,
    forecast_band,
    map_legend_html,
    plain_style_url,
    risk_colour,
    route_paths,
    scale_bar,
    text_time,
    time_lines,
    view_bounds,
)
from bikeshare.dashboard.context import PageContext, no_data, page_context, page_done, page_start
from bikeshare.dashboard.status import Clock, humanise
from bikeshare.lake.store import parse_partition_value

PANEL_HOURS = 2
MAP_HEIGHT_PX = 560
MAP_WIDTH_PX = 620  # the map column at 1440 px wide with the sidebar open (fit-to-bounds assumes it)
PICK_ZOOM = 14.0
SERIES_LABELS = {
    "bikes": "bikes",
    "docks": "docks",
    "p_no_bikes": "P(no bikes)",
    "p_no_docks": "P(no docks)",
    "P(no bikes)": "P(no bikes)",
}


def station_label(row: pd.Series) -> str:
    name = row["name"] if isinstance(row["name"], str) else "(not in station_information)"
    return f"{name} · {row['station_id']}"


def map_pick() -> str | None:
    """The station picked on the map in the run that just happened (from the chart's widget state)."""
    event = st.session_state.get("map")
    if event is None:
        return None
    try:
        picked = event["selection"]["objects"].get("stations", [])
    except (KeyError, TypeError, AttributeError):
        return None
    return str(picked[0]["station_id"]) if picked else None


def pan_to_list_pick() -> None:
    """on_change of the station list: the map view centres on the chosen station from now on (a pick
    on the map keeps the view: the operator is already looking there)."""
    st.session_state["_view_station"] = st.session_state.get("station")


def map_view(placed: pd.DataFrame) -> tuple[pdk.ViewState, tuple[float, float, float]]:
    """The view: every station fitted until a station is picked from the list, then centred on it.

    The view stays the same across reruns (auto-refresh, a pick on the map), so the map does not jump.
    """
    fitted = fit_view(placed["lat"], placed["lon"], width_px=MAP_WIDTH_PX, height_px=MAP_HEIGHT_PX)
    lat, lon, zoom = fitted
    centre = st.session_state.get("_view_station")
    if centre is not None:
        row = placed[placed["station_id"].astype(str) == centre]
        if not row.empty:
            lat, lon, zoom = float(row["lat"].iloc[0]), float(row["lon"].iloc[0]), max(fitted[2], PICK_ZOOM)
    return pdk.ViewState(latitude=lat, longitude=lon, zoom=zoom, pitch=0), (lat, lon, zoom)


def render_map(ctx: PageContext, stations: pd.DataFrame, stops: pd.DataFrame, chosen: str | None) -> None:
    """The deck: stations, the chosen one ringed, the plan's routes and its depot; then the legend."""
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
    paths = route_paths(stops) if not stops.empty else []
    if paths:
        layers.append(
            pdk.Layer(
                "PathLayer",
                id="routes",
                data=paths,
                get_path="path",
                get_color="colour",
                width_min_pixels=3,
                pickable=False,
            )
        )
        depot = stops.iloc[:1][["depot_lat", "depot_lon"]].rename(columns={"depot_lat": "lat", "depot_lon": "lon"})
        layers.append(
            pdk.Layer(
                "ScatterplotLayer",
                id="depot",
                data=depot,
                get_position=["lon", "lat"],
                get_fill_color=DEPOT_COLOUR,
                get_line_color=[255, 255, 255, 255],
                stroked=True,
                line_width_min_pixels=2,
                get_radius=80,
                radius_min_pixels=7,
                pickable=False,
            )
        )
    ring = placed[placed["station_id"].astype(str) == chosen][["lat", "lon"]]
    if not ring.empty:
        layers.append(
            pdk.Layer(
                "ScatterplotLayer",
                id="highlight",
                data=ring,
                get_position=["lon", "lat"],
                filled=False,
                stroked=True,
                get_line_color=HIGHLIGHT_COLOUR,
                line_width_min_pixels=3,
                get_radius=90,
                radius_min_pixels=10,
                pickable=False,
            )
        )
    view, (lat, lon, zoom) = map_view(placed)
    style = ctx.settings.dashboard_map_style or plain_style_url()
    deck = pdk.Deck(
        layers=layers,
        initial_view_state=view,
        tooltip={"text": "{name}\nrisk {risk_text}\nP(no bikes) {p_bikes_text} · P(no docks) {p_docks_text}"},
        map_style=style,
    )
    st.pydeck_chart(
        deck, on_select="rerun", selection_mode="single-object", key="map", height=MAP_HEIGHT_PX, width="stretch"
    )
    legend = map_legend_html(paths, depot=bool(paths), scale=scale_bar(lat, zoom))
    st.html(legend + view_marker(lat, lon, zoom, ring, chosen))


def view_marker(lat: float, lon: float, zoom: float, ring: pd.DataFrame, chosen: str | None) -> str:
    """An invisible element saying what the deck's first view is (its bounds) and which station is
    ringed: the map is a canvas, so this is what a browser test reads."""
    south, west, north, east = view_bounds(lat, lon, zoom, width_px=MAP_WIDTH_PX, height_px=MAP_HEIGHT_PX)
    ringed = html.escape(chosen or "") if not ring.empty else ""
    return (
        f'<div class="bs-map-view" hidden data-south="{south:.6f}" data-west="{west:.6f}" data-north="{north:.6f}" '
        f'data-east="{east:.6f}" data-lat="{lat:.6f}" data-lon="{lon:.6f}" data-zoom="{zoom:.3f}" '
        f'data-highlight="{ringed}"></div>'
    )


def no_prediction_reason(ctx: PageContext, row: pd.Series, history: pd.DataFrame, end: pd.Timestamp) -> None:
    """Why a station has no probability in the latest batch: masked (since when, why), the batch failed,
    no fresh snapshot; "run bikeshare infer" only when no batch ever ran."""
    record = q.latest_batch_record(ctx.src, ctx.epoch)
    if record.empty:
        no_data(ctx, "prediction for this station", "inference_batches")
        return
    last = record.iloc[0]
    if last["status"] == "failed":
        st.error(
            f"The latest batch ({ctx.fmt(last['feature_time'])}, {last['alias']}) failed after "
            f"{int(last['attempts']) if pd.notna(last['attempts']) else '?'} attempt(s): {last['error']}"
        )
    onset = q.mask_onset(ctx.src, ctx.epoch, str(row["station_id"]), end)
    if not onset.empty:
        since = onset.iloc[0]
        prefix = "at least since" if bool(since["runs_back_to_window"]) else "since"
        st.warning(
            f"Not scored: the station is masked as {since['mask_reasons'] or 'invalid'} {prefix} "
            f"{ctx.fmt(since['masked_since'])} (the data contract keeps its rows out of scoring)."
        )
    elif history.empty:
        st.warning(
            f"Not scored: no snapshot of this station in the {PANEL_HOURS} h before {ctx.fmt(end)} "
            "(the feed does not report it)."
        )
    elif last["status"] != "failed":
        st.info(f"Not in the latest batch ({ctx.fmt(last['feature_time'])}): its snapshot was too old to score.")


def render_panel(ctx: PageContext, row: pd.Series, end: pd.Timestamp) -> None:
    """Name, region, capacity, current and disabled counts, mask reason, the last 2 h and the next 2 h."""
    st.subheader(row["name"] if isinstance(row["name"], str) else row["station_id"])
    region = f"region {row['region_id']}" if isinstance(row["region_id"], str) else "no region"
    capacity = "-" if pd.isna(row["capacity"]) else int(row["capacity"])
    st.caption(f"Station `{row['station_id']}` · {region} · capacity {capacity}")
    start = end - timedelta(hours=PANEL_HOURS)
    window = (start, end + timedelta(hours=PANEL_HOURS))  # every chart of the panel shares it
    sid = str(row["station_id"])
    history = q.station_history(ctx.src, ctx.epoch, sid, start, end)
    preds = q.station_predictions(ctx.src, ctx.epoch, sid, start, end)
    now_cols = st.columns(4)
    if history.empty:
        for col, label in zip(now_cols, ("Bikes now", "Docks now", "Disabled bikes", "Disabled docks"), strict=True):
            col.metric(label, "-")
    else:
        last = history.iloc[-1]
        now_cols[0].metric("Bikes now", int(last["bikes"]))
        now_cols[1].metric("Docks now", int(last["docks"]))
        now_cols[2].metric("Disabled bikes", count_text(last["bikes_disabled"]))
        now_cols[3].metric("Disabled docks", count_text(last["docks_disabled"]))
        note = f"Latest snapshot {ctx.fmt(last['last_updated'])}"
        if last["masked"]:
            note += f" · masked: {last['mask_reasons'] or 'invalid'}"
        if capacity != "-":
            unaccounted = capacity - int(last["bikes"]) - int(last["docks"])
            note += f" · bikes + docks = {capacity - unaccounted} of capacity {capacity}"
        st.caption(note)
    prob_cols = st.columns(2)
    horizon = int(row["horizon_min"]) if pd.notna(row.get("horizon_min")) else ctx.settings.horizon_min
    for col, target, label in ((prob_cols[0], "bikes", "P(no bikes)"), (prob_cols[1], "docks", "P(no docks)")):
        value = row.get(f"p_{target}")
        col.metric(f"{label} in {horizon} min", "-" if pd.isna(value) else f"{value:.0%}")
    if pd.notna(row.get("feature_time")):
        st.caption(
            f"Latest batch {ctx.fmt(row['feature_time'])} · {row['alias']} models: bikes v{row['version_bikes']} "
            f"(threshold {row['threshold_bikes']:.2f}), docks v{row['version_docks']} "
            f"(threshold {row['threshold_docks']:.2f})"
        )
    else:
        no_prediction_reason(ctx, row, history, end)

    st.markdown(f"**Last {PANEL_HOURS} h and next {PANEL_HOURS} h** · one time range for the four charts")
    st.markdown("Observed counts")
    if history.empty:
        st.caption(f"No snapshot of this station between {ctx.fmt(start)} and {ctx.fmt(end)}.")
    else:
        counts = history.melt(id_vars=["last_updated"], value_vars=["bikes", "docks"], var_name="series")
        st.altair_chart(
            time_lines(counts, x="last_updated", y="value", color="series", tz=ctx.tz, y_title="count", step=True,
                       x_domain=window, y_format="d", color_title=None, height=180, x_format="%H:%M"),
            width="stretch",
        )  # fmt: skip
    st.markdown("Predictions made over the last hours, plotted at the time they are about (t + horizon)")
    if preds.empty:
        st.caption(f"No served prediction for this station made between {ctx.fmt(start)} and {ctx.fmt(end)}.")
    else:
        chart = time_lines(
            preds.assign(series=preds["target"].map({"bikes": "P(no bikes)", "docks": "P(no docks)"})),
            x="target_time", y="probability", color="series", tz=ctx.tz, y_title="probability", y_domain=(0, 1),
            height=160, x_domain=window, y_format=".0%", color_title=None, x_format="%H:%M",
        )  # fmt: skip
        st.altair_chart(chart, width="stretch")
    render_forecast(ctx, sid, history, end, window)


def count_text(value: object) -> str:
    return "-" if value is None or pd.isna(value) else str(int(value))  # type: ignore[arg-type]


def render_forecast(
    ctx: PageContext, station_id: str, history: pd.DataFrame, end: pd.Timestamp, window: tuple[pd.Timestamp, ...]
) -> None:
    """The next 2 h: expected bikes with the 80% band after the observed counts, and the two probabilities."""
    curve = q.station_forecast(ctx.src, ctx.epoch, station_id, end)
    st.markdown("Forecast of the multi-horizon model")
    if curve.empty:
        forecast_reason(ctx)
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
    st.altair_chart(forecast_band(recent, band, tz=ctx.tz, x_domain=window), width="stretch")
    probs = curve.melt(id_vars=["target_time"], value_vars=["p_no_bikes", "p_no_docks"], var_name="series")
    probs["series"] = probs["series"].map(SERIES_LABELS)
    st.altair_chart(
        time_lines(probs, x="target_time", y="value", color="series", tz=ctx.tz, y_title="probability",
                   y_domain=(0, 1), height=160, x_domain=window, y_format=".0%", color_title=None,
                   x_format="%H:%M"),
        width="stretch",
    )  # fmt: skip
    st.caption(
        f"Forecast of {ctx.fmt(first['feature_time'])} · {first['alias']} {first['model_name']} "
        f"v{first['model_version']} · horizons {', '.join(str(int(h)) for h in curve['horizon_min'])} min"
    )


def forecast_reason(ctx: PageContext) -> None:
    """Why there is no forecast curve: the latest batch's forecast call failed (its error), or none was
    ever produced (the commands that produce one)."""
    record = q.latest_batch_record(ctx.src, ctx.epoch)
    if not record.empty and record.iloc[0]["forecast_status"] == "failed":
        last = record.iloc[0]
        when = ctx.fmt(last["feature_time"])
        st.warning(f"The forecast call of the batch of {when} failed: {last['forecast_error']}")
        return
    if not q.latest_partitions(ctx.src, ctx.epoch, "forecasts", 1):
        st.caption(
            "No forecast yet: run `bikeshare forecast train`, `bikeshare forecast promote --to production` "
            "and then `bikeshare infer` (the batch writes every horizon to the forecasts table)."
        )
        return
    st.caption("No forecast of this station in the last 2 h of the forecasts table (not scored in those batches).")


PLAN_COLUMNS = {
    "truck": "truck",
    "stop_seq": "stop",
    "name": "station",
    "action": "action",
    "quantity": "bikes",
    "arrival": "arrival",
    "past": "arrival passed",
    "load_after": "truck load after",
    "avoided_min": "stockout avoided (station-min)",
    "station_id": "station id",
}


def render_plan(ctx: PageContext, summary: pd.DataFrame, stops: pd.DataFrame, clock: Clock) -> None:
    """The latest plan: its age against the latest batch, benefit against no action and greedy, its stops."""
    st.subheader("Rebalancing plan")
    if summary.empty:
        no_data(ctx, "rebalancing plan", "plans")
        return
    plan = summary.iloc[0]
    batch = q.latest_batch(ctx.src, ctx.epoch)
    age = ""
    if not batch.empty:
        behind = (pd.Timestamp(batch["feature_time"].iloc[0]) - pd.Timestamp(plan["as_of"])).total_seconds()
        age = (
            f" · {humanise(behind)} older than the latest batch ({ctx.fmt(batch['feature_time'].iloc[0])})"
            if behind > 0
            else " · as new as the latest batch"
        )
    st.caption(
        f"Plan {plan['plan_id']} for {ctx.fmt(plan['as_of'])}{age} · {int(plan['trucks'])} trucks x "
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
    for column in ("expected stockout station-min", "travel min", "plan avoids vs this"):
        benefit[column] = benefit[column].astype(float).round(1)
    st.dataframe(benefit, hide_index=True)
    routes = stops[stops["method"] == "optimised"]
    if routes.empty:
        st.info("The optimised plan has no stop (nothing worth a truck trip in this horizon).")
        return
    past = pd.to_datetime(routes["arrival"], utc=True) < clock.now
    table = routes.assign(
        arrival=text_time(routes["arrival"], ctx.tz),
        past=past.map({True: "passed", False: ""}),
        action=routes["action"].map({"load": "take bikes", "unload": "drop bikes"}).fillna(routes["action"]),
        avoided_min=routes["avoided_min"].astype(float).round(1),
    )[list(PLAN_COLUMNS)].rename(columns=PLAN_COLUMNS)
    st.dataframe(table, hide_index=True, key="plan_stops")
    since = "the replay time" if clock.replay else "now"
    st.caption(
        f"Times in {ctx.tz}. {int(past.sum())} of {len(routes)} stops have an arrival before {since} "
        f"({ctx.fmt(clock.now)}): marked 'passed'."
    )


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
        record = q.latest_batch_record(ctx.src, ctx.epoch)
        if not record.empty and record.iloc[0]["status"] == "failed":
            last = record.iloc[0]
            st.error(f"No scored batch: the latest ({ctx.fmt(last['feature_time'])}) failed: {last['error']}")
        else:
            no_data(ctx, "inference batch", "inference", extra="Stations are shown grey until they are scored.")
    else:
        b = batch.iloc[0]
        st.caption(
            f"Colour: max(P(no bikes), P(no docks)) of the latest batch, {ctx.fmt(b['feature_time'])} "
            f"({b['alias']}; {int(b['stations_scored'])} stations scored, {count_text(b['stations_masked'])} masked, "
            f"{count_text(b['stations_missing'])} missing). Grey: not scored. Times in {ctx.tz}."
        )
    summary, stops = q.latest_plan(ctx.src, ctx.epoch)
    picked = map_pick()
    if picked is not None and picked != st.session_state.get("_map_pick"):
        st.session_state["_map_pick"] = picked
        st.session_state["station"] = picked
    ids = stations["station_id"].astype(str).tolist()
    labels = {str(r["station_id"]): station_label(r) for _, r in stations.iterrows()}
    if st.session_state.get("station") not in labels:
        st.session_state["station"] = ids[0]
    left, right = st.columns([3, 2])
    with left:
        render_map(ctx, stations, stops, st.session_state["station"])
    with right:
        chosen = st.selectbox(
            "Station (or click one on the map)", ids, format_func=labels.get, key="station", on_change=pan_to_list_pick
        )
        status_dts = q.latest_partitions(ctx.src, ctx.epoch, "station_status", 1)
        end = parse_partition_value(status_dts[0]) + timedelta(minutes=1) if status_dts else clock.now
        render_panel(ctx, stations[stations["station_id"].astype(str) == chosen].iloc[0], end)
    render_plan(ctx, summary, stops, clock)


if __name__ == "__main__":
    main()
