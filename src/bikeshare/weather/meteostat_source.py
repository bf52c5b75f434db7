"""The Meteostat 2 adapter: the only code that imports ``meteostat`` or touches its ``MS_*`` settings.

How Meteostat 2 (2.1) finds its data, read from the installed package:

- ``meteostat.api.config.Config("MS")`` reads every ``MS_<KEY>`` environment variable once, when
  ``meteostat`` is first imported, into one process-wide ``config`` object (strings as-is, other types
  as JSON). ``config.load_env()`` reads them again.
- Stations: ``MS_STATIONS_DB_ENDPOINTS`` (JSON list of URLs, tried in turn with ``requests``,
  ``MS_NETWORK_TIMEOUT`` seconds and ``MS_NETWORK_MAX_RETRIES`` retries) is downloaded to
  ``MS_STATIONS_DB_FILE`` (SQLite; reused for a week, judged by the file's mtime).
- Hourly data: ``MS_HOURLY_ENDPOINT``, a template with ``{year}`` and ``{station}``, one gzip CSV per
  station and year, read by ``pandas.read_csv`` (so a local path works too). The provider module copies
  the template into its own ``ENDPOINT`` global when it is first imported, so a later change of the
  variable alone has no effect; :func:`meteostat_environment` sets that global as well.
- Cache: ``MS_CACHE_DIRECTORY`` holds pickled year frames (``MS_CACHE_ENABLE``), kept for a day for
  the current and previous year, 30 days for older ones, keyed on station and year only (not the
  endpoint), which is why each endpoint gets its own cache sub-folder here.

Everything is set inside :func:`meteostat_environment` and put back on exit, never at import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from bikeshare.settings import Settings
from bikeshare.weather.stage import SOURCE_COLUMNS, WeatherStation, WeatherUnavailableError

# Meteostat keeps its configuration in process globals; two scopes at once would undo each other.
_SCOPE_LOCK = threading.Lock()

# A copied local stations.db is refreshed daily, well inside Meteostat's one-week staleness.
LOCAL_DB_REFRESH_S = 24 * 3600


@dataclass(frozen=True)
class MeteostatConfig:
    """Where Meteostat reads from and caches to; ``None`` endpoints keep Meteostat's defaults."""

    hourly_endpoint: str | None
    stations_db_endpoint: str | None
    cache_dir: Path
    cache_enabled: bool = True
    timeout_s: float = 10.0
    max_retries: int = 1

    def __post_init__(self) -> None:
        if self.hourly_endpoint is not None:
            missing = [k for k in ("{year}", "{station}") if k not in self.hourly_endpoint]
            if missing:
                raise ValueError(
                    f"meteostat_hourly_endpoint {self.hourly_endpoint!r} lacks the placeholder(s) {missing}"
                )

    @classmethod
    def from_settings(cls, settings: Settings) -> MeteostatConfig:
        """Endpoints from the settings, a mirror filling whichever endpoint is unset."""
        hourly = settings.meteostat_hourly_endpoint
        stations = settings.meteostat_stations_db_endpoint
        if settings.meteostat_mirror:
            base = settings.meteostat_mirror.rstrip("/")
            hourly = hourly or f"{base}/hourly/{{year}}/{{station}}.csv.gz"
            stations = stations or f"{base}/stations.db"
        cache_dir = settings.meteostat_cache_dir or settings.state_dir / "meteostat"
        return cls(
            hourly_endpoint=hourly,
            stations_db_endpoint=stations,
            cache_dir=cache_dir,
            cache_enabled=settings.meteostat_cache_enabled,
            timeout_s=settings.http_timeout_s,
            max_retries=settings.meteostat_max_retries,
        )

    @property
    def _key(self) -> str:
        text = f"{self.hourly_endpoint}|{self.stations_db_endpoint}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def stations_db_file(self) -> Path:
        """Where the stations database is kept, one file per endpoint."""
        return self.cache_dir / f"stations-{self._key}.db"

    @property
    def data_cache_dir(self) -> Path:
        """Meteostat's pickle cache for this pair of endpoints."""
        return self.cache_dir / f"cache-{self._key}"

    def environment(self) -> dict[str, str]:
        """The ``MS_*`` variables this configuration stands for."""
        env = {
            "MS_CACHE_DIRECTORY": str(self.data_cache_dir),
            "MS_CACHE_ENABLE": json.dumps(self.cache_enabled),
            "MS_STATIONS_DB_FILE": str(self.stations_db_file),
            "MS_NETWORK_TIMEOUT": str(max(1, math.ceil(self.timeout_s))),
            "MS_NETWORK_MAX_RETRIES": str(self.max_retries),
        }
        if self.hourly_endpoint is not None:
            env["MS_HOURLY_ENDPOINT"] = _as_location(self.hourly_endpoint)
        if self.stations_db_endpoint is not None and _is_remote(self.stations_db_endpoint):
            env["MS_STATIONS_DB_ENDPOINTS"] = json.dumps([self.stations_db_endpoint])
        return env


@contextmanager
def meteostat_environment(cfg: MeteostatConfig) -> Iterator[None]:
    """Point Meteostat at ``cfg`` for the duration of the block, then put everything back.

    Sets the ``MS_*`` variables, has Meteostat's config re-read them, sets the hourly provider's
    copied endpoint, and bounds socket waits (``pandas.read_csv`` opens URLs without a timeout).
    """
    env = cfg.environment()
    with _SCOPE_LOCK:
        from meteostat.api.config import config
        from meteostat.providers.meteostat import hourly as hourly_provider

        saved_env = {key: os.environ.get(key) for key in env}
        saved_config = dict(vars(config))
        saved_endpoint = hourly_provider.ENDPOINT
        saved_timeout = socket.getdefaulttimeout()
        ms_logger = logging.getLogger("meteostat")
        quiet = _DropTracebacks()
        ms_logger.addFilter(quiet)
        try:
            os.environ.update(env)
            config.load_env()
            hourly_provider.ENDPOINT = config.hourly_endpoint
            socket.setdefaulttimeout(cfg.timeout_s)
            cfg.cache_dir.mkdir(parents=True, exist_ok=True)
            _install_local_stations_db(cfg)
            yield
        finally:
            ms_logger.removeFilter(quiet)
            socket.setdefaulttimeout(saved_timeout)
            hourly_provider.ENDPOINT = saved_endpoint
            vars(config).clear()
            vars(config).update(saved_config)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class _DropTracebacks(logging.Filter):
    """Keep Meteostat's one-line warnings but not their tracebacks (unless logging at DEBUG).

    A missing or unreachable year file is an expected outcome here, reported by the stage.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not logging.getLogger("meteostat").isEnabledFor(logging.DEBUG):
            record.exc_info = None
            record.exc_text = None
        return True


class MeteostatSource:
    """Weather stations and hourly observations from Meteostat 2, configured from settings."""

    def __init__(self, cfg: MeteostatConfig, *, radius_km: float = 50.0, max_stations: int = 3) -> None:
        self.cfg = cfg
        self.radius_km = radius_km
        self.max_stations = max_stations

    @classmethod
    def from_settings(cls, settings: Settings) -> MeteostatSource:
        return cls(
            MeteostatConfig.from_settings(settings),
            radius_km=settings.meteostat_radius_km,
            max_stations=settings.meteostat_max_stations,
        )

    def nearby_stations(self, lat: float, lon: float) -> list[WeatherStation]:
        """Stations within the radius, nearest first; raises :class:`WeatherUnavailableError` on failure."""
        import meteostat

        try:
            with meteostat_environment(self.cfg):
                found = meteostat.stations.nearby(
                    meteostat.Point(lat, lon), radius=self.radius_km * 1000, limit=self.max_stations
                )
        except Exception as exc:  # Meteostat raises bare Exception when no stations.db can be had
            raise WeatherUnavailableError(f"Meteostat stations database unavailable: {exc}") from exc
        return [
            WeatherStation(
                id=str(station_id),
                name=str(row["name"]),
                lat=float(row["latitude"]),
                lon=float(row["longitude"]),
                distance_km=float(row["distance"]) / 1000,
            )
            for station_id, row in found.iterrows()
        ]

    def hourly(self, station_id: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Hourly rows with ``start <= time < end`` (UTC) in Meteostat units; empty when there are none.

        Columns ``time`` and :data:`SOURCE_COLUMNS` keys (°C, mm, km/h, condition code 1-27).
        """
        import meteostat

        params = [meteostat.Parameter(p) for p in SOURCE_COLUMNS]
        first = _naive_utc(start)
        last = _naive_utc(end) - timedelta(microseconds=1)
        try:
            with meteostat_environment(self.cfg):
                series = meteostat.hourly(station_id, first, last, timezone="UTC", parameters=params)
                frame = series.fetch()
        except Exception as exc:
            raise WeatherUnavailableError(f"Meteostat hourly data for {station_id} unavailable: {exc}") from exc
        columns = ["time", *SOURCE_COLUMNS]
        if frame is None or frame.empty:
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        frame = frame.reset_index()
        for param in SOURCE_COLUMNS:
            if param not in frame.columns:
                frame[param] = float("nan")
        return frame[columns]


def _naive_utc(ts: datetime) -> datetime:
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        raise ValueError(f"time {ts} has no timezone; pass UTC-aware times")
    return stamp.tz_convert("UTC").tz_localize(None).to_pydatetime()


def _is_remote(location: str) -> bool:
    return urlparse(location).scheme in {"http", "https"}


def _as_location(location: str) -> str:
    """A URL as-is; a ``file://`` URL or relative path as an absolute path (read by pandas)."""
    if _is_remote(location):
        return location
    return str(Path(location.removeprefix("file://")).expanduser().resolve())


def _install_local_stations_db(cfg: MeteostatConfig) -> None:
    """Copy a local stations.db into place so Meteostat finds it fresh and never downloads it."""
    if cfg.stations_db_endpoint is None or _is_remote(cfg.stations_db_endpoint):
        return
    source = Path(_as_location(cfg.stations_db_endpoint))
    if not source.is_file():
        raise WeatherUnavailableError(f"Meteostat stations database {source} does not exist")
    target = cfg.stations_db_file
    if target.is_file():
        target_mtime = target.stat().st_mtime
        if source.stat().st_mtime <= target_mtime and time.time() - target_mtime < LOCAL_DB_REFRESH_S:
            return
    tmp = target.with_name(f"{target.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
