"""Model commands: the feature store, training the 30-minute models, the multi-horizon forecast model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bikeshare.cli.app import app, city_of, each_city, parse_time, registry_failure, window_options
from bikeshare.cli.options import ArtifactsOpt, EndOpt, NoteOpt, StartOpt, TargetOpt, TestStartOpt, ToAliasOpt

if TYPE_CHECKING:
    import pandas as pd

    from bikeshare.resources import CityContext

NO_FEATURES = "no feature rows in the lake for this window: run `bikeshare features build` first"

features_app = typer.Typer(no_args_is_help=True, help="The feature store: build the features table, EDA report.")
app.add_typer(features_app, name="features")


def _stored_features(ctx: typer.Context, start: str | None, end: str | None) -> tuple[CityContext, pd.DataFrame]:
    """The city and its stored features in the ``--start``/``--end`` window; a clear error when there are none."""
    from bikeshare.features.build import load_features

    city = city_of(ctx)
    start_ts, end_ts = window_options(start, end)
    frame = load_features(lake=city.lake.lake, city=city.key, start=start_ts, end=end_ts)
    if frame.empty:
        raise typer.BadParameter(NO_FEATURES)
    return city, frame


@features_app.command("build")
@each_city
def features_build(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option(help="First day (UTC ISO); default: the lake's first status.")] = None,
    end: Annotated[str | None, typer.Option(help="Last day (UTC ISO, inclusive); default: the last status.")] = None,
) -> None:
    """Compute features and labels into features/city=<city>/dt=YYYY-MM-DD/ (a rebuilt day replaces the old)."""
    import time

    from bikeshare.features.build import status_span, write_features

    city = city_of(ctx)
    lake = city.lake.lake
    start_ts, end_ts = window_options(start, end)
    started = time.perf_counter()
    try:
        first, last = status_span(lake=lake, city=city.key)
        written = write_features(lake=lake, start=start_ts or first, end=end_ts or last, settings=city.settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    elapsed = time.perf_counter() - started
    span = f"{written[0]}..{written[-1]}" if written else "none"
    typer.echo(f"features: {len(written)} day partitions written ({span}) in {elapsed:.1f} s")


@features_app.command("report")
def features_report(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for report.md and its PNG plots.")] = Path("reports/features"),
    start: Annotated[str | None, typer.Option(help="First slot (UTC ISO); default: all stored features.")] = None,
    end: Annotated[str | None, typer.Option(help="Last slot (UTC ISO).")] = None,
) -> None:
    """EDA report of the features table: distributions, correlations, label rates, leakage check."""
    from bikeshare.features.report import write_report

    city, frame = _stored_features(ctx, start, end)
    path = write_report(frame, out=out, lake=city.lake.lake, settings=city.settings)
    typer.echo(f"report written to {path}")


@app.command()
@each_city
def train(
    ctx: typer.Context,
    target: TargetOpt,
    algo: Annotated[str, typer.Option(help="lightgbm | xgboost")] = "lightgbm",
    start: StartOpt = None,
    end: EndOpt = None,
    test_start: Annotated[
        str | None, typer.Option(help="First test slot (UTC ISO); default: the last test_fraction of the span.")
    ] = None,
    out: ArtifactsOpt = None,
    log: Annotated[bool, typer.Option(help="Log the run to MLflow and register the model.")] = True,
) -> None:
    """Train, calibrate and evaluate a model against persistence; log and register it in MLflow."""
    from bikeshare.registry.candidate import Candidate, register_candidate
    from bikeshare.registry.client import RegistryUnavailable
    from bikeshare.training.models import ALGOS
    from bikeshare.training.train import train_model

    if algo not in ALGOS:
        raise typer.BadParameter(f"{algo!r} is not one of {', '.join(ALGOS)}", param_hint="--algo")
    city, frame = _stored_features(ctx, start, end)
    settings = city.settings
    test_ts = parse_time(test_start)
    candidate: Candidate | None = None
    try:
        if log:  # train -> log and register -> tag -> baselines, as the pipeline and the drills do
            candidate = register_candidate(
                frame, target=target.value, lake=city.lake.lake, client=city.registry(), settings=settings,
                algo=algo, test_start=test_ts, artifacts_dir=out,
            )  # fmt: skip
            result = candidate.result
        else:
            result = train_model(
                frame, target=target.value, settings=settings, algo=algo, test_start=test_ts, artifacts_dir=out
            )
    except RegistryUnavailable as exc:
        raise registry_failure(exc) from exc
    except ValueError as exc:  # CandidateTrainingError is one
        raise typer.BadParameter(str(exc)) from exc
    for name, s in result.report.slices.items():
        typer.echo(
            f"{name:<10} model PR-AUC {s.model.pr_auc:.4f}  persistence {s.baseline.pr_auc:.4f}  "
            f"lift {s.pr_auc_lift:+.4f}  F1 {s.model.f1:.3f} vs {s.baseline.f1:.3f}  rows {s.model.rows:,}"
        )
    gap = result.report.overfit_gap
    typer.echo(
        f"threshold {result.report.decision_threshold:.4f}; train-validation PR-AUC gap {gap:.4f} "
        f"({'ok' if result.overfit_ok else 'OVERFIT'}; limit {settings.max_overfit_gap}); "
        f"artifacts in {result.artifacts['model_card'].parent}"
    )
    if candidate is None:
        return
    typer.echo(f"logged run {candidate.run_id}; registered version {candidate.version}")
    typer.echo(
        f"drift baselines of {candidate.baselines.features} columns stored with version {candidate.version} "
        f"(lake feature_baselines; run artifact {candidate.baselines.artifact})"
    )


forecast_app = typer.Typer(no_args_is_help=True, help="The multi-horizon forecast model: train, gate, promote.")
app.add_typer(forecast_app, name="forecast")


@forecast_app.command("train")
@each_city
def forecast_train(
    ctx: typer.Context,
    start: StartOpt = None,
    end: EndOpt = None,
    test_start: TestStartOpt = None,
    out: ArtifactsOpt = None,
    log: Annotated[bool, typer.Option(help="Log the run to MLflow and register bikeshare-<city>-forecast.")] = True,
) -> None:
    """Train the forecast family (horizon as a feature) and print its per-horizon evaluation against persistence."""
    from bikeshare.registry.forecast import forecast_gate
    from bikeshare.training.forecast import train_forecast

    city, frame = _stored_features(ctx, start, end)
    settings = city.settings
    test_ts = parse_time(test_start)
    try:
        result = train_forecast(frame, settings=settings, test_start=test_ts, artifacts_dir=out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(result.report.table())
    verdict = forecast_gate(result.report, horizons=settings.forecast_horizons_min)
    typer.echo(f"gate: {'pass' if verdict.passed else 'FAIL ' + ', '.join(c.name for c in verdict.failed)}")
    if log:
        from bikeshare.registry.client import RegistryUnavailable
        from bikeshare.registry.forecast import log_forecast_run

        try:
            logged = log_forecast_run(
                client=city.registry(), result=result, settings=settings, input_example=frame.head(5)
            )
        except RegistryUnavailable as exc:
            raise registry_failure(exc) from exc
        typer.echo(
            f"logged run {logged.run_id}; registered version {logged.version.version if logged.version else '-'}"
        )


@forecast_app.command("promote")
@each_city
def forecast_promote(
    ctx: typer.Context,
    to: ToAliasOpt,
    note: NoteOpt,
    version: Annotated[str | None, typer.Option(help="Model version; default: the latest.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Move the alias even if checks fail ('forced').")] = False,
) -> None:
    """Gate the forecast model per horizon (vs persistence) and move the alias if it passes (exit 1 if refused)."""
    from bikeshare.registry.client import ModelNotFoundError, RegistryUnavailable
    from bikeshare.registry.forecast import promote_forecast

    city = city_of(ctx)
    try:
        outcome = promote_forecast(
            client=city.registry(),
            lake=city.lake.lake,
            settings=city.settings,
            alias=to.value,
            note=note,
            version=version,
            force=force,
        )
    except (RegistryUnavailable, ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        raise registry_failure(exc) from exc
    if outcome.verdict is not None:
        typer.echo(outcome.verdict.explain())
    typer.echo(outcome.message)
    if outcome.verdict is not None and not outcome.verdict.passed and not outcome.moved:
        raise typer.Exit(code=1)
