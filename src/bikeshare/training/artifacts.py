"""Run artifacts: PR curve, calibration curve, confusion matrix, feature importance, model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bikeshare.training.metrics import pr_auc, reliability_curve
from bikeshare.training.report import EvaluationReport

CAPACITY_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("small (<15 docks)", 0, 14),
    ("medium (15-24)", 15, 24),
    ("large (25+)", 25, 10_000),
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr_curves(path: Path, *, y: np.ndarray, proba: np.ndarray, current: np.ndarray, threshold: int) -> Path:
    """Precision-recall curves of model and persistence, on all rows and on onsets."""
    from sklearn.metrics import precision_recall_curve

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    onset = current > threshold
    for ax, mask, title in ((axes[0], np.ones_like(onset), "all rows"), (axes[1], onset, "onsets (not short now)")):
        for score, label in ((proba, "model"), (-current, "persistence")):
            if y[mask].any():
                p, r, _ = precision_recall_curve(y[mask], score[mask])
                ax.plot(r, p, label=f"{label} (PR-AUC {pr_auc(y[mask], score[mask]):.3f})")
        ax.set_title(title)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_calibration(path: Path, *, y: np.ndarray, proba: np.ndarray, brier: float) -> Path:
    """Reliability curve of the calibrated probabilities on the test rows."""
    plt = _pyplot()
    curve = reliability_curve(y, proba, bins=10)
    fig, ax = plt.subplots(figsize=(5, 4.6))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.plot(curve.predicted, curve.observed, marker="o", label=f"model (Brier {brier:.4f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("reliability (test rows)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(path: Path, *, y: np.ndarray, decision: np.ndarray) -> Path:
    plt = _pyplot()
    y = np.asarray(y, dtype=bool)
    decision = np.asarray(decision, dtype=bool)
    matrix = np.array([[np.sum(~y & ~decision), np.sum(~y & decision)], [np.sum(y & ~decision), np.sum(y & decision)]])
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(matrix, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{matrix[i, j]:,}", ha="center", va="center")
    ax.set_xticks([0, 1], ["not short", "short"])
    ax.set_yticks([0, 1], ["not short", "short"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual at t + horizon")
    ax.set_title("confusion matrix (test rows)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_importance(path: Path, importance: dict[str, float], *, top: int = 25) -> Path:
    plt = _pyplot()
    items = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.25 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel("share of total gain")
    ax.set_title("feature importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def coverage_table(rows: pd.DataFrame, *, target: str, proba: np.ndarray, threshold: int) -> pd.DataFrame:
    """Rows, positives and PR-AUC (model, persistence) per region and per station size."""
    y = rows[f"y_{target}"].to_numpy(dtype=bool)
    current = rows[target].to_numpy(dtype=float)
    groups: list[tuple[str, np.ndarray]] = []
    regions = rows["region_code"].astype("Float64").fillna(-1).astype(int).to_numpy()
    for region in np.unique(regions):
        groups.append((f"region {region if region >= 0 else 'unknown'}", regions == region))
    capacity = rows["capacity"].astype("Float64").fillna(-1).to_numpy(dtype=float)
    for name, lo, hi in CAPACITY_BUCKETS:
        groups.append((name, (capacity >= lo) & (capacity <= hi)))
    groups.append(("capacity unknown", capacity < 0))
    records = []
    for name, mask in groups:
        if not mask.any():
            continue
        records.append(
            {
                "group": name,
                "rows": int(mask.sum()),
                "positives": int(y[mask].sum()),
                "model_pr_auc": pr_auc(y[mask], proba[mask]),
                "persistence_pr_auc": pr_auc(y[mask], -current[mask]),
            }
        )
    return pd.DataFrame.from_records(records)


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"  # NaN when a slice has no positive


def model_card(
    *,
    report: EvaluationReport,
    target: str,
    algo: str,
    split: dict[str, str],
    settings_summary: dict[str, Any],
    coverage: pd.DataFrame,
    params: dict[str, Any],
    feature_version: str,
    top_features: list[tuple[str, float]],
) -> str:
    """The Markdown model card of one training run."""
    thr = settings_summary["shortage_threshold"]
    horizon = settings_summary["horizon_min"]
    what = "bikes" if target == "bikes" else "free docks"
    lines = [
        f"# Model card: {target} shortage in {horizon} minutes ({algo})",
        "",
        "## Purpose",
        f"Ranks stations by the probability that they hold at most {thr} {what} {horizon} minutes from now, so "
        "that an operator can rebalance before a rider finds the station empty (bikes) or full (docks). The "
        "decision threshold turns the probability into an alert.",
        "",
        "## Data window",
        f"- city `{settings_summary['city']}`, feature version `{feature_version}`, "
        f"grid {settings_summary['grid_minutes']} min",
        f"- train {split['train_start']} .. {split['train_end']}",
        f"- validation {split['validation_start']} .. {split['validation_end']} "
        "(calibration, threshold, overfit check)",
        f"- test {split['test_start']} .. {split['test_end']} (gap of {split['gap_min']} min between parts)",
        "",
        "## Metrics on the test rows, model against persistence",
        "Persistence predicts that the count stays as it is (score = minus the current count; rule = current "
        f"count <= {thr}).",
        "",
        "| slice | rows | positives | model PR-AUC | persistence PR-AUC | lift | model F1 | persistence F1 "
        "| model precision | model recall | model Brier |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report.slices.items():
        lines.append(
            f"| {name} | {s.model.rows:,} | {s.model.positives:,} | {_fmt(s.model.pr_auc)} | {_fmt(s.baseline.pr_auc)} "
            f"| {_fmt(s.pr_auc_lift)} | {_fmt(s.model.f1)} | {_fmt(s.baseline.f1)} | {_fmt(s.model.precision)} "
            f"| {_fmt(s.model.recall)} | {_fmt(s.model.brier)} |"
        )
    gap = report.overfit_gap
    lines += [
        "",
        f"Train PR-AUC {_fmt(report.train_pr_auc or float('nan'))}, validation PR-AUC "
        f"{_fmt(report.validation_pr_auc or float('nan'))}, gap {_fmt(gap if gap is not None else float('nan'))} "
        f"(limit {settings_summary['max_overfit_gap']}).",
        "",
        "## Threshold",
        f"Alert when the calibrated probability is >= {report.decision_threshold:.4f}: the threshold that maximises "
        f"F-beta (beta = {settings_summary['fbeta']}) on the validation rows. Probabilities are calibrated by "
        "isotonic regression fitted on the validation rows.",
        "",
        "## Assumptions",
        "- The feed's counts are as-of its last snapshot; a station without an unmasked snapshot for "
        f"{settings_summary['max_snapshot_age_min']} minutes is missing and not scored.",
        "- Rows whose label (the count at t + horizon) is missing are left out of training and evaluation.",
        "- Every feature uses data at or before t only (see docs/feature_store.md); history features need the "
        f"previous {settings_summary['history_days']} days of the same time of day.",
        "- Weather columns are empty when no weather source is configured; the model then ignores them.",
        "",
        "## Risks",
        "- Onsets (stations not short now) are rare and hard: precision there is far below the overall figure.",
        "- Rebalancing trucks, events, closures and feed outages are not in the inputs; a change in how the "
        "operator rebalances shifts the history features.",
        "- A new station has no history and few neighbours' records; its first days lean on the current state.",
        "- Calibration holds for the validation period's base rate; a season with more shortages drifts it.",
        "",
        "## Coverage across regions and station sizes (test rows)",
        "",
        "| group | rows | positives | model PR-AUC | persistence PR-AUC |",
        "|---|---|---|---|---|",
    ]
    for record in coverage.to_dict("records"):
        lines.append(
            f"| {record['group']} | {record['rows']:,} | {record['positives']:,} | "
            f"{_fmt(record['model_pr_auc'])} | {_fmt(record['persistence_pr_auc'])} |"
        )
    lines += ["", "## Most important features (share of gain)", ""]
    lines += [f"- `{name}` {share:.3f}" for name, share in top_features]
    lines += ["", "## Learner parameters", "", "```"]
    lines += [f"{k} = {v}" for k, v in sorted(params.items())]
    lines += ["```", ""]
    return "\n".join(lines)
