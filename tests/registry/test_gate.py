"""The gate as a pure function of reports, on reports from real (tiny) LightGBM models."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from bikeshare.registry.gate import CheckResult, GateInput, default_checks, run_gate
from bikeshare.training.report import EvaluationReport, ScoreMetrics, SliceComparison

from .synthetic import evaluate, fit_bundle, station_frame


@pytest.fixture(scope="module")
def reports() -> dict[str, EvaluationReport]:
    train, test = station_frame(3000, seed=1), station_frame(2000, seed=99)
    return {
        "good": evaluate(fit_bundle(train, ("bikes_now", "trend")), test),
        "weaker": evaluate(fit_bundle(train, ("bikes_now", "trend_noisy")), test),
        "shuffled": evaluate(fit_bundle(train, ("bikes_now", "trend"), shuffle_labels=True), test),
    }


def gate_input(candidate: EvaluationReport, **overrides: object) -> GateInput:
    values: dict[str, object] = {
        "candidate": candidate,
        "alias": "staging",
        "kpi_min_pr_auc": 0.70,
        "kpi_min_f1": 0.55,
        "max_overfit_gap": 0.1,
        "candidate_version": "2",
    }
    values.update(overrides)
    return GateInput(**values)  # type: ignore[arg-type]


def failed_names(gate: GateInput) -> set[str]:
    return {c.name for c in run_gate(gate).failed}


def test_good_model_passes_every_check(reports) -> None:
    verdict = run_gate(gate_input(reports["good"]))
    assert verdict.passed, verdict.explain()
    names = [check(gate_input(reports["good"])).name for check in default_checks("staging")]
    assert [c.name for c in verdict.checks] == names
    rows = json.loads(verdict.to_json())
    assert {r["name"] for r in rows} >= {"kpi_pr_auc", "beats_persistence_onsets", "no_worse_than_holder_all"}
    assert all(r["passed"] for r in rows)


def test_shuffled_labels_do_not_beat_persistence(reports) -> None:
    shuffled = reports["shuffled"]
    assert shuffled.slices["all"].model.pr_auc < shuffled.slices["all"].baseline.pr_auc
    failed = failed_names(gate_input(shuffled, kpi_min_pr_auc=0.0, kpi_min_f1=0.0))
    assert failed == {"beats_persistence_all", "beats_persistence_onsets"}
    verdict = run_gate(gate_input(shuffled))
    assert not verdict.passed
    assert "FAIL beats_persistence_all: model PR-AUC" in verdict.explain()


def test_kpis_are_checked_against_the_settings(reports) -> None:
    good = reports["good"]
    pr_auc, f1 = good.slices["all"].model.pr_auc, good.slices["all"].model.f1
    assert failed_names(gate_input(good, kpi_min_pr_auc=pr_auc + 0.001)) == {"kpi_pr_auc"}
    assert failed_names(gate_input(good, kpi_min_f1=f1 + 0.001)) == {"kpi_f1"}
    assert failed_names(gate_input(good, kpi_min_pr_auc=pr_auc, kpi_min_f1=f1)) == set()


def test_candidate_compared_with_the_holder_on_the_same_window(reports) -> None:
    good, weaker = reports["good"], reports["weaker"]
    assert weaker.slices["all"].model.pr_auc < good.slices["all"].model.pr_auc
    worse = gate_input(weaker, holder_version="1", holder=good)
    assert failed_names(worse) >= {"no_worse_than_holder_all"}
    assert failed_names(gate_input(good, holder_version="1", holder=weaker)) == set()
    gap = good.slices["all"].model.pr_auc - weaker.slices["all"].model.pr_auc
    onset_gap = good.slices["onsets"].model.pr_auc - weaker.slices["onsets"].model.pr_auc
    tolerant = gate_input(weaker, holder_version="1", holder=good, max_holder_drop=max(gap, onset_gap) + 1e-9)
    assert "no_worse_than_holder_all" not in failed_names(tolerant)
    assert "no_worse_than_holder_onsets" not in failed_names(tolerant)


def test_holder_that_could_not_be_scored_fails_closed(reports) -> None:
    gate = gate_input(reports["good"], holder_version="1", holder=None, holder_error="KeyError: 'trend'")
    verdict = run_gate(gate)
    assert {c.name for c in verdict.failed} == {"no_worse_than_holder_all", "no_worse_than_holder_onsets"}
    assert "KeyError: 'trend'" in verdict.explain()
    # no holder at all, or the candidate is the holder: nothing to compare
    assert run_gate(gate_input(reports["good"], holder_version=None)).passed
    assert run_gate(gate_input(reports["good"], holder_version="2", candidate_version="2")).passed


def test_missing_slices_and_nan_metrics_fail(reports) -> None:
    good = reports["good"]
    no_onsets = replace(good, slices={k: v for k, v in good.slices.items() if k != "onsets"})
    assert failed_names(gate_input(no_onsets)) == {"beats_persistence_onsets"}
    nan_metrics = ScoreMetrics(float("nan"), 0.0, 0.0, 0.0, 0.0, 10, 0)
    empty = replace(good, slices={**good.slices, "onsets": SliceComparison(nan_metrics, nan_metrics)})
    verdict = run_gate(gate_input(empty))
    assert {c.name for c in verdict.failed} == {"beats_persistence_onsets"}
    assert json.loads(verdict.to_json())[3]["observed"] is None  # NaN written as null


def test_overfit_gap(reports) -> None:
    good = reports["good"]
    assert "overfit_gap" not in failed_names(gate_input(replace(good, train_pr_auc=0.95, validation_pr_auc=0.9)))
    assert "overfit_gap" in failed_names(gate_input(replace(good, train_pr_auc=0.99, validation_pr_auc=0.8)))


def test_gate_takes_extra_named_checks(reports) -> None:
    def online_hours(gate: GateInput) -> CheckResult:
        return CheckResult("staging_online_hours", gate.alias != "production", "needs 24 h online", 3.0, 24.0)

    checks = [*default_checks("production"), online_hours]
    assert run_gate(gate_input(reports["good"]), checks).passed
    verdict = run_gate(gate_input(reports["good"], alias="production"), checks)
    assert [c.name for c in verdict.failed] == ["staging_online_hours"]
    assert math.isclose(verdict.failed[0].required or 0, 24.0)
