"""The promotion gate: a list of named checks over evaluation reports, pure and side-effect free.

Each check reads a :class:`GateInput` and returns a :class:`CheckResult`. The verdict passes when
every check passes. New rules (for example an admission rule for ``production``) are new functions
appended to the list :func:`default_checks` returns, nothing else changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from bikeshare.training.report import EvaluationReport, ScoreMetrics


@dataclass(frozen=True)
class GateInput:
    """Everything the checks may read.

    ``holder`` is the current alias holder scored on the candidate's test window (``None`` when
    nobody holds the alias, or when scoring it failed: then ``holder_error`` says why).
    """

    candidate: EvaluationReport
    alias: str
    kpi_min_pr_auc: float
    kpi_min_f1: float
    max_overfit_gap: float
    max_holder_drop: float = 0.0
    candidate_version: str | None = None
    holder_version: str | None = None
    holder: EvaluationReport | None = None
    holder_error: str | None = None


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    observed: float | None = None
    required: float | None = None


@dataclass(frozen=True)
class GateVerdict:
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def to_json(self) -> str:
        """The checks as a JSON list (NaN written as null)."""
        rows = [{k: _json_number(v) for k, v in asdict(check).items()} for check in self.checks]
        return json.dumps(rows, sort_keys=True)

    def explain(self) -> str:
        """One line per check: PASS/FAIL, its name and what it saw."""
        return "\n".join(f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in self.checks)


Check = Callable[[GateInput], CheckResult]


def _json_number(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _model(report: EvaluationReport, slice_name: str) -> ScoreMetrics | None:
    comparison = report.slices.get(slice_name)
    return comparison.model if comparison is not None else None


def _at_least(name: str, observed: float | None, required: float, what: str) -> CheckResult:
    if observed is None or math.isnan(observed):
        return CheckResult(name, False, f"{what} is not available", None, required)
    ok = observed >= required
    return CheckResult(name, ok, f"{what} {observed:.4f} {'>=' if ok else '<'} {required:.4f}", observed, required)


def kpi_pr_auc(gate: GateInput) -> CheckResult:
    """Seed KPI: test PR-AUC over all rows."""
    metrics = _model(gate.candidate, "all")
    return _at_least("kpi_pr_auc", metrics and metrics.pr_auc, gate.kpi_min_pr_auc, "test PR-AUC")


def kpi_f1(gate: GateInput) -> CheckResult:
    """Seed KPI: test F1 at the bundle's decision threshold."""
    metrics = _model(gate.candidate, "all")
    return _at_least("kpi_f1", metrics and metrics.f1, gate.kpi_min_f1, "test F1")


def _beats_persistence(gate: GateInput, slice_name: str) -> CheckResult:
    name = f"beats_persistence_{slice_name}"
    comparison = gate.candidate.slices.get(slice_name)
    if comparison is None:
        return CheckResult(name, False, f"the report has no {slice_name!r} slice")
    model, baseline = comparison.model.pr_auc, comparison.baseline.pr_auc
    if math.isnan(model) or math.isnan(baseline):
        return CheckResult(name, False, f"PR-AUC on {slice_name} is undefined (no positives?)", model, baseline)
    ok = model > baseline
    return CheckResult(
        name,
        ok,
        f"model PR-AUC {model:.4f} {'>' if ok else '<='} persistence {baseline:.4f} on {slice_name}",
        model,
        baseline,
    )


def beats_persistence_all(gate: GateInput) -> CheckResult:
    """The model ranks better than persistence (score = -current count) on all test rows."""
    return _beats_persistence(gate, "all")


def beats_persistence_onsets(gate: GateInput) -> CheckResult:
    """... and on onsets (rows not short now), where warning matters."""
    return _beats_persistence(gate, "onsets")


def overfit_gap(gate: GateInput) -> CheckResult:
    """Train-minus-validation PR-AUC must stay under the limit (passes when the trainer did not report it)."""
    gap = gate.candidate.overfit_gap
    if gap is None:
        return CheckResult("overfit_gap", True, "train/validation PR-AUC not reported", None, gate.max_overfit_gap)
    ok = gap < gate.max_overfit_gap
    return CheckResult(
        "overfit_gap",
        ok,
        f"train-validation PR-AUC gap {gap:.4f} {'<' if ok else '>='} {gate.max_overfit_gap:.4f}",
        gap,
        gate.max_overfit_gap,
    )


def _no_worse_than_holder(gate: GateInput, slice_name: str) -> CheckResult:
    name = f"no_worse_than_holder_{slice_name}"
    if gate.holder_version is None:
        return CheckResult(name, True, f"nobody holds {gate.alias!r} yet")
    if gate.holder_version == gate.candidate_version:
        return CheckResult(name, True, f"the candidate already holds {gate.alias!r}")
    if gate.holder is None:
        reason = gate.holder_error or "it was not scored"
        return CheckResult(name, False, f"holder v{gate.holder_version} could not be compared: {reason}")
    candidate, holder = _model(gate.candidate, slice_name), _model(gate.holder, slice_name)
    if candidate is None or holder is None:
        return CheckResult(name, False, f"a report lacks the {slice_name!r} slice")
    if math.isnan(candidate.pr_auc) or math.isnan(holder.pr_auc):
        return CheckResult(name, False, f"PR-AUC on {slice_name} is undefined", candidate.pr_auc, holder.pr_auc)
    floor = holder.pr_auc - gate.max_holder_drop
    ok = candidate.pr_auc >= floor
    window = f"{gate.candidate.window_start}..{gate.candidate.window_end}"
    return CheckResult(
        name,
        ok,
        f"PR-AUC on {slice_name} {candidate.pr_auc:.4f} {'>=' if ok else '<'} holder v{gate.holder_version} "
        f"{holder.pr_auc:.4f} - {gate.max_holder_drop:.4f} (same test window {window}, "
        f"{holder.rows} holder rows vs {candidate.rows})",
        candidate.pr_auc,
        floor,
    )


def no_worse_than_holder_all(gate: GateInput) -> CheckResult:
    """Not worse than the current alias holder on all rows of the candidate's test window."""
    return _no_worse_than_holder(gate, "all")


def no_worse_than_holder_onsets(gate: GateInput) -> CheckResult:
    """... nor on its onsets."""
    return _no_worse_than_holder(gate, "onsets")


def default_checks(alias: str) -> list[Check]:
    """The checks promotion to ``alias`` runs, in order (the same for staging and production today)."""
    del alias  # an admission rule for production will branch here
    return [
        kpi_pr_auc,
        kpi_f1,
        beats_persistence_all,
        beats_persistence_onsets,
        overfit_gap,
        no_worse_than_holder_all,
        no_worse_than_holder_onsets,
    ]


def run_gate(gate: GateInput, checks: Sequence[Check] | None = None) -> GateVerdict:
    """Run every check (no short-circuit, so the verdict names each failure)."""
    return GateVerdict(checks=tuple(check(gate) for check in (checks or default_checks(gate.alias))))
