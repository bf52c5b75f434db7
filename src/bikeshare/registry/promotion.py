"""Promotion and rollback: the gate's adapter to MLflow aliases, the lake audit and version tags.

The decision itself is :func:`bikeshare.registry.gate.run_gate`, a pure function of reports. This
module gathers its inputs (the candidate's logged report, the current holder scored on the same
test window by an injected evaluator), then records the verdict and moves the alias.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bikeshare.registry.audit import (
    MOVES_ALIAS,
    Action,
    AuditEvent,
    append_event,
    current_actor,
    holder_stack,
    previous_holder,
    read_events,
)
from bikeshare.registry.client import (
    ALIASES,
    ModelVersionInfo,
    RegistryUnavailable,
    alias_holder,
    get_version,
    latest_version,
    list_versions,
    load_bundle,
    model_name,
    reachable,
    uri_of,
)
from bikeshare.registry.gate import Check, GateInput, GateVerdict, run_gate
from bikeshare.registry.online import OnlineQuality, online_quality
from bikeshare.registry.tracking import TAG_PREFIX, load_report
from bikeshare.training.bundle import ModelBundle
from bikeshare.training.report import EvaluationReport

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings

# Scores a bundle on the rows of a candidate's test window (training's evaluate_bundle over the
# features of report.window_start..window_end).
HolderEvaluator = Callable[[ModelBundle, EvaluationReport], EvaluationReport]


class PromotionError(RuntimeError):
    """A promotion or rollback that cannot be carried out as asked (nothing was changed)."""


@dataclass(frozen=True)
class PromotionOutcome:
    model_name: str
    alias: str
    version: str
    previous_version: str | None
    action: Action | None  # None: nothing to do (the version already holds the alias)
    verdict: GateVerdict | None
    event: AuditEvent | None
    message: str

    @property
    def moved(self) -> bool:
        return self.action in MOVES_ALIAS or self.action == Action.ROLLBACK


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise ValueError(f"alias must be one of {', '.join(ALIASES)}, got {alias!r}")


def promote(
    *,
    client: MlflowClient,
    lake: Lake,
    settings: Settings,
    target: str,
    alias: str,
    note: str,
    evaluator: HolderEvaluator | None,
    version: str | None = None,
    actor: str | None = None,
    force: bool = False,
    checks: Sequence[Check] | None = None,
) -> PromotionOutcome:
    """Gate ``version`` of ``bikeshare-<city>-<target>`` for ``alias`` (default: :func:`default_candidate`).

    The verdict is recorded either way (audit row + version tags). A passing version takes the
    alias; a failing one does not, unless ``force`` (recorded as ``forced``). Promotion to
    ``production`` also checks staging's online quality (``staging_min_online_hours`` > 0).
    """
    _check_alias(alias)
    name = model_name(settings.city, target)
    candidate = get_version(client, name, version) if version else default_candidate(client, name, alias)
    holder = alias_holder(client, name, alias)
    if holder is not None and holder.version == candidate.version:
        return PromotionOutcome(
            name, alias, candidate.version, holder.version, None, None, None,
            f"{name} v{candidate.version} already holds {alias!r}; nothing to do",
        )  # fmt: skip
    report = load_report(client, candidate.run_id)
    holder_report, holder_error = (None, None) if holder is None else _score_holder(client, holder, report, evaluator)
    admission = alias == "production" and settings.staging_min_online_hours > 0
    online, online_holder, online_error = (
        _online_inputs(lake, settings, name, candidate.version, holder) if admission else (None, None, None)
    )
    verdict = run_gate(
        GateInput(
            candidate=report,
            alias=alias,
            kpi_min_pr_auc=settings.kpi_min_pr_auc,
            kpi_min_f1=settings.kpi_min_f1,
            max_overfit_gap=settings.max_overfit_gap,
            max_holder_drop=settings.gate_max_holder_drop,
            candidate_version=candidate.version,
            holder_version=holder.version if holder else None,
            holder=holder_report,
            holder_error=holder_error,
            min_online_hours=settings.staging_min_online_hours if admission else 0.0,
            online=online,
            online_holder=online_holder,
            online_error=online_error,
        ),
        checks,
    )
    action, event = record_verdict(
        client=client, lake=lake, settings=settings, name=name, target=target, alias=alias,
        candidate=candidate, holder=holder, verdict=verdict, force=force, note=note, actor=actor,
    )  # fmt: skip
    return PromotionOutcome(name, alias, candidate.version, event.previous_version, action, verdict, event,
                            _promotion_message(event, verdict))  # fmt: skip


def record_verdict(
    *,
    client: MlflowClient,
    lake: Lake,
    settings: Settings,
    name: str,
    target: str,
    alias: str,
    candidate: ModelVersionInfo,
    holder: ModelVersionInfo | None,
    verdict: GateVerdict,
    force: bool,
    note: str,
    actor: str | None,
) -> tuple[Action, AuditEvent]:
    """Record a gate verdict (version tags + audit row); move ``alias`` when it passed or is forced."""
    action = Action.PROMOTE if verdict.passed else Action.FORCED if force else Action.REFUSED
    event = AuditEvent.new(
        actor=current_actor(actor),
        model_name=name,
        target=target,
        version=candidate.version,
        alias=alias,
        action=action.value,
        previous_version=holder.version if holder else None,
        verdict="pass" if verdict.passed else "fail",
        checks=verdict.to_json(),
        note=note,
        run_id=candidate.run_id,
    )
    _tag_version(client, name, candidate.version, alias, _verdict_tags(event))
    if action in MOVES_ALIAS:
        _move_and_record(client, lake, settings, event, back_to=holder.version if holder else None)
    else:
        append_event(lake, event, city=settings.city)
    _tag_version(client, name, candidate.version, alias, _action_tags(event))
    return action, event


def default_candidate(client: MlflowClient, name: str, alias: str) -> ModelVersionInfo:
    """The version promoted when none is named: staging's holder for production, else the latest registered."""
    if alias == "production":
        staged = alias_holder(client, name, "staging")
        if staged is not None:
            return staged
    return latest_version(client, name)


def _online_inputs(
    lake: Lake, settings: Settings, name: str, version: str, holder: ModelVersionInfo | None
) -> tuple[OnlineQuality | None, OnlineQuality | None, str | None]:
    """Staging's online quality of ``version`` and production's (``holder``) over the same target times."""
    try:
        online = online_quality(
            lake, city=settings.city, model_name=name, version=version, alias="staging",
            interval_min=settings.infer_interval_min,
        )  # fmt: skip
        if holder is None or holder.version == version:
            return online, None, None
        theirs = online_quality(
            lake, city=settings.city, model_name=name, version=holder.version, alias="production",
            interval_min=settings.infer_interval_min, target_times=online.target_times,
        )  # fmt: skip
    except Exception as exc:  # the gate reports it as failed checks rather than crashing
        return None, None, f"reading the quality table failed: {type(exc).__name__}: {exc}"
    return online, theirs, None


def _score_holder(
    client: MlflowClient, holder: ModelVersionInfo, report: EvaluationReport, evaluator: HolderEvaluator | None
) -> tuple[EvaluationReport | None, str | None]:
    if evaluator is None:
        return None, "no evaluator was given to score it"
    try:
        with tempfile.TemporaryDirectory(prefix="bikeshare-holder-") as tmp:
            bundle, _ = load_bundle(client, holder.name, holder.version, Path(tmp))
            return evaluator(bundle, report), None
    except RegistryUnavailable:
        raise
    except Exception as exc:  # the gate reports it as a failed check rather than crashing
        return None, f"{type(exc).__name__}: {exc}"


def rollback(
    *,
    client: MlflowClient,
    lake: Lake,
    settings: Settings,
    target: str,
    alias: str,
    note: str = "",
    actor: str | None = None,
) -> PromotionOutcome:
    """Move ``alias`` back to the holder before the current one, as the audit history tells it."""
    _check_alias(alias)
    name = model_name(settings.city, target)
    stack = holder_stack(read_events(lake, city=settings.city, model_name=name, alias=alias))
    if not stack:
        raise PromotionError(f"no promotion of {name} to {alias!r} is recorded in the audit; nothing to roll back")
    holder = alias_holder(client, name, alias)
    if holder is None or holder.version != stack[-1]:
        now = f"v{holder.version}" if holder else "no version"
        raise PromotionError(
            f"{name}@{alias} points to {now} but the audit history says v{stack[-1]}: the alias was moved "
            "outside bikeshare; promote the wanted version explicitly instead"
        )
    back_to = previous_holder(stack)
    if back_to is None:
        raise PromotionError(
            f"v{holder.version} is the first recorded holder of {name}@{alias}; there is no previous one"
        )
    restored = get_version(client, name, back_to)
    event = AuditEvent.new(
        actor=current_actor(actor),
        model_name=name,
        target=target,
        version=restored.version,
        alias=alias,
        action=Action.ROLLBACK.value,
        previous_version=holder.version,
        verdict="none",
        checks="[]",
        note=note,
        run_id=restored.run_id,
    )
    _move_and_record(client, lake, settings, event, back_to=holder.version)
    _tag_version(client, name, restored.version, alias, _action_tags(event))
    _tag_version(client, name, holder.version, alias, {"rolled_back_at": event.at.isoformat()})
    return PromotionOutcome(
        name, alias, restored.version, holder.version, Action.ROLLBACK, None, event,
        f"{name}@{alias}: rolled back from v{holder.version} to v{restored.version}",
    )  # fmt: skip


def _move_and_record(
    client: MlflowClient, lake: Lake, settings: Settings, event: AuditEvent, *, back_to: str | None
) -> None:
    """Point the alias at ``event.version``, then append the audit row; undo the move if that fails."""
    with reachable(uri_of(client)):
        client.set_registered_model_alias(event.model_name, event.alias, event.version)
    try:
        append_event(lake, event, city=settings.city)
    except BaseException:
        with reachable(uri_of(client)):
            if back_to is None:
                client.delete_registered_model_alias(event.model_name, event.alias)
            else:
                client.set_registered_model_alias(event.model_name, event.alias, back_to)
        raise


def _verdict_tags(event: AuditEvent) -> dict[str, str]:
    return {"verdict": event.verdict, "checks": event.checks, "gated_at": event.at.isoformat()}


def _action_tags(event: AuditEvent) -> dict[str, str]:
    return {
        "action": event.action,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "note": event.note,
        "event_id": event.event_id,
    }


def _tag_version(client: MlflowClient, name: str, version: str, alias: str, tags: dict[str, str]) -> None:
    """Mirror audit facts as ``bikeshare.audit.<alias>.<key>`` tags of the version."""
    with reachable(uri_of(client)):
        for key, value in tags.items():
            client.set_model_version_tag(name, version, f"{TAG_PREFIX}audit.{alias}.{key}", value)


def _promotion_message(event: AuditEvent, verdict: GateVerdict) -> str:
    head = {
        Action.PROMOTE.value: f"promoted {event.model_name} v{event.version} to {event.alias!r}",
        Action.FORCED.value: f"FORCED {event.model_name} v{event.version} to {event.alias!r} despite failed checks",
        Action.REFUSED.value: f"refused {event.model_name} v{event.version} for {event.alias!r}",
    }[event.action]
    if event.previous_version:
        head += f" (holder was v{event.previous_version})"
    failed = ", ".join(c.name for c in verdict.failed)
    if failed:
        head += f"; failed checks: {failed}"
    return f"{head}\n{verdict.explain()}"


def version_audit_tags(info: ModelVersionInfo, alias: str) -> dict[str, object]:
    """The ``bikeshare.audit.<alias>.*`` tags of a version, with ``checks`` parsed from JSON."""
    prefix = f"{TAG_PREFIX}audit.{alias}."
    out: dict[str, object] = {k.removeprefix(prefix): v for k, v in info.tags.items() if k.startswith(prefix)}
    if isinstance(out.get("checks"), str):
        out["checks"] = json.loads(str(out["checks"]))
    return out


def lake_window_evaluator(*, lake: Lake, settings: Settings) -> HolderEvaluator:
    """The production :data:`HolderEvaluator`: rebuild the candidate's test-window features from
    the lake and score a bundle on them with training's ``evaluate_bundle``."""

    def evaluate(bundle: ModelBundle, candidate: EvaluationReport) -> EvaluationReport:
        import pandas as pd

        from bikeshare.features.build import build_features
        from bikeshare.training.evaluate import evaluate_bundle

        frame = build_features(
            lake=lake,
            start=pd.Timestamp(candidate.window_start),
            end=pd.Timestamp(candidate.window_end),
            settings=settings,
            with_labels=True,
        )
        if frame.empty:
            raise ValueError(
                f"the lake has no feature rows for the test window {candidate.window_start}..{candidate.window_end}"
            )
        return evaluate_bundle(bundle, frame, settings=settings)

    return evaluate


def version_table(client: MlflowClient, *, settings: Settings, target: str) -> pd.DataFrame:
    """One row per version: aliases, feature version, test PR-AUC (all, onsets) and gate verdicts."""
    import pandas as pd

    name = model_name(settings.city, target)
    rows = []
    for info in list_versions(client, name):
        with reachable(uri_of(client)):
            metrics = client.get_run(info.run_id).data.metrics if info.run_id else {}
        row: dict[str, object] = {
            "version": info.version,
            "aliases": info.alias or "",
            "feature_version": info.tags.get(f"{TAG_PREFIX}feature_version", ""),
            "pr_auc": metrics.get("all_model_pr_auc"),
            "onset_pr_auc": metrics.get("onsets_model_pr_auc"),
            "persistence_pr_auc": metrics.get("all_baseline_pr_auc"),
            "f1": metrics.get("all_model_f1"),
        }
        for alias in ALIASES:
            row[f"{alias}_gate"] = version_audit_tags(info, alias).get("verdict", "")
        rows.append(row)
    return pd.DataFrame(rows)
