"""Evaluation results as plain typed records: model and persistence side by side, per slice.

Slices: ``all`` rows, ``onsets`` (not short now), ``recoveries`` (short now). The gate, the model
card, MLflow metrics and the dashboard all read these records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SLICES: tuple[str, ...] = ("all", "onsets", "recoveries")


@dataclass(frozen=True)
class ScoreMetrics:
    """Ranking and decision quality of one scorer on one slice."""

    pr_auc: float
    f1: float
    precision: float
    recall: float
    brier: float
    rows: int
    positives: int


@dataclass(frozen=True)
class SliceComparison:
    model: ScoreMetrics
    baseline: ScoreMetrics

    @property
    def pr_auc_lift(self) -> float:
        """Model PR-AUC minus persistence PR-AUC on the same rows."""
        return self.model.pr_auc - self.baseline.pr_auc


@dataclass(frozen=True)
class EvaluationReport:
    """What one evaluation on a test window found, for one target."""

    target: str
    window_start: str  # ISO UTC, first test slot
    window_end: str  # ISO UTC, last test slot
    decision_threshold: float
    slices: dict[str, SliceComparison]
    train_pr_auc: float | None = None
    validation_pr_auc: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overfit_gap(self) -> float | None:
        if self.train_pr_auc is None or self.validation_pr_auc is None:
            return None
        return self.train_pr_auc - self.validation_pr_auc

    def flat_metrics(self) -> dict[str, float]:
        """``<slice>_<scorer>_<metric>`` floats, e.g. ``onsets_model_pr_auc``, for MLflow and tables."""
        out: dict[str, float] = {}
        for name, comparison in self.slices.items():
            for scorer, metrics in (("model", comparison.model), ("baseline", comparison.baseline)):
                for key, value in asdict(metrics).items():
                    out[f"{name}_{scorer}_{key}"] = float(value)
            out[f"{name}_pr_auc_lift"] = comparison.pr_auc_lift
        if self.overfit_gap is not None:
            out["train_pr_auc"] = float(self.train_pr_auc or 0.0)
            out["validation_pr_auc"] = float(self.validation_pr_auc or 0.0)
            out["overfit_gap"] = self.overfit_gap
        out["decision_threshold"] = self.decision_threshold
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> EvaluationReport:
        slices = {
            name: SliceComparison(model=ScoreMetrics(**s["model"]), baseline=ScoreMetrics(**s["baseline"]))
            for name, s in payload["slices"].items()
        }
        return cls(**{**payload, "slices": slices})
