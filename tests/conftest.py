"""Shared fixtures: real temp lakes, the shipped recording slice, free loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bikeshare.lake.store import Lake
from bikeshare.settings import Settings


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated in a temp folder: its own lake and state (MLflow SQLite)."""
    return Settings(lake_uri=str(tmp_path / "lake"), state_dir=tmp_path / "state", weather_enabled=False)


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake.open(settings.lake_uri)
