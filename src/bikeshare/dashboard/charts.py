"""Chart and table builders shared by the pages (Altair, pydeck); pure functions of frames."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

# Station colour ramp by risk: green (0) -> amber (0.5) -> red (1); grey when not scored.
RISK_STOPS = np.array([[26, 150, 65], [253, 174, 97], [215, 25, 28]], dtype=float)
NOT_SCORED = [150, 150, 150, 140]
TIME_TICKS = "%b %d %H:%M"  # one tick format for every chart over days; the station panel uses %H:%M
TRUCK_COLOURS = [[31, 119, 180], [148, 103, 189], [23, 190, 207], [140, 86, 75], [227, 119, 194], [127, 127, 127]]


def wall_time(values: pd.Series, tz: str) -> pd.Series:
    """UTC instants as naive wall-clock times of ``tz``: Vega-Lite then shows them unchanged."""
    return pd.to_datetime(values, utc=True).dt.tz_convert(tz).dt.tz_localize(None)


def text_time(values: pd.Series, tz: str) -> pd.Series:
    """UTC instants as ``YYYY-MM-DD HH:MM <zone>`` strings of ``tz`` (tables)."""
    local = pd.to_datetime(values, utc=True).dt.tz_convert(tz)
    return local.dt.strftime("%Y-%m-%d %H:%M %Z").where(local.notna(), None)


def risk_colour(risk: pd.Series) -> list[list[int]]:
    """RGBA per station for the map: the ramp by risk, grey where the station was not scored."""
    values = pd.to_numeric(risk, errors="coerce").to_numpy(dtype=float)
    out: list[list[int]] = []
    for value in values:
        if np.isnan(value):
            out.append(list(NOT_SCORED))
            continue
        pos = min(max(value, 0.0), 1.0) * 2
        lo = int(min(pos, 1))
        rgb = RISK_STOPS[lo] + (RISK_STOPS[lo + 1] - RISK_STOPS[lo]) * (pos - lo)
        out.append([*(round(c) for c in rgb), 220])
    return out


def time_lines(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    tz: str,
    color: str | None = None,
    y_title: str,
    rules: Mapping[str, float] | None = None,
    y_domain: Sequence[float] | None = None,
    height: int = 220,
    step: bool = False,
    x_domain: Sequence[pd.Timestamp] | None = None,
    y_format: str | None = None,
    color_title: str | None = None,
    events: pd.DataFrame | None = None,
    x_format: str = TIME_TICKS,
) -> alt.LayerChart | alt.Chart:
    """Lines of ``y`` over time ``x`` (in ``tz``, labelled), optionally with horizontal reference rules.

    ``x_domain`` (UTC instants) fixes the time range, so that charts side by side share it;
    ``y_format`` is the d3 format of the y ticks and tooltip (e.g. ``.0%``, ``d``); ``events``
    (``time``, ``label``) are drawn as vertical marks (promotions, retrains).
    """
    data = frame.copy()
    data[x] = wall_time(data[x], tz)
    scale = alt.Scale(domain=list(y_domain)) if y_domain is not None else alt.Undefined
    x_scale = alt.Undefined
    if x_domain is not None:
        bounds = wall_time(pd.Series(list(x_domain)), tz)
        x_scale = alt.Scale(domain=[b.isoformat() for b in bounds])
    axis = alt.Axis(format=y_format) if y_format else alt.Undefined
    encoding: dict[str, Any] = {
        "x": alt.X(f"{x}:T", title=f"time ({tz})", scale=x_scale, axis=alt.Axis(format=x_format)),
        "y": alt.Y(f"{y}:Q", title=y_title, scale=scale, axis=axis),
        "tooltip": [
            alt.Tooltip(f"{x}:T", title=f"time ({tz})", format="%Y-%m-%d %H:%M"),
            alt.Tooltip(f"{y}:Q", title=y_title, format=y_format or alt.Undefined),
        ],
    }
    if color is not None:
        encoding["color"] = alt.Color(f"{color}:N", title=color_title if color_title is not None else color)
        encoding["tooltip"].append(f"{color}:N")
    line = alt.Chart(data).mark_line(point=len(data) < 60, interpolate="step-after" if step else "linear")
    chart: alt.LayerChart | alt.Chart = line.encode(**encoding).properties(height=height)
    if rules:
        ref = pd.DataFrame({"rule": list(rules), "value": list(rules.values())})
        lines = (
            alt.Chart(ref).mark_rule(strokeDash=[6, 4], color="#888").encode(y="value:Q", tooltip=["rule:N", "value:Q"])
        )
        labels = alt.Chart(ref).mark_text(align="left", dx=4, dy=-6, color="#555").encode(y="value:Q", text="rule:N")
        chart = alt.layer(chart, lines, labels)
    if events is not None and not events.empty:
        marks = events.assign(time=wall_time(events["time"], tz))
        rule = alt.Chart(marks).mark_rule(color="#6a3d9a", strokeWidth=1.5)
        rule = rule.encode(
            x="time:T", tooltip=[alt.Tooltip("time:T", format="%Y-%m-%d %H:%M", title=f"time ({tz})"), "label:N"]
        )
        text = alt.Chart(marks).mark_text(align="left", dx=3, dy=-4, color="#6a3d9a", fontSize=10, angle=0)
        text = text.encode(x="time:T", y=alt.value(8), text="label:N")
        chart = alt.layer(chart, rule, text)
    return chart


def reliability(frame: pd.DataFrame) -> alt.LayerChart:
    """Calibration: observed rate against mean predicted probability per bin, with the diagonal."""
    diagonal = alt.Chart(pd.DataFrame({"p": [0.0, 1.0]})).mark_line(strokeDash=[4, 4], color="#888")
    diagonal = diagonal.encode(x="p:Q", y="p:Q")
    points = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("predicted:Q", title="mean predicted probability", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("observed:Q", title="observed share short", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("target:N"),
            tooltip=["target:N", "bin_start:Q", "predicted:Q", "observed:Q", "rows:Q"],
        )
    )
    return alt.layer(diagonal, points).properties(height=260)


def route_paths(stops: pd.DataFrame, *, method: str = "optimised") -> list[dict[str, Any]]:
    """One path per truck of a plan (depot, then its stops in order) for a pydeck PathLayer."""
    rows = stops[stops["method"] == method].sort_values(["truck", "stop_seq"])
    paths = []
    for truck, group in rows.groupby("truck", sort=True):
        first = group.iloc[0]
        path = [[float(first["depot_lon"]), float(first["depot_lat"])]]
        path += [[float(lon), float(lat)] for lon, lat in zip(group["lon"], group["lat"], strict=True)]
        paths.append(
            {
                "truck": int(truck),
                "path": path,
                "stops": len(group),
                "colour": TRUCK_COLOURS[int(truck) % len(TRUCK_COLOURS)],
            }
        )
    return paths


def forecast_band(
    observed: pd.DataFrame,
    curve: pd.DataFrame,
    *,
    tz: str,
    height: int = 240,
    x_domain: Sequence[pd.Timestamp] | None = None,
) -> alt.LayerChart:
    """Observed bikes (``last_updated``, ``bikes``) then the forecast: expected bikes with the 80% band.

    ``curve`` has ``target_time, expected_bikes, bikes_lo, bikes_hi`` and, first, the feature slot's
    counts at ``feature_time`` so that the forecast line starts where the observations end.
    """
    seen = observed[["last_updated", "bikes"]].rename(columns={"last_updated": "time", "bikes": "value"})
    seen = seen.assign(time=wall_time(seen["time"], tz), series="observed bikes")
    band = curve.assign(time=wall_time(curve["target_time"], tz))
    x_scale = alt.Undefined
    if x_domain is not None:
        x_scale = alt.Scale(domain=[b.isoformat() for b in wall_time(pd.Series(list(x_domain)), tz)])
    x = alt.X("time:T", title=f"time ({tz})", scale=x_scale, axis=alt.Axis(format="%H:%M"))
    area = alt.Chart(band).mark_area(opacity=0.25, color="#f58518").encode(
        x=x, y=alt.Y("bikes_lo:Q", title="bikes", axis=alt.Axis(format="d")), y2="bikes_hi:Q",
        tooltip=[alt.Tooltip("time:T", format="%H:%M"), "bikes_lo:Q", "expected_bikes:Q", "bikes_hi:Q"],
    )  # fmt: skip
    expected = band.assign(series="expected bikes (80% band)", value=band["expected_bikes"])
    lines = pd.concat([seen, expected[["time", "value", "series"]]], ignore_index=True)
    line = (
        alt.Chart(lines)
        .mark_line(point=True)
        .encode(x=x, y="value:Q", color=alt.Color("series:N", title=None), tooltip=["series:N", "value:Q"])
    )
    return alt.layer(area, line).properties(height=height)


# ---- map view, plain basemap and scale ----------------------------------------------------------

TILE_PX = 512  # deck.gl's web-mercator world is 512 px wide at zoom 0
EQUATOR_M_PER_PX_Z0 = 40_075_016.686 / TILE_PX
PLAIN_STYLE: dict[str, Any] = {
    "version": 8,
    "name": "plain",
    "sources": {},
    "layers": [{"id": "background", "type": "background", "paint": {"background-color": "#f2f1ed"}}],
}
DEPOT_COLOUR = [20, 20, 20, 230]
HIGHLIGHT_COLOUR = [0, 0, 0, 255]


def plain_style_url() -> str:
    """A MapLibre style with only a background, as a data URL: drawn without any network."""
    import json
    from urllib.parse import quote

    return "data:application/json;charset=utf-8," + quote(json.dumps(PLAIN_STYLE, separators=(",", ":")))


def _mercator_y(lat: np.ndarray) -> np.ndarray:
    phi = np.radians(np.clip(lat, -85.05, 85.05))
    return np.log(np.tan(np.pi / 4 + phi / 2))


def fit_view(
    lat: pd.Series, lon: pd.Series, *, width_px: int, height_px: int, padding: float = 0.08, max_zoom: float = 16.0
) -> tuple[float, float, float]:
    """(latitude, longitude, zoom) of a web-mercator view of ``width_px`` x ``height_px`` that shows
    every point, with ``padding`` (a share of each side) left free."""
    la = pd.to_numeric(lat, errors="coerce").dropna().to_numpy(dtype=float)
    lo = pd.to_numeric(lon, errors="coerce").dropna().to_numpy(dtype=float)
    if la.size == 0:
        return 0.0, 0.0, 1.0
    y = _mercator_y(la)
    y_mid = (y.min() + y.max()) / 2
    lat_mid = float(np.degrees(2 * np.arctan(np.exp(y_mid)) - np.pi / 2))
    lon_mid = float((lo.min() + lo.max()) / 2)
    usable_w, usable_h = width_px * (1 - 2 * padding), height_px * (1 - 2 * padding)
    span_x = max(float(np.radians(lo.max() - lo.min())), 1e-9)  # radians of longitude
    span_y = max(float(y.max() - y.min()), 1e-9)  # mercator units (radians at the equator)
    world = 2 * np.pi  # the world's width in these units
    zoom_x = np.log2(usable_w * world / (TILE_PX * span_x))
    zoom_y = np.log2(usable_h * world / (TILE_PX * span_y))
    return lat_mid, lon_mid, float(min(zoom_x, zoom_y, max_zoom))


def view_bounds(lat: float, lon: float, zoom: float, *, width_px: int, height_px: int) -> tuple[float, ...]:
    """(south, west, north, east) shown by a web-mercator view (the inverse of :func:`fit_view`)."""
    scale = TILE_PX * 2**zoom / (2 * np.pi)  # px per mercator unit
    y0 = float(_mercator_y(np.array([lat]))[0])
    half_y, half_x = height_px / 2 / scale, width_px / 2 / scale
    south = float(np.degrees(2 * np.arctan(np.exp(y0 - half_y)) - np.pi / 2))
    north = float(np.degrees(2 * np.arctan(np.exp(y0 + half_y)) - np.pi / 2))
    return south, lon - float(np.degrees(half_x)), north, lon + float(np.degrees(half_x))


def scale_bar(lat: float, zoom: float, *, max_px: int = 120) -> tuple[int, str]:
    """(pixels, label) of a round distance at most ``max_px`` long at this latitude and zoom."""
    m_per_px = EQUATOR_M_PER_PX_Z0 * np.cos(np.radians(lat)) / 2**zoom
    best = (max_px, f"{max_px * m_per_px:.0f} m")
    for metres in (50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000):
        px = metres / m_per_px
        if px <= max_px:
            best = (round(px), f"{metres / 1000:g} km" if metres >= 1000 else f"{metres} m")
    return best


def rgb_css(colour: Sequence[int]) -> str:
    return f"rgb({colour[0]},{colour[1]},{colour[2]})"


def map_legend_html(paths: list[dict[str, Any]], *, depot: bool, scale: tuple[int, str] | None) -> str:
    """The map's legend: the risk ramp, grey 'not scored', one line per truck route, the depot, a scale."""
    items = [
        '<span style="display:inline-flex;align-items:center;margin-right:0.8rem;">'
        f'<span style="width:10px;height:10px;border-radius:50%;background:{rgb_css(NOT_SCORED)};'
        'display:inline-block;margin-right:4px;"></span>not scored (masked, no snapshot)</span>'
    ]
    for p in paths:
        items.append(
            '<span style="display:inline-flex;align-items:center;margin-right:0.8rem;">'
            f'<span style="width:18px;height:4px;background:{rgb_css(p["colour"])};display:inline-block;'
            f'margin-right:4px;"></span>truck {p["truck"]} ({p["stops"]} stops)</span>'
        )
    if depot:
        items.append(
            '<span style="display:inline-flex;align-items:center;margin-right:0.8rem;">'
            f'<span style="width:10px;height:10px;background:{rgb_css(DEPOT_COLOUR)};display:inline-block;'
            'margin-right:4px;"></span>depot</span>'
        )
    if scale is not None:
        px, label = scale
        items.append(
            '<span style="display:inline-flex;align-items:center;">'
            f'<span style="width:{px}px;height:6px;border:1px solid #555;border-top:none;display:inline-block;'
            f'margin-right:4px;"></span>{label} (first view)</span>'
        )
    return f"""
<div class="bs-legend" style="font-size: 0.8rem; color: #444;">
  <div style="height: 10px; border-radius: 4px;
              background: linear-gradient(to right, #1a9641, #fdae61, #d7191c);"></div>
  <div style="display: flex; justify-content: space-between;">
    <span>0 %</span><span>max(P(no bikes), P(no docks))</span><span>100 %</span>
  </div>
  <div style="margin-top: 0.3rem;">{"".join(items)}</div>
</div>
"""
