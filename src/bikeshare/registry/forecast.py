"""The multi-horizon forecast model in the registry: log, gate per horizon, promote, load.

``bikeshare-<city>-forecast`` is logged through the same adapter as the 30-minute models
(:func:`bikeshare.registry.tracking.log_training_run`, a models-from-code pyfunc) and takes the
same ``staging``/``production`` aliases. Its gate is a list of named checks per horizon
(``beats_persistence_all@60`` ...), pure functions of the logged :class:`ForecastReport`; the verdict
is recorded like the 30-minute gate's (audit row in the lake plus version tags).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bikeshare.registry.audit import MOVES_ALIAS, Action
from bikeshare.registry.client import (
    ALIASES,
    ModelNotFoundError,
    ModelVersionInfo,
    alias_holder,
    download_model,
    get_version,
    latest_version,
    model_name,
    reachable,
    resolve_alias,
    uri_of,
)
from bikeshare.registry.gate import CheckResult, GateVerdict
from bikeshare.registry.tracking import REPORT_ARTIFACT, LoggedRun, log_training_run
from bikeshare.training.forecast import FORECAST_TARGETS, ForecastReport
from bikeshare.training.forecast_bundle import FORECAST_FILE, ForecastBundle

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from bikeshare.lake.store import Lake
    from bikeshare.settings import Settings
    from bikeshare.training.forecast import ForecastTrainingResult

FORECAST_TARGET = "forecast"
ForecastCheck = Callable[[ForecastReport], list[CheckResult]]


def forecast_model_name(city: str) -> str:
    """``bikeshare-<city>-forecast``."""
    return model_name(city, FORECAST_TARGET)


def log_forecast_run(
    *,
    client: MlflowClient,
    result: ForecastTrainingResult,
    settings: Settings,
    input_example: pd.DataFrame | None = None,
    register: bool = True,
) -> LoggedRun:
    """Log and register a forecast training run (see :func:`log_training_run`)."""
    return log_training_run(
        client=client, result=result, settings=settings, input_example=input_example, register=register
    )


def load_forecast_report(client: MlflowClient, run_id: str) -> ForecastReport:
    """The :class:`ForecastReport` a forecast run logged."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="bikeshare-report-") as tmp:
        try:
            with reachable(uri_of(client)):
                local = client.download_artifacts(run_id, REPORT_ARTIFACT, tmp)
        except (MlflowException, FileNotFoundError) as exc:
            raise FileNotFoundError(f"run {run_id} has no readable {REPORT_ARTIFACT}: {exc}") from exc
        payload = json.loads(Path(local).read_text())
    if payload.get("kind") != "forecast":
        raise ValueError(f"run {run_id} logged a 30-minute report, not a forecast report")
    return ForecastReport.from_dict(payload)


# --- gate -----------------------------------------------------------------------------------


def _beats(value: float, baseline: float) -> bool:
    return math.isfinite(value) and (not math.isfinite(baseline) or value > baseline)


def _pr_auc_check(report: ForecastReport, h: int, slice_name: str) -> CheckResult:
    m = report.horizons[h]
    parts, ok = [], True
    for target in FORECAST_TARGETS:
        comp = m.targets[target][slice_name]
        good = _beats(comp.model.pr_auc, comp.baseline.pr_auc)
        ok = ok and good
        parts.append(f"{target} {comp.model.pr_auc:.4f} {'>' if good else '<='} {comp.baseline.pr_auc:.4f}")
    what = "PR-AUC" if slice_name == "all" else "onset PR-AUC"
    return CheckResult(f"beats_persistence_{slice_name}@{h}", ok, f"{what} model vs persistence: " + "; ".join(parts))


def _mae_check(report: ForecastReport, h: int) -> CheckResult:
    m = report.horizons[h]
    ok = math.isfinite(m.mae_model) and m.mae_model <= m.mae_persistence
    return CheckResult(
        f"mae_vs_persistence@{h}",
        ok,
        f"MAE of bikes {m.mae_model:.3f} {'<=' if ok else '>'} persistence {m.mae_persistence:.3f}",
        m.mae_model,
        m.mae_persistence,
    )


def forecast_gate(report: ForecastReport, *, horizons: Sequence[int]) -> GateVerdict:
    """Per horizon: PR-AUC overall and on onsets above persistence's for both targets, MAE at most persistence's.

    A configured horizon the report lacks fails its ``evaluated@<h>`` check.
    """
    checks: list[CheckResult] = []
    for h in sorted({int(x) for x in horizons}):
        if h not in report.horizons:
            checks.append(CheckResult(f"evaluated@{h}", False, f"the report has no evaluation at {h} min"))
            continue
        checks.append(_pr_auc_check(report, h, "all"))
        checks.append(_pr_auc_check(report, h, "onsets"))
        checks.append(_mae_check(report, h))
    return GateVerdict(tuple(checks))


@dataclass(frozen=True)
class ForecastPromotion:
    model_name: str
    alias: str
    version: str
    previous_version: str | None
    action: Action | None  # None: the version already holds the alias
    verdict: GateVerdict | None
    message: str

    @property
    def moved(self) -> bool:
        return self.action in MOVES_ALIAS


def promote_forecast(
    *,
    client: MlflowClient,
    lake: Lake,
    settings: Settings,
    alias: str,
    note: str,
    version: str | None = None,
    actor: str | None = None,
    force: bool = False,
) -> ForecastPromotion:
    """Gate ``version`` (default: the latest) of the forecast model for ``alias``; move the alias when it passes.

    The verdict is recorded either way: an audit row (``promotions`` table, target ``forecast``) and
    ``bikeshare.audit.<alias>.*`` tags on the version. ``force`` moves a failing version (``forced``).
    """
    from bikeshare.registry.promotion import record_verdict

    if alias not in ALIASES:
        raise ValueError(f"alias must be one of {', '.join(ALIASES)}, got {alias!r}")
    name = forecast_model_name(settings.city)
    candidate = get_version(client, name, version) if version else latest_version(client, name)
    holder = alias_holder(client, name, alias)
    if holder is not None and holder.version == candidate.version:
        return ForecastPromotion(
            name, alias, candidate.version, holder.version, None, None,
            f"{name} v{candidate.version} already holds {alias!r}; nothing to do",
        )  # fmt: skip
    report = load_forecast_report(client, candidate.run_id)
    verdict = forecast_gate(report, horizons=settings.forecast_horizons_min)
    action, _ = record_verdict(
        client=client, lake=lake, settings=settings, name=name, target=FORECAST_TARGET, alias=alias,
        candidate=candidate, holder=holder, verdict=verdict, force=force, note=note, actor=actor,
    )  # fmt: skip
    head = {
        Action.PROMOTE: f"promoted {name} v{candidate.version} to {alias!r}",
        Action.FORCED: f"FORCED {name} v{candidate.version} to {alias!r} despite failed checks",
        Action.REFUSED: f"refused {name} v{candidate.version} for {alias!r}",
    }[action]
    failed = "; ".join(c.name for c in verdict.failed)
    message = head + (f" (failed: {failed})" if failed else "")
    return ForecastPromotion(
        name, alias, candidate.version, holder.version if holder else None, action, verdict, message
    )


# --- loading --------------------------------------------------------------------------------


def load_forecast_bundle(
    client: MlflowClient, settings: Settings, alias_or_version: str, dest_dir: Path, *, num_threads: int = 1
) -> tuple[ForecastBundle, ModelVersionInfo]:
    """Resolve an alias (or version) of the forecast model, download its bundle once and load it.

    :class:`ModelNotFoundError` names the model and alias when nothing is registered.
    """
    from bikeshare.registry.client import BUNDLE_ARTIFACT

    name = forecast_model_name(settings.city)
    if str(alias_or_version).isdigit():
        info = get_version(client, name, str(alias_or_version))
    else:
        info = resolve_alias(client, name, alias_or_version)
    target = dest_dir / name / f"v{info.version}"
    if not (target / FORECAST_FILE).is_file():
        dest_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_dir))
        try:
            model_dir = download_model(client, info, scratch / "model")
            bundle_dir = model_dir / "artifacts" / BUNDLE_ARTIFACT
            if not (bundle_dir / FORECAST_FILE).is_file():
                raise ModelNotFoundError(
                    f"{info.uri} holds no forecast bundle (artifacts/{BUNDLE_ARTIFACT}/{FORECAST_FILE})"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            staged = target.parent / f".{target.name}.{uuid.uuid4().hex}"
            shutil.move(str(bundle_dir), staged)
            staged.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return ForecastBundle.load(target, num_threads=num_threads), info
