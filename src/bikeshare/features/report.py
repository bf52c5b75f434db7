"""EDA report of the features table: Markdown plus PNG plots.

Sections: overview and missing rates, schema check, label rates (overall, by hour, onsets),
distributions, correlations, and a time-leakage check that recomputes sampled slots from the
lake with the online path (data at or before the slot only) and compares them with the stored rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bikeshare.features.schema import (
    FEATURE_COLUMNS,
    FEATURE_VERSION,
    MAX_MISSING_RATE,
    feature_schema,
    missing_rates,
    overall_missing_rate,
)
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings

DISTRIBUTION_COLUMNS: tuple[str, ...] = (
    "bikes",
    "docks",
    "fill_ratio",
    "net_flow_30",
    "bikes_std_60",
    "nb_bikes",
    "hist_flow_h",
    "hist_short_bikes_h",
    "hour_local",
)
# A feature this correlated with a label is suspicious enough to be named in the report.
LEAK_CORRELATION = 0.98
CORRELATION_SAMPLE = 50_000


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def leakage_check(
    frame: pd.DataFrame, *, lake: Lake, settings: Settings, samples: int = 3, seed: int = 0
) -> pd.DataFrame:
    """Recompute sampled slots with ``online_features`` (only data at or before each slot) and
    compare them with the stored rows: one row per slot with the largest absolute difference."""
    from bikeshare.features.build import online_features

    slots = pd.Series(frame["slot"].unique())
    picked = slots.sample(n=min(samples, len(slots)), random_state=seed).sort_values()
    records = []
    for slot in picked:
        stored = frame[frame["slot"] == slot].set_index("station_id").sort_index()
        fresh = online_features(lake=lake, at=slot, settings=settings)
        fresh = fresh.set_index("station_id").sort_index()
        common = stored.index.intersection(fresh.index)
        diff = 0.0
        worst = "-"
        for col in FEATURE_COLUMNS:
            a = stored.loc[common, col].to_numpy(dtype=float, na_value=np.nan)
            b = fresh.loc[common, col].to_numpy(dtype=float, na_value=np.nan)
            both_nan = np.isnan(a) & np.isnan(b)
            delta = np.where(both_nan, 0.0, np.abs(a - b))
            delta = np.where(np.isnan(delta), np.inf, delta)  # one side missing
            if delta.size and float(delta.max()) > diff:
                diff, worst = float(delta.max()), col
        records.append(
            {
                "slot": pd.Timestamp(slot).isoformat(),
                "stored_rows": len(stored),
                "recomputed_rows": len(fresh),
                "max_abs_diff": diff,
                "worst_column": worst,
            }
        )
    return pd.DataFrame.from_records(records)


def write_report(frame: pd.DataFrame, *, out: Path, lake: Lake | None = None, settings: Settings | None = None) -> Path:
    """Write ``report.md`` and its PNGs into ``out``; the leakage check needs ``lake`` and ``settings``."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Feature report (feature version {FEATURE_VERSION})",
        "",
        "## Overview",
        f"- rows: {len(frame):,}; stations: {frame['station_id'].nunique():,}",
        f"- slots: {frame['slot'].min()} .. {frame['slot'].max()} ({frame['slot'].nunique():,} distinct)",
        f"- model inputs: {len(FEATURE_COLUMNS)}",
        f"- missing cells over the required inputs (all but weather): {overall_missing_rate(frame):.4%} "
        f"(limit {MAX_MISSING_RATE:.0%})",
        "",
    ]
    try:
        feature_schema().validate(frame, lazy=True)
        lines += ["Pandera feature schema: **valid**.", ""]
    except Exception as exc:  # pandera's SchemaErrors: report, do not stop the EDA
        lines += ["Pandera feature schema: **invalid**", "", "```", str(exc)[:3000], "```", ""]

    rates = missing_rates(frame)
    lines += ["## Missing values per input (highest first)", "", "| column | missing |", "|---|---|"]
    lines += [f"| {name} | {rate:.3%} |" for name, rate in rates.head(15).items()]
    lines.append("")

    # Label rates.
    lines += ["## Label rates", "", "| label | known | rate | onset rate (not short now) | recovery rate |"]
    lines.append("|---|---|---|---|---|")
    thr = settings.shortage_threshold if settings else 2
    for target in ("bikes", "docks"):
        y = frame[f"y_{target}"]
        known = y.notna()
        yk = y[known].astype(bool)
        short_now = frame.loc[known, target] <= thr
        lines.append(
            f"| y_{target} | {known.mean():.2%} | {yk.mean():.3%} | {yk[~short_now].mean():.3%} | "
            f"{yk[short_now].mean():.3%} |"
        )
    hourly = frame.assign(hour=np.floor(frame["hour_local"].astype(float))).groupby("hour")[["y_bikes", "y_docks"]]
    by_hour = hourly.agg(lambda s: s.dropna().astype(float).mean())
    fig, ax = plt.subplots(figsize=(7, 3.5))
    by_hour.plot(ax=ax, marker="o")
    ax.set_xlabel("local hour")
    ax.set_ylabel("share short at t + horizon")
    ax.set_title("label rate by hour of day")
    fig.tight_layout()
    fig.savefig(out / "label_rate_by_hour.png", dpi=100)
    plt.close(fig)
    lines += ["", "![label rate by hour](label_rate_by_hour.png)", ""]

    # Distributions.
    cols = [c for c in DISTRIBUTION_COLUMNS if c in frame.columns]
    fig, axes = plt.subplots(3, 3, figsize=(10, 8))
    for ax, col in zip(axes.ravel(), cols, strict=False):
        values = frame[col].to_numpy(dtype=float, na_value=np.nan)
        ax.hist(values[~np.isnan(values)], bins=40)
        ax.set_title(col, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "distributions.png", dpi=100)
    plt.close(fig)
    lines += ["## Distributions", "", "![distributions](distributions.png)", ""]
    describe = frame[list(FEATURE_COLUMNS)].astype("float64").describe().T[["mean", "std", "min", "50%", "max"]]
    lines += ["| input | mean | std | min | median | max |", "|---|---|---|---|---|---|"]
    for name, row in describe.iterrows():
        lines.append(
            f"| {name} | {row['mean']:.3g} | {row['std']:.3g} | {row['min']:.3g} | {row['50%']:.3g} "
            f"| {row['max']:.3g} |"
        )
    lines.append("")

    # Correlations (one pairwise matrix over a sample, labels included).
    sample = frame.sample(n=min(len(frame), CORRELATION_SAMPLE), random_state=0)
    labels = ["y_bikes", "y_docks"]
    numeric = sample[[*FEATURE_COLUMNS, *labels]].astype("float64")
    full = numeric.corr()
    corr = full.loc[list(FEATURE_COLUMNS), list(FEATURE_COLUMNS)]
    fig, ax = plt.subplots(figsize=(12, 10))
    im = ax.imshow(corr.to_numpy(), cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(corr)), corr.columns, rotation=90, fontsize=6)
    ax.set_yticks(range(len(corr)), corr.columns, fontsize=6)
    fig.colorbar(im, ax=ax, shrink=0.7)
    ax.set_title("Pearson correlation of the inputs")
    fig.tight_layout()
    fig.savefig(out / "correlations.png", dpi=80)
    plt.close(fig)
    lines += ["## Correlations", "", "![correlations](correlations.png)", ""]
    lines += ["Inputs most correlated with each label:", "", "| label | input | correlation |", "|---|---|---|"]
    suspicious = []
    for label in labels:
        with_label = full.loc[list(FEATURE_COLUMNS), label].dropna()
        for name in with_label.abs().sort_values(ascending=False).head(5).index:
            lines.append(f"| {label} | {name} | {with_label[name]:+.3f} |")
        suspicious += [f"{name} ({label})" for name, v in with_label.items() if abs(v) >= LEAK_CORRELATION]
    lines.append("")

    # Time-leakage check.
    lines += ["## Time-leakage check", ""]
    lines.append(
        f"No input may be almost a copy of a label: inputs with |correlation| >= {LEAK_CORRELATION} with a label: "
        + (", ".join(suspicious) if suspicious else "none")
        + "."
    )
    if lake is not None and settings is not None:
        check = leakage_check(frame, lake=lake, settings=settings)
        lines += [
            "",
            "Sampled slots recomputed from the lake with the online path, which reads only snapshots at or before "
            "the slot; a stored row that used later data would differ:",
            "",
            "| slot | stored rows | recomputed rows | max abs diff | column |",
            "|---|---|---|---|---|",
        ]
        for r in check.to_dict("records"):
            lines.append(
                f"| {r['slot']} | {r['stored_rows']} | {r['recomputed_rows']} | {r['max_abs_diff']:.3g} | "
                f"{r['worst_column']} |"
            )
    lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
