"""Multi-horizon forecasts on half a day of the shipped slice: labels at t + h, the pooled model
family, per-horizon evaluation against persistence, the bundle round trip and the per-horizon gate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bikeshare.features.schema import FEATURE_COLUMNS
from bikeshare.registry.forecast import forecast_gate
from bikeshare.training.forecast import (
    ForecastReport,
    ForecastTrainingResult,
    choose_deadband,
    expand_horizons,
    sample_horizons,
    score_expanded,
)
from bikeshare.training.forecast_bundle import ForecastBundle
from bikeshare.training.report import ScoreMetrics, SliceComparison
from bikeshare.training.split import split_frame


@pytest.fixture(scope="module")
def trained(forecast_run: ForecastTrainingResult) -> ForecastTrainingResult:
    return forecast_run


def _count_at(frame: pd.DataFrame) -> dict[tuple[str, pd.Timestamp], tuple[int, int]]:
    return {
        (s, t): (int(b), int(d))
        for s, t, b, d in frame[["station_id", "slot", "bikes", "docks"]].itertuples(index=False)
    }


def test_expanded_labels_are_the_grid_counts_at_t_plus_h_and_features_are_unchanged(
    slice_day_features: pd.DataFrame,
) -> None:
    frame = slice_day_features.iloc[:15000]
    counts = _count_at(slice_day_features.iloc[:15000])
    rows = expand_horizons(frame, (15, 60))
    assert set(rows["horizon_min"]) == {15, 60}
    expected = 0
    for (station, slot), _ in counts.items():
        for h in (15, 60):
            expected += (station, slot + pd.Timedelta(minutes=h)) in counts
    assert len(rows) == expected > 0  # a missing future slot gives no row
    for row in rows.sample(500, random_state=0).itertuples(index=False):
        later = counts[(row.station_id, row.slot + pd.Timedelta(minutes=int(row.horizon_min)))]
        assert (row.bikes_at_h, row.docks_at_h) == later
    original = frame.set_index(["station_id", "slot"])
    again = rows.set_index(["station_id", "slot"])[list(FEATURE_COLUMNS)]
    pd.testing.assert_frame_equal(
        again[~again.index.duplicated()].sort_index(),
        original.loc[again.index.unique(), list(FEATURE_COLUMNS)].sort_index(),
    )


def test_training_rows_get_one_seeded_horizon_each(slice_day_features: pd.DataFrame) -> None:
    frame = slice_day_features.iloc[:15000]
    counts = _count_at(frame)
    a = sample_horizons(frame, (15, 30, 60, 90, 120), seed=7)
    b = sample_horizons(frame, (15, 30, 60, 90, 120), seed=7)
    c = sample_horizons(frame, (15, 30, 60, 90, 120), seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a["horizon_min"].equals(c["horizon_min"])
    assert not a.duplicated(["station_id", "slot"]).any()  # the data does not grow per horizon
    assert len(a) < len(frame)  # rows whose drawn future is missing are dropped
    assert set(a["horizon_min"]) == {15, 30, 60, 90, 120}
    for row in a.itertuples(index=False):
        assert (row.bikes_at_h, row.docks_at_h) == counts[
            (row.station_id, row.slot + pd.Timedelta(minutes=int(row.horizon_min)))
        ]


def test_evaluation_per_horizon_against_persistence_on_the_same_rows(
    trained: ForecastTrainingResult, slice_day_features: pd.DataFrame
) -> None:
    report = trained.report
    assert sorted(report.horizons) == [15, 30, 60, 90, 120]
    _, _, test = split_frame(slice_day_features, trained.split)
    counts = _count_at(slice_day_features)
    for h, m in report.horizons.items():
        pairs = [
            (b, counts.get((s, t + pd.Timedelta(minutes=h))))
            for s, t, b in test[["station_id", "slot", "bikes"]].itertuples(index=False)
        ]
        pairs = [(now, later[0]) for now, later in pairs if later is not None]
        assert m.rows == len(pairs) > 0
        assert m.mae_persistence == pytest.approx(np.mean([abs(now - later) for now, later in pairs]))
        assert 0.0 <= m.coverage <= 1.0 and m.mae_model >= 0.0
        for target in ("bikes", "docks"):
            comp = m.targets[target]["all"]
            assert comp.model.rows == comp.baseline.rows == m.rows
            assert comp.model.positives == sum(later <= 2 for _, later in pairs) if target == "bikes" else True
    # longer horizons are harder for persistence
    assert report.horizons[120].mae_persistence > report.horizons[15].mae_persistence
    metrics = report.flat_metrics()
    assert {"h60_bikes_onsets_model_pr_auc", "h120_mae_model", "h15_coverage"} <= set(metrics)
    again = ForecastReport.from_dict(report.to_dict())
    assert again.flat_metrics() == pytest.approx(metrics, nan_ok=True)
    assert "| 60 | docks |" in report.table()


def test_curve_is_ordered_bounded_and_survives_a_bundle_round_trip(
    trained: ForecastTrainingResult, slice_day_features: pd.DataFrame, tmp_path: Path
) -> None:
    rows = slice_day_features[slice_day_features["slot"] == slice_day_features["slot"].max()]
    curve = trained.bundle.curve(rows)
    assert len(curve) == len(rows) * 5
    assert list(curve["horizon_min"].iloc[:5]) == [15, 30, 60, 90, 120]
    merged = curve.merge(rows[["station_id", "bikes", "docks", "capacity"]], on="station_id")
    top = np.maximum(merged["capacity"].astype(float).fillna(0), merged["bikes"] + merged["docks"])
    assert (merged["bikes_lo"] <= merged["expected_bikes"] + 1e-9).all()
    assert (merged["expected_bikes"] <= merged["bikes_hi"] + 1e-9).all()
    assert (merged["bikes_lo"] >= 0).all() and (merged["bikes_hi"] <= top + 1e-9).all()
    assert curve[["p_no_bikes", "p_no_docks"]].stack().between(0, 1).all()
    loaded = ForecastBundle.load(trained.bundle.save(tmp_path / "bundle"))
    pd.testing.assert_frame_equal(loaded.curve(rows), curve)
    light, _scores = score_expanded(loaded, rows, (30,))
    assert len(light) <= len(rows)


def _worse(comp: SliceComparison) -> SliceComparison:
    m = comp.baseline
    return SliceComparison(model=dataclasses.replace(m, pr_auc=m.pr_auc - 0.01), baseline=m)


def _better(comp: SliceComparison) -> SliceComparison:
    m = comp.baseline
    model = ScoreMetrics(**{**dataclasses.asdict(m), "pr_auc": min(m.pr_auc + 0.01, 1.0)})
    return SliceComparison(model=model, baseline=dataclasses.replace(m, pr_auc=model.pr_auc - 0.02))


def test_gate_passes_only_when_every_horizon_beats_persistence(trained: ForecastTrainingResult) -> None:
    good = {
        h: dataclasses.replace(
            m,
            targets={t: {s: _better(c) for s, c in slices.items()} for t, slices in m.targets.items()},
            mae_model=m.mae_persistence - 0.1,
        )
        for h, m in trained.report.horizons.items()
    }
    report = dataclasses.replace(trained.report, horizons=good)
    horizons = [15, 30, 60, 90, 120]
    verdict = forecast_gate(report, horizons=horizons)
    assert verdict.passed and len(verdict.checks) == 15
    assert {"beats_persistence_all@60", "beats_persistence_onsets@60", "mae_vs_persistence@60"} <= {
        c.name for c in verdict.checks
    }
    bad60 = dict(good)
    m = good[60]
    bad60[60] = dataclasses.replace(
        m, targets={**m.targets, "docks": {**m.targets["docks"], "onsets": _worse(m.targets["docks"]["onsets"])}}
    )
    refused = forecast_gate(dataclasses.replace(report, horizons=bad60), horizons=horizons)
    assert not refused.passed
    assert [c.name for c in refused.failed] == ["beats_persistence_onsets@60"]
    worse_mae = {**good, 90: dataclasses.replace(good[90], mae_model=good[90].mae_persistence + 0.5)}
    assert [
        c.name for c in forecast_gate(dataclasses.replace(report, horizons=worse_mae), horizons=horizons).failed
    ] == ["mae_vs_persistence@90"]
    missing = forecast_gate(report, horizons=[*horizons, 180])
    assert [c.name for c in missing.failed] == ["evaluated@180"]


def test_deadband_is_chosen_per_horizon_to_minimise_validation_mae() -> None:
    # 15 min: the model's 0.7 changes are noise (nothing moves) -> stay put below them;
    # 60 min: its 0.7 changes are real moves of 1 bike -> plain rounding.
    rows = pd.DataFrame(
        {
            "horizon_min": [15] * 4 + [60] * 4,
            "bikes": [5] * 8,
            "bikes_at_h": [5, 5, 5, 5, 6, 6, 6, 5],
        }
    )
    raw = np.array([0.7, 0.7, 0.2, 0.0, 0.7, 0.7, 0.7, 0.1])
    assert choose_deadband(rows, raw, (15, 60, 120)) == (0.8, 0.5, 0.5)
