"""Registry commands: the promotion gate, rollback, and the registered model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikeshare.cli.app import app, city_of, each_city, registry_failure, resources_of
from bikeshare.cli.options import NoteOpt, TargetOpt, ToAliasOpt
from bikeshare.enums import Alias, Target


@app.command()
@each_city
def promote(
    ctx: typer.Context,
    target: TargetOpt,
    to: ToAliasOpt,
    note: NoteOpt,
    version: Annotated[
        str | None,
        typer.Option(help="Model version; default: the staging holder for --to production, else the latest."),
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who promotes; default: the OS user.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Move the alias even if checks fail (e.g. staging's online hours); recorded as 'forced'."
        ),
    ] = False,
) -> None:
    """Run the gate on a model version and move the alias if it passes (exit 1 when refused).

    --to production also needs staging's online quality: staging_min_online_hours of joined
    predictions meeting the KPIs and no worse than production's over the same hours.
    """
    from bikeshare.registry.client import ModelNotFoundError, RegistryUnavailable
    from bikeshare.registry.promotion import PromotionError, lake_window_evaluator
    from bikeshare.registry.promotion import promote as run_promotion

    if force and not note.strip():
        raise typer.BadParameter("--force needs a --note saying why the gate is overridden", param_hint="--note")
    city = city_of(ctx)
    lake, settings = city.lake.lake, city.settings
    try:
        outcome = run_promotion(
            client=city.registry(),
            lake=lake,
            settings=settings,
            target=target.value,
            alias=to.value,
            note=note,
            version=version,
            actor=actor,
            evaluator=lake_window_evaluator(lake=lake, settings=settings),
            force=force,
        )
    except (RegistryUnavailable, ModelNotFoundError, PromotionError, FileNotFoundError, ValueError) as exc:
        raise registry_failure(exc) from exc
    typer.echo(outcome.message)
    if outcome.verdict is not None and not outcome.verdict.passed and not outcome.moved:
        raise typer.Exit(code=1)


@app.command()
@each_city
def rollback(
    ctx: typer.Context,
    target: TargetOpt,
    to: Annotated[Alias, typer.Option("--to", help="Alias to move back: staging | production.")],
    note: Annotated[str, typer.Option(help="Why: kept in the audit history.")] = "",
    actor: Annotated[str | None, typer.Option(help="Who rolls back; default: the OS user.")] = None,
) -> None:
    """Move an alias back to its previous holder, as the audit history records it."""
    from bikeshare.registry.client import ModelNotFoundError, RegistryUnavailable
    from bikeshare.registry.promotion import PromotionError
    from bikeshare.registry.promotion import rollback as run_rollback

    city = city_of(ctx)
    try:
        outcome = run_rollback(
            client=city.registry(), lake=city.lake.lake, settings=city.settings, target=target.value,
            alias=to.value, note=note, actor=actor,
        )  # fmt: skip
    except (RegistryUnavailable, ModelNotFoundError, PromotionError, ValueError) as exc:
        raise registry_failure(exc) from exc
    typer.echo(outcome.message)


models_app = typer.Typer(no_args_is_help=True, help="Registered model versions and their promotion history.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(ctx: typer.Context, target: TargetOpt = Target.BIKES) -> None:
    """Versions of bikeshare-<city>-<target>: aliases, test PR-AUC (all / onsets) and gate verdicts."""
    from bikeshare.registry.client import ModelNotFoundError, RegistryUnavailable
    from bikeshare.registry.promotion import version_table

    resources = resources_of(ctx)
    try:
        frame = version_table(resources.registry(), settings=resources.settings, target=target.value)
    except (RegistryUnavailable, ModelNotFoundError) as exc:
        raise registry_failure(exc) from exc
    typer.echo(frame.to_string(index=False) if len(frame) else "(no versions)")


@models_app.command("history")
def models_history(
    ctx: typer.Context,
    target: Annotated[Target | None, typer.Option(help="Only this target.")] = None,
) -> None:
    """The promotion audit (the lake's `promotions` table), oldest first."""
    from bikeshare.registry.audit import read_events

    city = city_of(ctx)
    name = city.model_name(target.value) if target else None
    frame = read_events(city.lake.lake, city=city.key, model_name=name)
    columns = ["at", "actor", "model_name", "version", "alias", "action", "previous_version", "verdict", "note"]
    typer.echo(frame[columns].to_string(index=False) if len(frame) else "(no promotions recorded)")


@models_app.command("export")
def models_export(
    ctx: typer.Context,
    dest: Annotated[Path, typer.Argument(help="Folder to write <target>/ bundles into (e.g. for /opt/ml/model).")],
    alias: Annotated[
        Alias, typer.Option(help="Alias whose versions to export: staging | production.")
    ] = Alias.PRODUCTION,
) -> None:
    """Write the bundles that hold an alias (bikes and docks) as a model folder `bikeshare serve --model-dir` reads."""
    from bikeshare.registry.client import ModelNotFoundError, RegistryUnavailable
    from bikeshare.serving.models import export_alias

    resources = resources_of(ctx)
    try:
        written = export_alias(resources.registry(), settings=resources.settings, alias=alias.value, dest=dest)
    except (RegistryUnavailable, ModelNotFoundError) as exc:
        raise registry_failure(exc) from exc
    for target, record in written.items():
        typer.echo(f"{dest / target}: {record['name']} v{record['version']} ({alias.value})")
