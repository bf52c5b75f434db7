"""World builders shared by the test packages and ``bench/dashboard_lake.py``.

- :func:`fit_quick_run`: a small real LightGBM bundle fitted in seconds on feature rows, with its
  report against persistence on the last slots, in the shape ``log_training_run`` reads;
- :func:`quick_bundle`: the bundle alone (tests that write their own report);
- :class:`EndpointServer`: the real endpoint (``serving.create_app`` on uvicorn, models from the
  registry) in a thread on a loopback port;
- :func:`free_loopback_port`.

The test packages import it as ``support.worlds`` (pytest puts ``tests/`` on the path); the bench
puts ``tests/`` on ``sys.path`` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bikeshare.orchestration.drills.endpoint import ThreadedEndpoint, free_loopback_port, registry_provider
from bikeshare.resources import Resources
from bikeshare.settings import Settings

__all__ = [
    "MODEL_FEATURES",
    "EndpointServer",
    "QuickRun",
    "feature_rows",
    "fit_quick_run",
    "free_loopback_port",
    "persistence_report",
    "quick_bundle",
    "register_production_and_staging",
]

# The feature columns of the small test models (a subset of the feature table).
MODEL_FEATURES: tuple[str, ...] = (
    "bikes",
    "docks",
    "capacity",
    "fill_ratio",
    "net_flow_30",
    "net_flow_60",
    "bikes_min_60",
    "docks_min_60",
    "nb_bikes",
    "nb_docks",
    "hour_local",
)


@dataclass
class QuickRun:
    """A training result in the shape ``registry.tracking.log_training_run`` reads."""

    bundle: Any  # ModelBundle
    report: Any  # EvaluationReport
    params: dict[str, Any]
    artifacts: dict[str, Path] = field(default_factory=dict)
    data_window: tuple[str, str] = ("", "")


def feature_rows(rows: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The float64 matrix of ``features`` (missing values as NaN), as the bundle scores it."""
    return rows.loc[:, list(features)].astype("float64").to_numpy(np.float64, na_value=np.nan)


def quick_bundle(
    rows: pd.DataFrame,
    target: str,
    *,
    rounds: int,
    seed: int,
    features: Sequence[str] = MODEL_FEATURES,
    decision_threshold: float = 0.5,
    num_leaves: int = 7,
    num_threads: int = 1,
    horizon_min: int = 30,
    shortage_threshold: int = 2,
    feature_version: str = "1",
) -> Any:
    """A LightGBM bundle for ``target`` fitted on ``rows`` (with labels ``y_<target>``), identity calibration."""
    import lightgbm

    from bikeshare.training.bundle import BundleMeta, IsotonicCalibration, LightGBMScorer, ModelBundle

    params = {
        "objective": "binary",
        "num_leaves": num_leaves,
        "learning_rate": 0.1,
        "verbose": -1,
        "seed": seed,
        "num_threads": num_threads,
    }
    labels = rows[f"y_{target}"].astype(bool).to_numpy().astype(int)
    booster = lightgbm.train(
        params, lightgbm.Dataset(feature_rows(rows, features), label=labels), num_boost_round=rounds
    )
    meta = BundleMeta(
        target=target,  # type: ignore[arg-type]
        horizon_min=horizon_min,
        shortage_threshold=shortage_threshold,
        algo="lightgbm",
        feature_names=tuple(features),
        decision_threshold=decision_threshold,
        calibration=IsotonicCalibration.identity(),
        feature_version=feature_version,
        booster_file=LightGBMScorer.FILE,
    )
    return ModelBundle(meta=meta, scorer=LightGBMScorer(booster=booster))


def persistence_report(bundle: Any, test: pd.DataFrame, target: str) -> Any:
    """The bundle's PR-AUC and F1 against persistence (``-count`` as the score) on ``test``, per slice."""
    from sklearn.metrics import average_precision_score, f1_score

    from bikeshare.training.report import EvaluationReport, ScoreMetrics, SliceComparison

    meta = bundle.meta
    y = test[f"y_{target}"].astype(bool).to_numpy()
    proba = bundle.predict_proba(feature_rows(test, meta.feature_names))
    current = test[target].astype(float).to_numpy()
    short_now = current <= meta.shortage_threshold

    def metrics(score: np.ndarray, decision: np.ndarray, mask: np.ndarray) -> ScoreMetrics:
        yy = y[mask]
        return ScoreMetrics(
            pr_auc=float(average_precision_score(yy, score[mask])) if yy.any() else 0.0,
            f1=float(f1_score(yy, decision[mask], zero_division=0)),
            precision=0.0,
            recall=0.0,
            brier=float(np.mean((proba[mask] - yy) ** 2)),
            rows=int(mask.sum()),
            positives=int(yy.sum()),
        )

    slices = {
        name: SliceComparison(
            model=metrics(proba, proba >= meta.decision_threshold, mask),
            baseline=metrics(-current, short_now, mask),
        )
        for name, mask in (("all", np.ones_like(y, dtype=bool)), ("onsets", ~short_now), ("recoveries", short_now))
    }
    return EvaluationReport(
        target=target,
        window_start=pd.Timestamp(test["slot"].min()).isoformat(),
        window_end=pd.Timestamp(test["slot"].max()).isoformat(),
        decision_threshold=meta.decision_threshold,
        slices=slices,
    )


def fit_quick_run(
    frame: pd.DataFrame,
    target: str,
    *,
    rounds: int,
    seed: int,
    test_from: pd.Timestamp | None = None,
    params: dict[str, Any] | None = None,
    data_window: tuple[str, str] | None = None,
    **bundle_options: Any,
) -> QuickRun:
    """:func:`quick_bundle` on the labelled rows before ``test_from`` (default: the last fifth of the
    slots is the test), with :func:`persistence_report` on the rows from it.

    ``data_window`` defaults to the first and last training slot; ``params`` to rounds and seed.
    """
    labelled = frame[frame[f"y_{target}"].notna()].sort_values("slot")
    cut = labelled["slot"].quantile(0.8) if test_from is None else test_from
    train, test = labelled[labelled["slot"] < cut], labelled[labelled["slot"] >= cut]
    bundle = quick_bundle(train, target, rounds=rounds, seed=seed, **bundle_options)
    window = data_window or (
        pd.Timestamp(train["slot"].min()).isoformat(),
        pd.Timestamp(train["slot"].max()).isoformat(),
    )
    return QuickRun(
        bundle=bundle,
        report=persistence_report(bundle, test, target),
        params={"rounds": rounds, "seed": seed} if params is None else params,
        data_window=window,
    )


def register_production_and_staging(
    frame: pd.DataFrame,
    target: str,
    *,
    runs: Sequence[QuickRun],
    client: Any,
    lake: Any,
    settings: Settings,
    note: str,
    actor: str,
    created_at: pd.Timestamp,
    force_staging: bool = True,
    commit: str = "test",
    say: Any = None,
) -> tuple[dict[str, Any], list[Any]]:
    """Log ``runs`` of ``target`` (v1, v2, ...), put v1 in production (forced) and v2 in staging
    (forced unless ``force_staging`` is False: then through the gate), store v1's baselines of the
    frame's model features in the lake. Returns the baselines and the two promotion outcomes."""
    from bikeshare.monitoring.baseline import build_baselines
    from bikeshare.monitoring.store import write_baselines
    from bikeshare.registry.client import model_name
    from bikeshare.registry.promotion import promote
    from bikeshare.registry.tracking import log_training_run

    for run in runs:
        logged = log_training_run(client=client, result=run, settings=settings, commit=commit)
        assert logged.version is not None
        if say is not None:
            say(f"  registered {logged.version.name} v{logged.version.version}")
    outcomes = [
        promote(
            client=client,
            lake=lake,
            settings=settings,
            target=target,
            alias=alias,
            version=version,
            note=note,
            evaluator=None,
            actor=actor,
            force=alias == "production" or force_staging,
        )
        for alias, version in (("production", "1"), ("staging", "2"))
    ]
    baselines = build_baselines(frame, features=list(runs[0].bundle.meta.feature_names))
    write_baselines(
        lake,
        baselines,
        city=settings.city,
        model_name=model_name(settings.city, target),
        model_version="1",
        target=target,
        created_at=created_at.to_pydatetime(),
    )
    return baselines, outcomes


class EndpointServer:
    """The real endpoint app on uvicorn in a thread, on a loopback port (``port``, else a free one),
    serving the registry's models (``provider``) and ``forecast_provider``'s forecasts (default: none).
    A context manager, or :meth:`start` / :meth:`stop`."""

    def __init__(self, settings: Settings, port: int | None = None, *, forecast_provider: Any = None) -> None:
        from bikeshare.lake.store import Lake

        self.provider = registry_provider(settings, Resources.build(settings).registry)
        self._endpoint = ThreadedEndpoint(
            settings, self.provider, Lake.open(settings.lake_uri), port=port, forecast_provider=forecast_provider
        )
        self.port = self._endpoint.port
        self.url = self._endpoint.url

    def start(self) -> EndpointServer:
        self._endpoint.start()
        return self

    def stop(self) -> None:
        self._endpoint.stop()

    def __enter__(self) -> EndpointServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
