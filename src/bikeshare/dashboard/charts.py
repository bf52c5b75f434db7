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
) -> alt.LayerChart | alt.Chart:
    """Lines of ``y`` over time ``x`` (in ``tz``, labelled), optionally with horizontal reference rules."""
    data = frame.copy()
    data[x] = wall_time(data[x], tz)
    scale = alt.Scale(domain=list(y_domain)) if y_domain is not None else alt.Undefined
    encoding: dict[str, Any] = {
        "x": alt.X(f"{x}:T", title=f"time ({tz})"),
        "y": alt.Y(f"{y}:Q", title=y_title, scale=scale),
        "tooltip": [alt.Tooltip(f"{x}:T", title=f"time ({tz})", format="%Y-%m-%d %H:%M"), f"{y}:Q"],
    }
    if color is not None:
        encoding["color"] = alt.Color(f"{color}:N", title=color)
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


def forecast_band(observed: pd.DataFrame, curve: pd.DataFrame, *, tz: str, height: int = 240) -> alt.LayerChart:
    """Observed bikes (``last_updated``, ``bikes``) then the forecast: expected bikes with the 80% band.

    ``curve`` has ``target_time, expected_bikes, bikes_lo, bikes_hi`` and, first, the feature slot's
    counts at ``feature_time`` so that the forecast line starts where the observations end.
    """
    seen = observed[["last_updated", "bikes"]].rename(columns={"last_updated": "time", "bikes": "value"})
    seen = seen.assign(time=wall_time(seen["time"], tz), series="observed bikes")
    band = curve.assign(time=wall_time(curve["target_time"], tz))
    x = alt.X("time:T", title=f"time ({tz})")
    area = alt.Chart(band).mark_area(opacity=0.25, color="#f58518").encode(
        x=x, y=alt.Y("bikes_lo:Q", title="bikes"), y2="bikes_hi:Q",
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
