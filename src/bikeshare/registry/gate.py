"""The promotion gate: a list of named checks over evaluation reports, pure and side-effect free.

Each check reads a :class:`GateInput` and returns a :class:`CheckResult`. The verdict passes when
every check passes. Rules are functions in the list :func:`default_checks` returns; ``production``
adds the admission rule on staging's online quality (:data:`ADMISSION_CHECKS`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from bikeshare.registry.online import OnlineQuality
from bikeshare.training.report import EvaluationReport, ScoreMetrics


@dataclass(frozen=True)
class GateInput:
    """Everything the checks may read.

    ``holder`` is the current alias holder scored on the candidate's test window (``None`` when
    nobody holds the alias, or when scoring it failed: then ``holder_error`` says why).

    Production admission (alias ``production``, ``min_online_hours`` > 0): ``online`` is the
    candidate's online quality as ``staging``, ``online_holder`` the production holder's over the
    same target times (``None`` when nobody holds production); ``online_error`` says why they are
    missing.
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
    min_online_hours: float = 0.0
    online: OnlineQuality | None = None
    online_holder: OnlineQuality | None = None
    online_error: str | None = None


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


# --- production admission: staging's online quality ------------------------------------------


def _admission_off(gate: GateInput) -> bool:
    return gate.alias != "production" or gate.min_online_hours <= 0


def _online_missing(name: str, gate: GateInput) -> CheckResult | None:
    if gate.online is None:
        reason = gate.online_error or "it was not measured"
        return CheckResult(name, False, f"staging's online quality is unknown: {reason}")
    return None


def staging_online_hours(gate: GateInput) -> CheckResult:
    """Production admission: staging has been scored online (served or in shadow) long enough."""
    name = "staging_online_hours"
    if _admission_off(gate):
        return CheckResult(name, True, "no online soak required (staging_min_online_hours = 0)")
    missing = _online_missing(name, gate)
    if missing is not None or gate.online is None:
        return missing or CheckResult(name, False, "no online quality")
    online = gate.online
    ok = online.hours >= gate.min_online_hours
    return CheckResult(
        name,
        ok,
        f"v{online.version} has {online.hours:.2f} h of joined online predictions as {online.alias} "
        f"({online.span}, {online.rows} rows) {'>=' if ok else '<'} {gate.min_online_hours:g} h",
        online.hours,
        gate.min_online_hours,
    )


def _online_kpi(gate: GateInput, name: str, metric: str, required: float) -> CheckResult:
    if _admission_off(gate):
        return CheckResult(name, True, "no online soak required (staging_min_online_hours = 0)")
    missing = _online_missing(name, gate)
    if missing is not None or gate.online is None:
        return missing or CheckResult(name, False, "no online quality")
    value = getattr(gate.online, metric)
    label = {"pr_auc": "online PR-AUC", "f1": "online F1"}[metric]
    return _at_least(name, value, required, f"{label} of v{gate.online.version} ({gate.online.rows} rows)")


def staging_online_pr_auc(gate: GateInput) -> CheckResult:
    """Production admission: staging's online PR-AUC meets the KPI."""
    return _online_kpi(gate, "staging_online_pr_auc", "pr_auc", gate.kpi_min_pr_auc)


def staging_online_f1(gate: GateInput) -> CheckResult:
    """Production admission: staging's online F1 meets the KPI."""
    return _online_kpi(gate, "staging_online_f1", "f1", gate.kpi_min_f1)


def staging_online_no_worse_than_production(gate: GateInput) -> CheckResult:
    """Production admission: staging's online PR-AUC and F1 are no worse than production's over the same hours."""
    name = "staging_online_no_worse_than_production"
    if _admission_off(gate):
        return CheckResult(name, True, "no online soak required (staging_min_online_hours = 0)")
    missing = _online_missing(name, gate)
    if missing is not None or gate.online is None:
        return missing or CheckResult(name, False, "no online quality")
    if gate.holder_version is None or gate.holder_version == gate.candidate_version:
        return CheckResult(name, True, "nobody else holds production: nothing to compare with")
    holder = gate.online_holder
    if holder is None or not holder.rows:
        return CheckResult(
            name,
            False,
            f"production v{gate.holder_version} has no joined predictions at staging's target times "
            f"({gate.online.span}): they cannot be compared",
        )
    drop = gate.max_holder_drop
    worse = []
    for metric in ("pr_auc", "f1"):
        mine, theirs = getattr(gate.online, metric), getattr(holder, metric)
        if theirs is not None and (mine is None or mine < theirs - drop):
            worse.append(f"{metric} {_num(mine)} < {_num(theirs)} - {drop:g}")
    detail = (
        f"over {holder.hours:.2f} h of the same target times, staging v{gate.online.version} PR-AUC "
        f"{_num(gate.online.pr_auc)} F1 {_num(gate.online.f1)} vs production v{holder.version} PR-AUC "
        f"{_num(holder.pr_auc)} F1 {_num(holder.f1)}"
    )
    if worse:
        detail += "; worse: " + ", ".join(worse)
    return CheckResult(name, not worse, detail, gate.online.pr_auc, holder.pr_auc)


def _num(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


ADMISSION_CHECKS: tuple[Check, ...] = (
    staging_online_hours,
    staging_online_pr_auc,
    staging_online_f1,
    staging_online_no_worse_than_production,
)


def default_checks(alias: str) -> list[Check]:
    """The checks promotion to ``alias`` runs, in order; ``production`` adds the online admission checks."""
    checks: list[Check] = [
        kpi_pr_auc,
        kpi_f1,
        beats_persistence_all,
        beats_persistence_onsets,
        overfit_gap,
        no_worse_than_holder_all,
        no_worse_than_holder_onsets,
    ]
    if alias == "production":
        checks.extend(ADMISSION_CHECKS)
    return checks


def run_gate(gate: GateInput, checks: Sequence[Check] | None = None) -> GateVerdict:
    """Run every check (no short-circuit, so the verdict names each failure)."""
    return GateVerdict(checks=tuple(check(gate) for check in (checks or default_checks(gate.alias))))
