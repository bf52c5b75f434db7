"""The models the endpoint serves: both targets per alias, loaded from the registry or a folder.

A :class:`ModelSet` is what answers one request: the bikes and docks bundles of one alias, plus
the precomputed column maps and response fragments. Providers publish a new immutable
:class:`ProviderState` by swapping one reference, after the new bundle is fully loaded, so a
request that already took a set finishes on it and the next request gets the new one: an alias move
never drops or mixes a request.

- :class:`RegistryModelProvider` resolves the ``production`` and ``staging`` aliases of
  ``bikeshare-<city>-bikes|docks`` and polls them every ``serve_model_poll_s`` seconds.
- :class:`FolderModelProvider` reads bundle folders, such as SageMaker's ``/opt/ml/model``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bikeshare.registry.client import (
    ALIASES,
    ModelNotFoundError,
    RegistryUnavailable,
    alias_holder,
    load_bundle,
    model_name,
    redact,
)
from bikeshare.serving.poller import ModelPoller
from bikeshare.training.bundle import BUNDLE_FILE, TARGETS, ModelBundle

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow import MlflowClient

    from bikeshare.settings import Settings

log = logging.getLogger(__name__)

REGISTERED_FILE = "registered.json"  # name/version/alias of an exported bundle folder
MODEL_CACHE_DIR = "serving-models"  # under state_dir: downloaded bundles, one folder per version


@dataclass(frozen=True)
class ServedModel:
    """One loaded bundle and where it came from."""

    target: str
    alias: str
    name: str
    version: str
    bundle: ModelBundle
    source: str
    loaded_at: float  # unix seconds

    @property
    def threshold(self) -> float:
        return float(self.bundle.meta.decision_threshold)


@dataclass(frozen=True)
class ModelSet:
    """Both targets of one alias, ready to score a feature matrix whose columns are ``features``."""

    alias: str
    bikes: ServedModel
    docks: ServedModel
    features: tuple[str, ...]  # union of both bundles' features, bikes' order first
    bikes_columns: np.ndarray | None  # columns of the union matrix for bikes; None: all, in order
    docks_columns: np.ndarray | None
    models_doc: dict[str, Any]  # the response's "models" object
    versions_header: str  # X-Bikeshare-Model-Versions: "bikes=3,docks=2"

    @classmethod
    def build(cls, alias: str, bikes: ServedModel, docks: ServedModel) -> ModelSet:
        for target, model in (("bikes", bikes), ("docks", docks)):
            if model.bundle.meta.target != target:
                raise ValueError(
                    f"{model.name} v{model.version} is a {model.bundle.meta.target!r} bundle, served as {target!r}"
                )
        b_names, d_names = bikes.bundle.meta.feature_names, docks.bundle.meta.feature_names
        features = tuple(b_names) + tuple(n for n in d_names if n not in set(b_names))
        index = {name: i for i, name in enumerate(features)}

        def columns(names: tuple[str, ...]) -> np.ndarray | None:
            if tuple(names) == features:
                return None
            return np.array([index[n] for n in names], dtype=np.intp)

        return cls(
            alias=alias,
            bikes=bikes,
            docks=docks,
            features=features,
            bikes_columns=columns(b_names),
            docks_columns=columns(d_names),
            models_doc={
                m.target: {"name": m.name, "version": m.version, "threshold": m.threshold} for m in (bikes, docks)
            },
            versions_header=f"bikes={bikes.version},docks={docks.version}",
        )

    def score(
        self, matrix: np.ndarray, *, pool: Executor | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities and decisions (bikes, docks) for a matrix whose columns are ``features``.

        With a ``pool``, docks is scored on the pool's thread while bikes is scored on this one
        (the booster's C code runs without the GIL), so a large batch uses two cores.
        """
        xb = matrix if self.bikes_columns is None else np.ascontiguousarray(matrix[:, self.bikes_columns])
        xd = matrix if self.docks_columns is None else np.ascontiguousarray(matrix[:, self.docks_columns])
        if pool is not None:
            docks_future = pool.submit(self.docks.bundle.predict_proba, xd)
            p_bikes = self.bikes.bundle.predict_proba(xb)
            p_docks = docks_future.result()
        else:
            p_bikes = self.bikes.bundle.predict_proba(xb)
            p_docks = self.docks.bundle.predict_proba(xd)
        return p_bikes, p_docks, self.bikes.bundle.decide(p_bikes), self.docks.bundle.decide(p_docks)

    def score_one(self, matrix: np.ndarray, *, target: str) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and decisions of one target (``bikes`` or ``docks``) only."""
        model, columns = (self.bikes, self.bikes_columns) if target == "bikes" else (self.docks, self.docks_columns)
        x = matrix if columns is None else np.ascontiguousarray(matrix[:, columns])
        proba = model.bundle.predict_proba(x)
        return proba, model.bundle.decide(proba)


@dataclass(frozen=True)
class ProviderState:
    """A consistent view of what is loaded; replaced whole, never mutated."""

    source: str  # "registry" or "folder"
    location: str  # registry URI (redacted) or folder path
    models: Mapping[tuple[str, str], ServedModel] = field(default_factory=dict)  # (alias, target) -> model
    sets: Mapping[str, ModelSet] = field(default_factory=dict)  # alias -> both targets loaded
    registry_reachable: bool | None = None  # None: not a registry source
    last_poll_at: float | None = None
    last_error: str | None = None
    swaps: int = 0

    def missing(self, alias: str) -> list[str]:
        """Targets that have no loaded model under ``alias``."""
        return [t for t in TARGETS if (alias, t) not in self.models]


class ModelProvider(Protocol):
    """What the app needs from a model source."""

    def state(self) -> ProviderState: ...

    def current(self, alias: str) -> ModelSet | None: ...

    def start(self) -> None:
        """Begin background work (polling); called when the app starts serving."""
        ...

    def close(self) -> None: ...


def _sets_of(models: Mapping[tuple[str, str], ServedModel]) -> dict[str, ModelSet]:
    sets = {}
    for alias in ALIASES:
        bikes, docks = models.get((alias, "bikes")), models.get((alias, "docks"))
        if bikes is not None and docks is not None:
            sets[alias] = ModelSet.build(alias, bikes, docks)
    return sets


class RegistryModelProvider(ModelPoller):
    """Serves what the registry aliases point at, and follows them when they move.

    :meth:`load` raises :class:`RegistryUnavailable` when the registry cannot be reached: the
    endpoint must not start blind. Afterwards a poll that fails only records the error (shown in
    /healthz and /metrics) and the loaded models keep serving. A version that fails to load is
    logged and skipped; the previous one keeps serving. When ``staging`` is removed its models are
    dropped (canary traffic then stays on production); a vanished ``production`` keeps serving the
    last loaded version, since an endpoint with no model helps nobody.
    """

    def __init__(self, *, settings: Settings, registry: Callable[[], MlflowClient]) -> None:
        """``registry`` gives the process's client (``Resources.registry``: opened once, on first use)."""
        super().__init__(poll_s=settings.serve_model_poll_s)
        self._settings = settings
        self._registry = registry
        self._client: MlflowClient | None = None
        self._cache = settings.state_dir / MODEL_CACHE_DIR
        self._state = ProviderState(source="registry", location=redact(settings.tracking_uri))
        self._lock = threading.Lock()  # one poll at a time (background thread vs. explicit refresh)

    def state(self) -> ProviderState:
        return self._state

    def current(self, alias: str) -> ModelSet | None:
        return self._state.sets.get(alias)

    def load(self) -> ProviderState:
        """First load; raises :class:`RegistryUnavailable` if the registry cannot be reached."""
        if self._client is None:
            self._client = self._registry()
        self._poll(raise_unavailable=True)
        return self._state

    def refresh(self) -> bool:
        """One poll of the aliases; True when a model was swapped. Never raises for a registry outage."""
        before = self._state.swaps
        self._poll(raise_unavailable=False)
        return self._state.swaps != before

    def _poll(self, *, raise_unavailable: bool) -> None:
        if self._client is None:
            raise RuntimeError("call load() before refresh()")
        with self._lock:
            old = self._state
            models = dict(old.models)
            errors: list[str] = []
            swapped = 0
            try:
                for alias in ALIASES:
                    for target in TARGETS:
                        swapped += self._follow(alias, target, models, errors)
            except RegistryUnavailable as exc:
                log.warning("registry unreachable, serving the loaded models: %s", exc)
                self._state = replace(old, registry_reachable=False, last_poll_at=time.time(), last_error=str(exc))
                if raise_unavailable:
                    raise
                return
            self._state = ProviderState(
                source="registry",
                location=old.location,
                models=models,
                sets=_sets_of(models) if swapped else old.sets,
                registry_reachable=True,
                last_poll_at=time.time(),
                last_error="; ".join(errors) or None,
                swaps=old.swaps + swapped,
            )

    def _follow(self, alias: str, target: str, models: dict[tuple[str, str], ServedModel], errors: list[str]) -> int:
        """Bring ``models[(alias, target)]`` in line with the registry; 1 if it changed."""
        assert self._client is not None
        name = model_name(self._settings.city, target)
        loaded = models.get((alias, target))
        holder = alias_holder(self._client, name, alias)
        if holder is None:
            if loaded is not None and alias != "production":
                log.info("alias %s of %s was removed: unloading v%s", alias, name, loaded.version)
                del models[(alias, target)]
                return 1
            if loaded is not None:
                errors.append(f"{name} has no {alias!r} alias any more; still serving v{loaded.version}")
            return 0
        if loaded is not None and loaded.version == holder.version:
            return 0
        try:
            bundle, info = self._download(name, holder.version)
        except RegistryUnavailable:
            raise
        except (ModelNotFoundError, OSError, ValueError) as exc:
            errors.append(f"cannot load {name} v{holder.version} for {alias!r}: {exc}")
            log.error("cannot load %s v%s for %s, keeping the loaded model: %s", name, holder.version, alias, exc)
            return 0
        if bundle.meta.target != target:
            errors.append(f"{name} v{info.version} holds a {bundle.meta.target!r} bundle, not {target!r}")
            return 0
        models[(alias, target)] = ServedModel(
            target=target,
            alias=alias,
            name=name,
            version=info.version,
            bundle=bundle,
            source=info.uri,
            loaded_at=time.time(),
        )
        previous = f"v{loaded.version}" if loaded is not None else "nothing"
        log.info("%s %s: now serving v%s (was %s)", name, alias, info.version, previous)
        return 1

    def _download(self, name: str, version: str) -> tuple[ModelBundle, Any]:
        assert self._client is not None
        for attempt in range(3):
            try:
                return load_bundle(
                    self._client, name, version, self._cache, num_threads=self._settings.serve_threads_per_worker
                )
            except OSError:
                # Workers of one endpoint share the download cache; another may be moving the same
                # version into place. Its complete copy is reused on the next attempt.
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover


class FolderModelProvider:
    """Serves bundle folders: ``<dir>/<target>/`` (as ``alias``) or ``<dir>/<alias>/<target>/``.

    Each target folder is a model bundle (``bundle.json`` + booster). An optional
    ``registered.json`` (written by ``bikeshare models export``) names the registered model and
    version; without it the name is ``bikeshare-<city>-<target>`` and the version ``local``. This is
    the layout of SageMaker's ``/opt/ml/model``. Nothing is polled: the folder is fixed for the
    container's life.
    """

    def __init__(self, model_dir: Path, *, settings: Settings, alias: str | None = None) -> None:
        self._dir = Path(model_dir)
        self._settings = settings
        self._alias = alias or settings.serve_alias
        self._state = ProviderState(source="folder", location=str(self._dir))

    def state(self) -> ProviderState:
        return self._state

    def current(self, alias: str) -> ModelSet | None:
        return self._state.sets.get(alias)

    def layout(self) -> dict[str, Path]:
        """Alias -> folder holding its ``bikes/`` and ``docks/`` bundles; FileNotFoundError when none."""
        if not self._dir.is_dir():
            raise FileNotFoundError(f"model folder {self._dir} does not exist")
        layouts = {self._alias: self._dir} if _has_bundles(self._dir) else {}
        for alias in ALIASES:
            if alias not in layouts and _has_bundles(self._dir / alias):
                layouts[alias] = self._dir / alias
        if not layouts:
            raise FileNotFoundError(
                f"no model bundles in {self._dir}: expected {self._dir}/bikes/{BUNDLE_FILE} and "
                f"{self._dir}/docks/{BUNDLE_FILE} (or {self._dir}/<production|staging>/<target>/)"
            )
        return layouts

    def load(self) -> ProviderState:
        """Load every bundle found; FileNotFoundError/ValueError naming the folder when none fits."""
        models: dict[tuple[str, str], ServedModel] = {}
        for alias, root in self.layout().items():
            for target in TARGETS:
                models[(alias, target)] = self._load_one(root / target, alias=alias, target=target)
        self._state = replace(self._state, models=models, sets=_sets_of(models), swaps=len(models))
        return self._state

    def _load_one(self, folder: Path, *, alias: str, target: str) -> ServedModel:
        bundle = ModelBundle.load(folder, num_threads=self._settings.serve_threads_per_worker)
        if bundle.meta.target != target:
            raise ValueError(f"{folder} holds a {bundle.meta.target!r} bundle, not {target!r}")
        registered = folder / REGISTERED_FILE
        info: dict[str, Any] = json.loads(registered.read_text()) if registered.is_file() else {}
        return ServedModel(
            target=target,
            alias=alias,
            name=str(info.get("name") or model_name(self._settings.city, target)),
            version=str(info.get("version") or "local"),
            bundle=bundle,
            source=str(folder),
            loaded_at=time.time(),
        )

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None


def _has_bundles(folder: Path) -> bool:
    return all((folder / target / BUNDLE_FILE).is_file() for target in TARGETS)


def export_alias(client: MlflowClient, *, settings: Settings, alias: str, dest: Path) -> dict[str, dict[str, str]]:
    """Write the bundles holding ``alias`` (both targets) to ``dest/<target>/`` for a model folder.

    ``dest`` is what SageMaker unpacks into ``/opt/ml/model``. Each target folder gets a
    ``registered.json`` so the endpoint reports the registered name and version.
    """
    import shutil

    written: dict[str, dict[str, str]] = {}
    for target in TARGETS:
        name = model_name(settings.city, target)
        holder = alias_holder(client, name, alias)
        if holder is None:
            raise ModelNotFoundError(f"{name} has no {alias!r} alias: promote a version first")
        bundle, info = load_bundle(client, name, holder.version, settings.state_dir / MODEL_CACHE_DIR)
        folder = dest / target
        if folder.exists():
            shutil.rmtree(folder)
        bundle.save(folder)
        record = {"name": name, "version": info.version, "alias": alias, "run_id": info.run_id}
        (folder / REGISTERED_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        written[target] = record
    return written
