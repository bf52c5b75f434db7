"""Bounded training: the pipeline's window (28 days by default) read day by day, and easy negatives
sampled at a known rate with weights 1/rate that keep probabilities calibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bikeshare.features.build import load_features
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import FEATURES
from bikeshare.orchestration.pipeline import training_frame
from bikeshare.settings import Settings
from bikeshare.training.models import class_weights, fit_model
from bikeshare.training.sampling import EASY_NEGATIVE_MARGIN, easy_negative_sampling, easy_negatives
from bikeshare.training.train import train_model

FAST = {"train_num_trees": 25, "train_min_rows_per_leaf": 100, "train_threads": 1}
DAYS = 6


@pytest.fixture(scope="module")
def six_day_lake(slice_day_features: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A lake whose features hold the shipped half day copied onto the 6 days ending on its day."""
    root = tmp_path_factory.mktemp("bounded")
    settings = Settings(lake_uri=str(root / "lake"), state_dir=root / "state", weather_enabled=False)
    lake = Lake.open(settings.lake_uri)
    for back in range(DAYS):
        part = slice_day_features.assign(slot=slice_day_features["slot"] - pd.Timedelta(days=back))
        lake.write(FEATURES, part, city="sf", dt=part["slot"].iloc[0].strftime("%Y-%m-%d"), name="features")
    return settings


def test_the_pipeline_trains_on_28_days_by_default() -> None:
    assert Settings().pipeline_train_days == 28.0


def test_training_window_is_respected(six_day_lake: Settings, slice_day_features: pd.DataFrame) -> None:
    lake = Lake.open(six_day_lake.lake_uri)
    everything = training_frame(lake=lake, settings=six_day_lake)  # 28 days hold all 6
    assert everything["slot"].dt.floor("D").nunique() == DAYS
    assert len(everything) == DAYS * len(slice_day_features)
    two = training_frame(lake=lake, settings=six_day_lake.with_values(pipeline_train_days=2.0))
    newest = slice_day_features["slot"].max()
    assert two["slot"].min() >= newest.floor("D") - pd.Timedelta(days=1)
    assert two["slot"].dt.floor("D").nunique() == 2
    end = newest - pd.Timedelta(days=2)
    bounded = training_frame(lake=lake, settings=six_day_lake.with_values(pipeline_train_days=1.5), end=end)
    assert bounded["slot"].max() <= end and bounded["slot"].min() >= end - pd.Timedelta(days=1.5)
    assert len(bounded) > 0


def test_load_features_streams_days_cut_to_window_and_columns(six_day_lake: Settings) -> None:
    lake = Lake.open(six_day_lake.lake_uri)
    whole = load_features(lake=lake, city="sf")
    start, end = whole["slot"].min() + pd.Timedelta(hours=30), whole["slot"].max() - pd.Timedelta(hours=30)
    cut = load_features(lake=lake, city="sf", start=start, end=end, columns=["slot", "bikes", "y_bikes"])
    assert list(cut.columns) == ["slot", "bikes", "y_bikes"]
    expected = whole[(whole["slot"] >= start) & (whole["slot"] <= end)].reset_index(drop=True)
    pd.testing.assert_frame_equal(cut, expected[["slot", "bikes", "y_bikes"]])
    assert str(cut["y_bikes"].dtype) == "boolean"


def test_easy_negatives_are_sampled_at_the_rate_and_weighted(settings: Settings) -> None:
    rng = np.random.default_rng(5)
    n = 40_000
    bikes = rng.integers(0, 30, n)
    frame = pd.DataFrame({"bikes": bikes, "y_bikes": pd.array(rng.random(n) < 0.1, dtype="boolean")})
    rows = np.ones(n, dtype=bool)
    rate = 0.25
    sampling = easy_negative_sampling(frame, rows, target="bikes", settings=settings.with_values(
        train_easy_negative_rate=rate
    ))  # fmt: skip
    easy = easy_negatives(frame, target="bikes", settings=settings)
    assert easy.sum() > n / 2
    assert (
        easy == (~frame["y_bikes"].to_numpy(bool) & (bikes >= settings.shortage_threshold + EASY_NEGATIVE_MARGIN))
    ).all()
    assert sampling.kept[~easy].all()  # every other row is kept, weight 1
    assert sampling.rows_before == n and sampling.rows == int(sampling.kept.sum())
    kept_easy = easy[sampling.kept]
    assert np.allclose(sampling.weight[kept_easy], 1 / rate) and np.allclose(sampling.weight[~kept_easy], 1.0)
    assert kept_easy.sum() / easy.sum() == pytest.approx(rate, abs=0.02)
    assert sampling.weight[kept_easy].sum() == pytest.approx(easy.sum(), rel=0.05)  # weighted count unchanged
    assert sampling.params() == {
        "easy_negative_rate": rate,
        "easy_negative_margin": EASY_NEGATIVE_MARGIN,
        "train_rows_before_sampling": n,
    }
    off = easy_negative_sampling(frame, rows, target="bikes", settings=settings)
    assert off.kept.all() and (off.weight == 1).all() and off.params() == {"easy_negative_rate": 1.0}


def test_sampling_weights_keep_probabilities_calibrated(settings: Settings) -> None:
    """A synthetic frame with a known rate: weighted, the mean probability matches it; unweighted it does not."""
    rng = np.random.default_rng(11)
    n = 60_000
    bikes = rng.integers(0, 30, n)
    p = np.where(bikes <= 4, 0.6, np.where(bikes <= 10, 0.15, 0.02))  # known rates by count
    y = rng.random(n) < p
    frame = pd.DataFrame({"bikes": bikes, "y_bikes": pd.array(y, dtype="boolean")})
    tuned = settings.with_values(
        train_easy_negative_rate=0.1, class_weight="none", train_num_trees=60, train_learning_rate=0.3, train_threads=1
    )
    sampling = easy_negative_sampling(frame, np.ones(n, dtype=bool), target="bikes", settings=tuned)
    assert sampling.rows < 0.5 * n
    x = bikes[sampling.kept].astype(np.float32)[:, None]
    y_kept = y[sampling.kept]
    far = bikes >= 11
    mean_of = {}
    for name, base in (("weighted", sampling.weight), ("unweighted", np.ones(sampling.rows, np.float32))):
        weight = class_weights(y_kept, tuned, base=base)
        fitted = fit_model(x, y_kept, feature_names=("bikes",), settings=tuned, algo="lightgbm", weight=weight)
        proba = fitted.scorer.raw_proba(bikes.astype(np.float32)[:, None])
        mean_of[name] = float(proba[far].mean())
    observed = float(y[far].mean())
    assert mean_of["weighted"] == pytest.approx(observed, abs=0.01)
    assert mean_of["unweighted"] > observed + 0.05  # without the weights the sampled rows inflate it


def test_train_model_records_the_sampling(slice_day_features: pd.DataFrame, slice_settings: Settings) -> None:
    tuned = slice_settings.with_values(train_easy_negative_rate=0.2, **FAST)
    result = train_model(slice_day_features, target="bikes", settings=tuned)
    params = result.params
    assert params["easy_negative_rate"] == 0.2 and params["easy_negative_margin"] == EASY_NEGATIVE_MARGIN
    assert params["train_rows"] < params["train_rows_before_sampling"]
    assert result.bundle.meta.provenance["easy_negative_rate"] == 0.2
    assert 0.5 < result.report.slices["all"].model.pr_auc <= 1.0
