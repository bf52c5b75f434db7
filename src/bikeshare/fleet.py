"""A fleet of cities in one deployment: the fleet file, validated into one :class:`Settings` per city.

The file (``--fleet PATH`` or ``BIKESHARE_FLEET``) is TOML. Keys at the top are defaults for every
city; each ``[[cities]]`` table is one city: its ``key``, its ``feed_url``, an optional
``timezone`` (for a feed without system_information) and overrides of any city-level setting::

    shortage_threshold = 2          # a default for every city
    infer_interval_min = 5

    [[cities]]
    key = "sf"
    feed_url = "https://gbfs.baywheels.com/gbfs/gbfs.json"

    [[cities]]
    key = "oslo"
    feed_url = "https://gbfs.urbansharing.com/oslobysykkel.no/gbfs.json"
    timezone = "Europe/Oslo"
    pipeline_train_days = 14

Deployment-level settings (where the lake and the registry live, the endpoint, the dashboard, the
runner's own knobs) belong to the process, not to a city: they come from the environment or
``--config`` and are refused in the fleet file. Without a fleet file the ``city`` setting is a
fleet of one, exactly as before.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bikeshare.settings import Settings

FLEET_ENV_VAR = "BIKESHARE_FLEET"
CITIES_KEY = "cities"

# Settings of the process (one value per deployment), never per city.
DEPLOYMENT_SETTINGS = frozenset(
    {
        "city",
        "lake_uri",
        "state_dir",
        "s3_endpoint_url",
        "recording_path",
        "replay_port",
        "replay_speed",
        "replay_gbfs_version",
        "backfill_workers",
        "meteostat_cache_dir",
        "meteostat_cache_enabled",
        "meteostat_mirror",
        "duckdb_memory_limit",
        "duckdb_threads",
        "train_threads",
        "endpoint_url",
        "monitor_endpoint_url",
        "alert_rules_path",
    }
)
DEPLOYMENT_PREFIXES = ("serve_", "dashboard_", "mlflow_", "demo_", "drill_", "run_")


def is_city_setting(name: str) -> bool:
    """True for a setting a fleet file may set per city (or as a default for every city)."""
    return (
        name in Settings.model_fields and name not in DEPLOYMENT_SETTINGS and not name.startswith(DEPLOYMENT_PREFIXES)
    )


class FleetError(ValueError):
    """A fleet file that cannot be used; the message names the file, the city and the field."""


@dataclass(frozen=True)
class Fleet:
    """The cities of a deployment, in file order, each with its validated settings."""

    cities: tuple[Settings, ...]
    source: str = "the city setting"

    @classmethod
    def of_one(cls, settings: Settings) -> Fleet:
        """The fleet of a deployment without a fleet file: the ``city`` setting alone."""
        return cls((settings,))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.city for s in self.cities)

    def settings_of(self, key: str) -> Settings:
        """The settings of city ``key``; :class:`FleetError` naming the known cities otherwise."""
        for settings in self.cities:
            if settings.city == key:
                return settings
        raise FleetError(f"unknown city {key!r} in {self.source}: the fleet has {', '.join(self.keys)}")


def load_fleet(path: Path, base: Settings) -> Fleet:
    """Read and validate a fleet file; each city's settings are ``base`` with the defaults and its own
    values applied (so deployment settings come from ``base``). :class:`FleetError` on any problem."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FleetError(f"fleet file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path}: not valid TOML: {exc}") from None
    defaults = {k: v for k, v in doc.items() if k != CITIES_KEY}
    _check_names(path, "defaults", defaults)
    entries = doc.get(CITIES_KEY)
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise FleetError(f"{path}: no cities: add one [[{CITIES_KEY}]] table per city (key, feed_url, ...)")
    seen: dict[str, int] = {}
    cities = []
    for number, entry in enumerate(entries, start=1):
        key = entry.get("key")
        if not isinstance(key, str) or not key:
            raise FleetError(f'{path}: city #{number} has no key (e.g. key = "sf")')
        if key in seen:
            raise FleetError(f"{path}: city {key!r} appears twice (cities #{seen[key]} and #{number})")
        seen[key] = number
        values = {k: v for k, v in entry.items() if k != "key"}
        _check_names(path, f"city {key!r}", values)
        if "feed_url" not in values and "feed_url" not in defaults:
            raise FleetError(f"{path}: city {key!r}: feed_url is missing")
        cities.append(_city_settings(path, base, key, {**defaults, **values}))
    return Fleet(tuple(cities), source=str(path))


def _check_names(path: Path, where: str, values: dict[str, Any]) -> None:
    for name in values:
        if name not in Settings.model_fields:
            raise FleetError(f"{path}: {where}: unknown setting {name!r}")
        if not is_city_setting(name):
            raise FleetError(
                f"{path}: {where}: {name!r} is a deployment setting (one per process): "
                "set it in the environment or --config, not in the fleet file"
            )


def _city_settings(path: Path, base: Settings, key: str, values: dict[str, Any]) -> Settings:
    # feed_url starts unset so that a city without its own falls back to its key's preset, never to base's
    merged = {**base.model_dump(), "feed_url": None, "timezone": None, **values, "city": key}
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error.get("loc", ())) or "settings"
            problems.append(f"{field}: {error.get('msg', 'invalid')}")
        raise FleetError(f"{path}: city {key!r}: {'; '.join(problems)}") from None
