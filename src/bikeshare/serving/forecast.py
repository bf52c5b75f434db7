"""The endpoint's forecast side: the loaded forecast model (hot-swapped) and the latest stored curves.

- :class:`RegistryForecastProvider` follows the ``staging``/``production`` aliases of
  ``bikeshare-<city>-forecast`` like the 30-minute provider does (poll thread, swap on move,
  outages keep the loaded model); :class:`FolderForecastProvider` serves ``<model_dir>/forecast/``.
  A city without a forecast model is not an error: the forecast routes answer 503 naming it.
- :class:`LatestForecasts` reads the newest ``forecasts`` partition the batch job wrote, like
  :class:`bikeshare.serving.risk.LatestInference` reads inference batches.

pandas, duckdb and the bundle module are imported where used: ``serving.server`` imports this
module, and a worker process must answer uvicorn's health pings soon after it is spawned.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bikeshare.registry.client import ALIASES, ModelNotFoundError, RegistryUnavailable, redact
from bikeshare.serving.poller import ModelPoller
from bikeshare.serving.risk import NewestBatchCache

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow import MlflowClient

    from bikeshare.lake.store import Lake
    from bikeshare.resources import Resources
    from bikeshare.settings import Settings
    from bikeshare.training.forecast_bundle import ForecastBundle

log = logging.getLogger(__name__)

FORECAST_CACHE_DIR = "model_cache"


@dataclass(frozen=True)
class LoadedForecast:
    """One forecast bundle serving an alias."""

    alias: str
    name: str
    version: str
    bundle: ForecastBundle
    loaded_at: float

    @property
    def doc(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "alias": self.alias}


class ForecastProvider(Protocol):
    """What the app needs from a forecast model source."""

    location: str

    def current(self, alias: str) -> LoadedForecast | None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class NoForecastProvider:
    """No forecast model source configured: every lookup is empty."""

    location = "none"

    def current(self, alias: str) -> LoadedForecast | None:
        return None

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None


class FolderForecastProvider:
    """Serves the forecast bundle in ``<folder>`` (``forecast.json`` plus boosters) under every alias."""

    def __init__(self, folder: Path, *, settings: Settings) -> None:
        from bikeshare.training.forecast_bundle import FORECAST_FILE, ForecastBundle

        self.location = str(folder)
        self._loaded: LoadedForecast | None = None
        if (folder / FORECAST_FILE).is_file():
            bundle = ForecastBundle.load(folder, num_threads=settings.serve_threads_per_worker)
            self._loaded = LoadedForecast("folder", f"folder:{folder.name}", "local", bundle, time.time())

    def current(self, alias: str) -> LoadedForecast | None:
        return self._loaded

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None


class RegistryForecastProvider(ModelPoller):
    """Follows the forecast model's aliases; polls every ``serve_model_poll_s`` once started."""

    thread_name = "forecast-poll"

    def __init__(self, *, settings: Settings, registry: Callable[[], MlflowClient]) -> None:
        """``registry`` gives the process's client (``Resources.registry``: opened once, on first use)."""
        super().__init__(poll_s=settings.serve_model_poll_s)
        self._settings = settings
        self._registry = registry
        self._client: MlflowClient | None = None
        self.location = redact(settings.tracking_uri)
        self._models: dict[str, LoadedForecast] = {}
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def current(self, alias: str) -> LoadedForecast | None:
        return self._models.get(alias)

    def refresh(self) -> bool:
        """One poll of both aliases; True when a model was swapped in or out. Never raises for an outage."""
        from bikeshare.registry.client import alias_holder
        from bikeshare.registry.forecast import forecast_model_name, load_forecast_bundle

        with self._lock:
            try:
                if self._client is None:
                    self._client = self._registry()
                name = forecast_model_name(self._settings.city)
                models = dict(self._models)
                changed = False
                for alias in ALIASES:
                    holder = alias_holder(self._client, name, alias)
                    loaded = models.get(alias)
                    if holder is None:
                        if loaded is not None and alias != "production":
                            del models[alias]
                            changed = True
                        continue
                    if loaded is not None and loaded.version == holder.version:
                        continue
                    bundle, info = load_forecast_bundle(
                        self._client,
                        self._settings,
                        holder.version,
                        self._settings.state_dir / FORECAST_CACHE_DIR,
                        num_threads=self._settings.serve_threads_per_worker,
                    )
                    models[alias] = LoadedForecast(alias, name, info.version, bundle, time.time())
                    log.info("%s %s: now serving v%s", name, alias, info.version)
                    changed = True
                self._models = models
                self.last_error = None
                return changed
            except (RegistryUnavailable, ModelNotFoundError, OSError, ValueError) as exc:
                self.last_error = str(exc)
                log.warning("forecast model poll failed, keeping the loaded models: %s", exc)
                return False


def build_forecast_provider(
    settings: Settings, *, model_dir: Path | None = None, resources: Resources | None = None
) -> ForecastProvider:
    """The forecast source matching the 30-minute one: ``<model_dir>/forecast`` or the registry (first poll done).

    The registry provider shares the client of ``resources`` (built here when not given); a registry
    that cannot be reached is reported by the poll, since the forecast model is optional.
    """
    folder = model_dir or settings.serve_model_dir
    if folder is not None:
        return FolderForecastProvider(Path(folder) / "forecast", settings=settings)
    if resources is None:
        from bikeshare.resources import Resources

        resources = Resources.build(settings)
    provider = RegistryForecastProvider(settings=settings, registry=resources.registry)
    provider.refresh()
    return provider


# --- the stored curves ----------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastSnapshot:
    """The newest stored forecast batch: station -> curve rows (horizon ascending)."""

    dt: str
    batch_id: str
    alias: str
    model: dict[str, str]
    feature_time: datetime
    prediction_time: datetime
    stations: dict[str, dict[str, Any]] = field(repr=False)

    def header(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "batch_id": self.batch_id,
            "model": self.model,
            "feature_time": self.feature_time.isoformat(),
            "prediction_time": self.prediction_time.isoformat(),
        }


class LatestForecasts(NewestBatchCache["ForecastSnapshot"]):
    """Cached reader of the newest ``forecasts`` batch of one city and alias."""

    def __init__(self, *, lake: Lake, city: str, alias: str, refresh_s: float) -> None:
        from bikeshare.lake.tables import FORECASTS

        super().__init__(lake=lake, city=city, table=FORECASTS, refresh_s=refresh_s)
        self._alias = alias

    def _read(self, dt: str, key: tuple[str, tuple[str, ...]]) -> ForecastSnapshot | None:
        import duckdb

        from bikeshare.lake.tables import FORECASTS

        source = self._lake.scan_sql(FORECASTS, city=self._city, dts=[dt])
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            if self._lake.is_remote:
                con.register_filesystem(self._lake.fs)
            rows = con.sql(
                f"""
                WITH mine AS (SELECT * FROM ({source}) WHERE alias = $alias),
                newest AS (SELECT batch_id FROM mine ORDER BY prediction_time DESC, batch_id DESC LIMIT 1)
                SELECT batch_id, prediction_time, feature_time, model_name, model_version, station_id,
                       horizon_min, target_time, p_no_bikes, p_no_docks, expected_bikes, bikes_lo, bikes_hi,
                       current_bikes, current_docks, capacity
                FROM mine WHERE batch_id = (SELECT batch_id FROM newest)
                ORDER BY station_id, horizon_min
                """,
                params={"alias": self._alias},
            ).fetchall()
        finally:
            con.close()
        if not rows:
            return None
        stations: dict[str, dict[str, Any]] = {}
        for r in rows:
            doc = stations.setdefault(
                r[5],
                {"station_id": r[5], "current_bikes": r[13], "current_docks": r[14], "capacity": r[15], "curve": []},
            )
            doc["curve"].append(
                {
                    "horizon_min": r[6],
                    "target_time": r[7].isoformat() if r[7] is not None else None,
                    "p_no_bikes": r[8],
                    "p_no_docks": r[9],
                    "expected_bikes": r[10],
                    "bikes_lo": r[11],
                    "bikes_hi": r[12],
                }
            )
        first = rows[0]
        return ForecastSnapshot(
            dt=dt,
            batch_id=first[0],
            alias=self._alias,
            model={"name": first[3], "version": first[4]},
            feature_time=first[2],
            prediction_time=first[1],
            stations=stations,
        )
