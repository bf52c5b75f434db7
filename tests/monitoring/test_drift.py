"""PSI and KS against hand-computed cases, baselines, missing/constant/categorical features."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from bikeshare.monitoring.baseline import (
    OTHER_CATEGORY,
    FeatureBaseline,
    baselines_from_json,
    baselines_to_json,
    build_baselines,
    categorical_baseline,
    numeric_baseline,
)
from bikeshare.monitoring.drift import PSI_EPSILON, drift_table, ks, psi, psi_from_shares


def test_psi_of_two_four_bin_distributions_by_hand() -> None:
    # base = 0.25 each, live = 0.1, 0.2, 0.3, 0.4; PSI = sum (l - b) * ln(l / b)
    #   (0.1-0.25)*ln(0.4) = -0.15 * -0.9162907 = 0.1374436
    #   (0.2-0.25)*ln(0.8) = -0.05 * -0.2231436 = 0.0111572
    #   (0.3-0.25)*ln(1.2) =  0.05 *  0.1823216 = 0.0091161
    #   (0.4-0.25)*ln(1.6) =  0.15 *  0.4700036 = 0.0705005
    #   total                                      0.2282174
    assert psi_from_shares([0.25] * 4, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.2282174, abs=1e-6)
    assert psi_from_shares([0.25] * 4, [0.25] * 4) == 0.0


def test_psi_through_quantile_bins_of_a_baseline() -> None:
    # Training values 1..8 with 4 bins: inner edges are the 25/50/75 % quantiles 2.75, 4.5, 6.25,
    # so each right-closed bin holds two values (share 0.25).
    baseline = numeric_baseline("x", list(range(1, 9)), bins=4)
    assert baseline.bin_edges == (2.75, 4.5, 6.25)
    assert baseline.proportions == (0.25, 0.25, 0.25, 0.25)
    # Live: 1 | 3 4 | 5 5 6 | 7 8 8 8 -> shares 0.1, 0.2, 0.3, 0.4: the hand-computed case above.
    live = [1, 3, 4, 5, 5, 6, 7, 8, 8, 8]
    assert psi(baseline, live) == pytest.approx(0.2282174, abs=1e-6)


def test_empty_bins_use_the_documented_epsilon() -> None:
    # base 0.5, 0.5, 0, 0 (zeros floored to 1e-4), live 0.25 each:
    #   2 * (0.25 - 0.5) * ln(0.25 / 0.5)       = 2 * 0.1732868 = 0.3465736
    #   2 * (0.25 - 1e-4) * ln(0.25 / 1e-4)      = 2 * 0.2499 * 7.8240460 = 3.9104582
    #   total                                                               4.2570318
    assert PSI_EPSILON == 1e-4
    value = psi_from_shares([0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25])
    assert value == pytest.approx(4.2570318, abs=1e-6)
    assert math.isfinite(value)


def test_psi_share_vectors_must_match() -> None:
    with pytest.raises(ValueError, match="same length"):
        psi_from_shares([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="negative"):
        psi_from_shares([0.5, 0.5], [1.5, -0.5])


def test_ks_matches_a_brute_force_permutation_test() -> None:
    # x = 1 2 3 4, y = 2.5 3.5 5 6. Pooled order x x y x y x y y; the gap |Fx - Fy| after each
    # point: .25 .5 .25 .5 .25 .5 .25 0 -> D = 0.5.
    x, y = [1.0, 2.0, 3.0, 4.0], [2.5, 3.5, 5.0, 6.0]
    baseline = numeric_baseline("x", x, bins=2)
    result = ks(baseline, y)
    assert result.statistic == pytest.approx(0.5)
    # Exact p-value, independently: the share of the C(8,4) = 70 ways to label 4 of the 8 pooled
    # values as "x" whose D is at least 0.5.
    pooled = sorted(x + y)

    def gap(xs: set[float]) -> float:
        fx = fy = 0.0
        worst = 0.0
        for value in pooled:
            if value in xs:
                fx += 0.25
            else:
                fy += 0.25
            worst = max(worst, abs(fx - fy))
        return worst

    splits = [set(c) for c in itertools.combinations(pooled, 4)]
    exact = sum(gap(s) >= 0.5 - 1e-12 for s in splits) / len(splits)
    assert result.pvalue == pytest.approx(exact, abs=1e-9)


def test_ks_of_shifted_normals_matches_the_theoretical_distance() -> None:
    # Sup |Phi(t) - Phi(t - 0.5)| is reached at t = 0.25: 2 * Phi(0.25) - 1.
    rng = np.random.default_rng(11)
    baseline = numeric_baseline("x", rng.normal(size=20_000), sample_size=1000)
    assert len(baseline.sample) == 1000
    same = ks(baseline, rng.normal(size=5000))
    shifted = ks(baseline, rng.normal(0.5, 1.0, size=5000))
    assert same.statistic < 0.04 and same.pvalue > 0.01
    assert shifted.statistic == pytest.approx(2 * norm.cdf(0.25) - 1, abs=0.03)
    assert shifted.pvalue < 1e-6


def test_missing_values_are_counted_apart() -> None:
    baseline = numeric_baseline("x", [1.0, 2.0, None, np.nan, 3.0, 4.0, np.inf, 5.0], bins=2)
    assert (baseline.rows, baseline.missing) == (8, 3)
    frame = pd.DataFrame({"x": [1.0, np.nan, None, 4.0]})
    row = drift_table({"x": baseline}, frame).iloc[0]
    assert row["missing_rate"] == pytest.approx(0.5)
    assert row["baseline_missing_rate"] == pytest.approx(3 / 8)
    assert row["live_rows"] == 4
    all_missing = drift_table({"x": baseline}, pd.DataFrame({"x": [np.nan, np.nan]})).iloc[0]
    assert math.isnan(all_missing["psi"]) and math.isnan(all_missing["ks_stat"])
    assert not all_missing["drifting"] and all_missing["missing_rate"] == 1.0


def test_constant_feature() -> None:
    baseline = numeric_baseline("k", [3.0] * 50)
    assert baseline.bin_edges == (3.0,)
    assert baseline.proportions == (1.0, 0.0)
    assert psi(baseline, [3.0] * 20) == 0.0
    # everything moves to the upper bin: 2 * (1 - 1e-4) * ln(1 / 1e-4) = 2 * 0.9999 * 9.2103404 = 18.4188388
    assert psi(baseline, [4.0] * 20) == pytest.approx(18.4188388, abs=1e-6)
    assert ks(baseline, [3.0] * 20).statistic == 0.0
    assert ks(baseline, [4.0] * 20).statistic == 1.0


def test_categorical_psi_counts_unseen_categories_as_other() -> None:
    baseline = categorical_baseline("region", ["a"] * 50 + ["b"] * 50)
    assert baseline.categories == ("a", "b", OTHER_CATEGORY)
    assert baseline.proportions == (0.5, 0.5, 0.0)
    # live: a 0.5, b 0 (floored 1e-4), other ("c") 0.5 (base floored 1e-4):
    #   (1e-4 - 0.5) * ln(1e-4 / 0.5) + (0.5 - 1e-4) * ln(0.5 / 1e-4) = 2 * 0.4999 * 8.5171932 = 8.5154898
    assert psi(baseline, ["a"] * 50 + ["c"] * 50) == pytest.approx(8.5154898, abs=1e-6)
    assert psi(baseline, ["b", "a"] * 10) == 0.0
    assert math.isnan(ks(baseline, ["a"]).statistic)


def test_rare_training_categories_fall_into_other() -> None:
    baseline = categorical_baseline("c", ["a"] * 5 + ["b"] * 3 + ["z"], max_categories=2)
    assert baseline.categories == ("a", "b", OTHER_CATEGORY)
    assert baseline.proportions == pytest.approx((5 / 9, 3 / 9, 1 / 9))


def test_drift_table_flags_the_shifted_feature_only() -> None:
    rng = np.random.default_rng(3)
    train = pd.DataFrame(
        {
            "temp": rng.normal(15, 5, 4000),
            "bikes": rng.poisson(6, 4000),
            "region": rng.choice(["r1", "r2", "r3"], 4000),
            "is_weekend": rng.random(4000) < 0.3,
        }
    )
    baselines = build_baselines(train)
    assert {b.kind for b in baselines.values()} == {"numeric", "categorical"}
    assert baselines["is_weekend"].kind == "categorical"
    live = pd.DataFrame(
        {
            "temp": rng.normal(25, 5, 1000),  # two standard deviations warmer
            "bikes": rng.poisson(6, 1000),
            "region": rng.choice(["r1", "r2", "r3"], 1000),
            "is_weekend": rng.random(1000) < 0.3,
        }
    )
    table = drift_table(baselines, live).set_index("feature")
    assert list(table.columns) == [
        "kind",
        "psi",
        "ks_stat",
        "ks_pvalue",
        "live_rows",
        "missing_rate",
        "baseline_missing_rate",
        "drifting",
    ]
    assert table.loc["temp", "drifting"] and table.loc["temp", "psi"] > 1.0
    assert table.loc["temp", "ks_pvalue"] < 1e-10
    for name in ("bikes", "region", "is_weekend"):
        assert not table.loc[name, "drifting"], name
        assert table.loc[name, "psi"] < 0.05, name
    assert table["live_rows"].eq(1000).all()


def test_drift_table_names_absent_features() -> None:
    baselines = build_baselines(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
    with pytest.raises(ValueError, match=r"\['b'\]"):
        drift_table(baselines, pd.DataFrame({"a": [1.0]}))


def test_prediction_baseline_is_just_another_numeric_baseline() -> None:
    rng = np.random.default_rng(5)
    probs = rng.beta(1, 8, 3000)
    baseline = numeric_baseline("p_bikes", probs)
    assert psi(baseline, rng.beta(1, 8, 3000)) < 0.05
    assert psi(baseline, rng.beta(3, 4, 3000)) > 0.3


def test_baselines_round_trip_through_json() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0], "c": ["a", "b", None, "a"], "k": [1.0] * 4})
    baselines = build_baselines(frame, bins=3)
    text = baselines_to_json(baselines, meta={"model_version": "3"})
    payload = json.loads(text)
    assert payload["meta"] == {"model_version": "3"}
    assert baselines_from_json(text) == baselines


def test_baseline_all_missing_serialises_without_nan() -> None:
    baseline = numeric_baseline("x", [np.nan, None])
    text = baselines_to_json({"x": baseline})
    assert "NaN" not in text
    assert baselines_from_json(text)["x"] == baseline
    assert math.isnan(psi(baseline, [1.0, 2.0]))


def test_malformed_baseline_is_named() -> None:
    good = numeric_baseline("speed", [1.0, 2.0, 3.0], bins=2).to_dict()
    with pytest.raises(ValueError, match="'speed'"):
        FeatureBaseline.from_dict({**good, "proportions": [1.0]})
    with pytest.raises(ValueError, match="'speed'"):
        FeatureBaseline.from_dict({k: v for k, v in good.items() if k != "rows"})
    with pytest.raises(ValueError, match="format_version"):
        baselines_from_json('{"features": []}')
