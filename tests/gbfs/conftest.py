"""Fixtures for the GBFS tests: the shipped recording, the vendored official schemas, replay servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.gbfs.replay import ReplayServer

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "gbfs_schema"


@cache
def _validator(version: str, feed: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMA_DIR / f"v{version}" / f"{feed}.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def schema_errors(version: str, feed: str, doc: Any) -> list[str]:
    """Messages of every violation of the official schema of ``feed`` in ``version``."""
    return [f"{list(e.absolute_path)}: {e.message}" for e in _validator(version, feed).iter_errors(doc)]


@pytest.fixture(scope="session")
def shipped() -> Recording:
    """The real Bay Wheels slice shipped in data/recordings."""
    return Recording.open(default_recording_path())


@pytest.fixture
def replay(shipped: Recording) -> Iterator[Callable[..., ReplayServer]]:
    """Start replay servers (paused unless asked otherwise); all are stopped after the test."""
    servers: list[ReplayServer] = []

    def start(version: str = "2.3", **kwargs: Any) -> ReplayServer:
        kwargs.setdefault("paused", True)
        server = ReplayServer(kwargs.pop("recording", shipped), gbfs_version=version, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
