"""Opening the MLflow tracking/registry store and finding registered model versions.

Everything here takes an ``MlflowClient`` (built once by :func:`open_client`) rather than using
MLflow's process-wide tracking URI, so two stores can live in one process.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bikeshare.enums import ALIAS_NAMES
from bikeshare.training.bundle import ModelBundle

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from bikeshare.settings import Settings

ALIASES: tuple[str, ...] = ALIAS_NAMES  # the public name importers use
BUNDLE_ARTIFACT = "bundle"  # name of the bundle folder among the pyfunc model's artifacts


class RegistryUnavailable(RuntimeError):  # noqa: N818 - the name callers know
    """The tracking/registry store at ``uri`` could not be reached or opened."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(redact(f"MLflow registry at {uri} is unavailable: {reason}"))
        self.uri = uri


class ModelNotFoundError(LookupError):
    """A registered model, version or alias does not exist."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version, as serving and promotion need it."""

    name: str
    version: str
    run_id: str
    alias: str | None
    source: str
    model_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``, what ``mlflow models serve -m`` takes."""
        return f"models:/{self.name}/{self.version}"


def model_name(city: str, target: str) -> str:
    """Registered model name: ``bikeshare-<city>-<target>``."""
    return f"bikeshare-{city}-{target}"


def experiment_name(city: str, target: str) -> str:
    """One experiment per city and target, named like the registered model."""
    return model_name(city, target)


def mlflow_environment(settings: Settings) -> dict[str, str]:
    """Environment MLflow reads: no telemetry, no env-var recording, bounded HTTP retries."""
    return {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING": "false",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.mlflow_http_max_retries),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.mlflow_http_timeout_s),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }


def open_client(settings: Settings) -> MlflowClient:
    """An ``MlflowClient`` for ``settings.tracking_uri`` (registry on the same store), checked reachable.

    Raises :class:`RegistryUnavailable` naming the URI when the store cannot be opened. The MLflow
    environment (:func:`mlflow_environment`) is set once per process by ``Resources.build``.
    """
    uri = redact(settings.tracking_uri)
    if uri.startswith("sqlite:///"):
        try:
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryUnavailable(uri, f"cannot create its folder ({exc})") from exc
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    with reachable(uri):
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


def uri_of(client: MlflowClient) -> str:
    """The store a client talks to (tracking and registry share it), without credentials."""
    return redact(str(client.tracking_uri))


def redact(text: str) -> str:
    """Replace any ``user:password@`` after a URI scheme, so messages never carry secrets."""
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)


@contextmanager
def reachable(uri: str) -> Iterator[None]:
    """Turn connection-level failures inside the block into :class:`RegistryUnavailable`."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"):
            raise
        raise RegistryUnavailable(uri, _first_line(exc)) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise RegistryUnavailable(uri, _first_line(exc)) from exc
    except Exception as exc:
        # SQLAlchemy/requests errors surface as their own types; anything else from the store
        # layer during a registry call is a store problem, not a caller bug.
        module = type(exc).__module__
        if module.startswith(("sqlalchemy", "requests", "urllib3")):
            raise RegistryUnavailable(uri, _first_line(exc)) from exc
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _info(version: ModelVersion, alias: str | None) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id or "",
        alias=alias,
        source=version.source,
        model_id=getattr(version, "model_id", None),
        tags=dict(version.tags or {}),
    )


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def resolve_alias(client: MlflowClient, name: str, alias: str) -> ModelVersionInfo:
    """The version an alias points at; :class:`ModelNotFoundError` when the model or alias is absent."""
    from mlflow.exceptions import MlflowException

    uri = uri_of(client)
    try:
        with reachable(uri):
            version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _missing(exc) or exc.error_code == "INVALID_PARAMETER_VALUE":
            raise ModelNotFoundError(f"model {name!r} has no alias {alias!r} in {uri}") from exc
        raise
    return _info(version, alias)


def alias_holder(client: MlflowClient, name: str, alias: str) -> ModelVersionInfo | None:
    """Like :func:`resolve_alias` but ``None`` when nobody holds the alias yet."""
    try:
        return resolve_alias(client, name, alias)
    except ModelNotFoundError:
        return None


def get_version(client: MlflowClient, name: str, version: str) -> ModelVersionInfo:
    """One version by number; :class:`ModelNotFoundError` when absent."""
    from mlflow.exceptions import MlflowException

    if not str(version).isdigit():
        raise ValueError(f"model version must be a positive integer, got {version!r}")
    uri = uri_of(client)
    try:
        with reachable(uri):
            found = client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _missing(exc):
            raise ModelNotFoundError(f"model {name!r} has no version {version} in {uri}") from exc
        raise
    aliases = list(getattr(found, "aliases", []) or [])
    return _info(found, aliases[0] if aliases else None)


def list_versions(client: MlflowClient, name: str) -> list[ModelVersionInfo]:
    """Every version of a registered model, newest first; ``alias`` lists the aliases it holds."""
    from mlflow.exceptions import MlflowException

    uri = uri_of(client)
    try:
        with reachable(uri):
            registered = client.get_registered_model(name)
            found = client.search_model_versions(f"name = '{_quote(name)}'")
    except MlflowException as exc:
        if _missing(exc):
            return []
        raise
    held: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        held.setdefault(str(version), []).append(alias)
    out = [_info(version, ",".join(sorted(held.get(str(version.version), []))) or None) for version in found]
    return sorted(out, key=lambda v: int(v.version), reverse=True)


def latest_version(client: MlflowClient, name: str) -> ModelVersionInfo:
    """The highest version number of a registered model."""
    versions = list_versions(client, name)
    if not versions:
        raise ModelNotFoundError(f"no version of model {name!r} is registered in {uri_of(client)}; train one first")
    return versions[0]


def _quote(value: str) -> str:
    return value.replace("'", "''")


def download_model(client: MlflowClient, info: ModelVersionInfo, dest: Path) -> Path:
    """Download a version's whole MLflow model folder into ``dest`` (created; must not exist)."""
    from mlflow.artifacts import download_artifacts

    uri = uri_of(client)
    with reachable(uri):
        location = client.get_model_version_download_uri(info.name, info.version)
        dest.mkdir(parents=True, exist_ok=False)
        local = download_artifacts(artifact_uri=location, dst_path=str(dest), tracking_uri=uri)
    return Path(local)


def load_bundle(
    client: MlflowClient, name: str, alias_or_version: str, dest_dir: Path, *, num_threads: int = 1
) -> tuple[ModelBundle, ModelVersionInfo]:
    """Resolve an alias (or a version number), download its bundle folder and load it.

    The bundle lands in ``dest_dir/<name>/v<version>``; a complete earlier download of the same
    version is reused (registered versions are immutable).
    """
    if str(alias_or_version).isdigit():
        info = get_version(client, name, str(alias_or_version))
    else:
        info = resolve_alias(client, name, alias_or_version)
    target = dest_dir / name / f"v{info.version}"
    if not (target / "bundle.json").is_file():
        dest_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_dir))
        try:
            model_dir = download_model(client, info, scratch / "model")
            bundle_dir = model_dir / "artifacts" / BUNDLE_ARTIFACT
            if not (bundle_dir / "bundle.json").is_file():
                raise ModelNotFoundError(f"{info.uri} holds no bundle folder (artifacts/{BUNDLE_ARTIFACT}/bundle.json)")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # an incomplete earlier download
                shutil.rmtree(target)
            staged = target.parent / f".{target.name}.{uuid.uuid4().hex}"
            shutil.move(str(bundle_dir), staged)
            staged.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return ModelBundle.load(target, num_threads=num_threads), info
