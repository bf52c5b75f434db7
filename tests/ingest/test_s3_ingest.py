"""Ingest, quarantine and `bikeshare sql` on an s3:// lake (moto's server on loopback)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import orjson
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.gbfs.client import GbfsClient
from bikeshare.gbfs.replay import ReplayServer
from bikeshare.ingest.poller import Outcome, ingest_once
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings


def test_ingest_to_an_s3_lake_and_query_it(
    tmp_path: Path, s3_endpoint: str, replay: ReplayServer, make_client: Callable[..., GbfsClient]
) -> None:
    settings = Settings(
        lake_uri="s3://lake/bikeshare",
        s3_endpoint_url=s3_endpoint,
        state_dir=tmp_path / "state",
        weather_enabled=False,
    )
    lake = Lake.open(settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url)
    with make_client(replay.discovery_url) as client:
        committed = ingest_once(client=client, lake=lake, settings=settings)
        replay.inject("malformed_json", count=1)
        replay.clock.advance(3600)
        quarantined = ingest_once(client=client, lake=lake, settings=settings)
    assert committed.outcome == Outcome.COMMITTED, committed.reason
    assert quarantined.outcome == Outcome.QUARANTINED
    assert committed.path is not None and committed.path.startswith("s3://lake/bikeshare/raw/station_status/city=sf/")

    [(payload_path,)] = lake.connect().sql("SELECT payload_path FROM quarantine").fetchall()
    body = gzip.decompress(lake.read_bytes(payload_path))
    full = orjson.dumps(replay.document("station_status"))
    assert body == full[: len(full) // 2]

    env = {
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "BIKESHARE_S3_ENDPOINT_URL": s3_endpoint,
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "BIKESHARE_WEATHER_ENABLED": "false",
    }
    query = (
        "SELECT (SELECT count(*) FROM station_status) AS status, (SELECT count(*) FROM quarantine) AS quarantine, "
        "(SELECT count(*) FROM ingest_log) AS log, (SELECT count(*) FROM station_information) AS information"
    )
    result = CliRunner().invoke(app, ["sql", query, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    [counts] = json.loads(result.output)
    assert counts["status"] == committed.rows_written > 400
    assert counts["quarantine"] == 1 and counts["log"] == 2
    assert counts["information"] > 400
