"""A real loopback HTTP server over the Meteostat-format fixture, and settings pointing at it."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.settings import Settings

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "meteostat"


@dataclass
class MirrorServer:
    url: str
    requests: list[str] = field(default_factory=list)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def meteostat_dir() -> Path:
    return FIXTURE_DIR


@pytest.fixture
def meteostat_server() -> Iterator[MirrorServer]:
    """Serves tests/fixtures/meteostat on 127.0.0.1 (stations.db, hourly/<year>/<station>.csv.gz)."""
    handler = functools.partial(_QuietHandler, directory=str(FIXTURE_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield MirrorServer(url=f"http://127.0.0.1:{server.server_address[1]}", requests=server.requests)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def weather_settings(tmp_path: Path, meteostat_server: MirrorServer) -> Settings:
    return Settings(
        lake_uri=str(tmp_path / "lake"),
        state_dir=tmp_path / "state",
        weather_enabled=True,
        meteostat_mirror=meteostat_server.url,
        meteostat_max_retries=0,
        http_timeout_s=5,
    )


@pytest.fixture
def fixture_hourly() -> pd.DataFrame:
    """The plain rows the fixture mirror was built from."""
    frame = pd.read_csv(FIXTURE_DIR / "source" / "hourly.csv", dtype={"station": str})
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


@pytest.fixture
def fixture_stations() -> pd.DataFrame:
    return pd.read_csv(FIXTURE_DIR / "source" / "stations.csv", dtype={"id": str, "wmo": str})


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def nearest_ids(stations: pd.DataFrame, lat: float, lon: float, radius_km: float) -> list[str]:
    """Fixture station ids within the radius, nearest first, computed independently of Meteostat."""
    dist = {row.id: haversine_km(lat, lon, row.latitude, row.longitude) for row in stations.itertuples(index=False)}
    return [sid for sid, d in sorted(dist.items(), key=lambda kv: kv[1]) if d <= radius_km]
