"""Backfill of the shipped slice and of a small hand-made recording with a broken snapshot."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.contracts.rules import MaskReason
from bikeshare.gbfs.recording import Recording, import_jsonl_recording
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import STATION_INFORMATION, STATION_STATUS
from bikeshare.settings import Settings


def _listing(lake: Lake) -> dict[str, float]:
    return {p: lake.fs.info(p)["mtime"] for p in lake.fs.find(f"{lake.root}/raw")}


def test_backfill_of_the_shipped_slice_is_complete_and_idempotent(tmp_path: Path, recording: Recording) -> None:
    env = {
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "BIKESHARE_WEATHER_ENABLED": "false",
    }
    result = CliRunner().invoke(app, ["backfill"], env=env)  # default: the shipped slice
    assert result.exit_code == 0, result.output
    assert "quarantined" in result.output

    lake = Lake.open(env["BIKESHARE_LAKE_URI"])
    manifest = recording.manifest
    times = recording.snapshot_times()
    minutes = {t.strftime("%Y-%m-%d-%H-%M") for t in times}
    assert lake.partitions(STATION_STATUS, city="sf") == sorted(minutes)
    con = lake.connect()
    [(rows, snapshots, masked)] = con.sql(
        "SELECT count(*), count(DISTINCT last_updated), count(*) FILTER (WHERE masked) FROM station_status"
    ).fetchall()
    assert rows == manifest["status_rows"] and snapshots == manifest["snapshots"]
    # The real feed is messy but mostly usable: some rows masked, far from all.
    assert 0 < masked < 0.1 * rows
    reasons = {
        r
        for (text,) in con.sql("SELECT DISTINCT mask_reasons FROM station_status WHERE masked").fetchall()
        for r in text.split(",")
    }
    assert reasons <= {str(m) for m in MaskReason}
    assert {"stale", "not_renting"} <= reasons
    assert con.sql("SELECT count(*) FROM station_status WHERE masked <> (mask_reasons IS NOT NULL)").fetchall() == [
        (0,)
    ]
    log = dict(con.sql("SELECT outcome, count(*) FROM ingest_log GROUP BY 1").fetchall())
    assert log == {"committed": manifest["snapshots"]}
    [(log_masked,)] = con.sql("SELECT sum(rows_masked) FROM ingest_log").fetchall()
    assert log_masked == masked
    versions = len(lake.partitions(STATION_INFORMATION, city="sf"))
    assert versions == manifest["information_versions"]
    assert con.sql("SELECT count(*) FROM station_information_current").fetchall() == [
        (len(recording.information_versions()[-1][1]),)
    ]
    assert con.sql("SELECT count(*) FROM system_information").fetchall() == [(1,)]
    before = _listing(lake)

    settings = Settings(lake_uri=str(lake.root), state_dir=tmp_path / "state", weather_enabled=False)
    again = backfill(recording=recording, lake=lake, settings=settings)
    assert again.committed == 0 and again.duplicates == manifest["snapshots"]
    assert again.information_versions_written == 0
    assert _listing(lake) == before  # nothing rewritten
    log = dict(lake.connect().sql("SELECT outcome, count(*) FROM ingest_log GROUP BY 1").fetchall())
    assert log == {"committed": manifest["snapshots"], "duplicate": manifest["snapshots"]}


def _jsonl(path: Path, feed: str, bodies: list[dict]) -> None:
    with gzip.open(path / f"{feed}.jsonl.gz", "wt") as handle:
        for body in bodies:
            handle.write(json.dumps({"fetched_at": body["last_updated"] + 3, "feed": feed, "body": body}) + "\n")


def _station(i: int, t: int, **overrides: int) -> dict:
    station = {
        "station_id": f"s{i}",
        "num_bikes_available": 5,
        "num_ebikes_available": 1,
        "num_docks_available": 5,
        "num_bikes_disabled": 0,
        "num_docks_disabled": 0,
        "is_installed": 1,
        "is_renting": 1,
        "is_returning": 1,
        "last_reported": t - 30,
    }
    station.update(overrides)
    return station


def _information(t0: int) -> dict:
    """One station_information document of the 20 stations, valid from just before ``t0``."""
    return {
        "last_updated": t0 - 100,
        "ttl": 60,
        "data": {
            "stations": [
                {"station_id": f"s{i}", "name": f"S {i}", "capacity": 10, "lat": 37.7, "lon": -122.4} for i in range(20)
            ]
        },
    }


@pytest.fixture
def small_recording(tmp_path: Path) -> Recording:
    """Three snapshots of 20 stations: clean, one negative count, one stale station."""
    src = tmp_path / "src"
    src.mkdir()
    t0 = 1_677_700_000
    times = [t0, t0 + 600, t0 + 1200]
    status = [
        {"last_updated": times[0], "ttl": 60, "data": {"stations": [_station(i, times[0]) for i in range(20)]}},
        {
            "last_updated": times[1],
            "ttl": 60,
            "data": {
                "stations": [
                    _station(i, times[1], **({"num_docks_available": -1} if i == 3 else {})) for i in range(20)
                ]
            },
        },
        {
            "last_updated": times[2],
            "ttl": 60,
            "data": {
                "stations": [
                    _station(i, times[2], **({"last_reported": t0 - 7200} if i == 0 else {})) for i in range(20)
                ]
            },
        },
    ]
    information = _information(t0)
    system = {
        "last_updated": t0 - 1000,
        "ttl": 60,
        "data": {"system_id": "x", "name": "X", "timezone": "UTC", "language": "en"},
    }
    _jsonl(src, "station_status", status)
    _jsonl(src, "station_information", [information])
    _jsonl(src, "system_information", [system])
    return import_jsonl_recording(src, tmp_path / "rec")


def test_backfill_quarantines_broken_snapshots_and_masks_rows(
    settings: Settings, lake: Lake, small_recording: Recording
) -> None:
    report = backfill(recording=small_recording, lake=lake, settings=settings, workers=2, chunk_snapshots=2)
    assert (report.snapshots, report.committed, report.quarantined) == (3, 2, 1)
    assert report.rows_written == 40 and report.rows_masked == 1
    assert dict(report.masked_by_reason) == {"stale": 1}
    con = lake.connect()
    [(code, reason, payload_path)] = con.sql("SELECT reason_code, reason, payload_path FROM quarantine").fetchall()
    assert code == "negative_count"
    assert json.loads(reason)["rejections"][0]["examples"] == ["s3"]
    kept = [json.loads(line) for line in gzip.decompress(lake.read_bytes(payload_path)).splitlines()]
    assert len(kept) == 20  # the recorded rows, all of them
    assert [r["docks"] for r in kept if r["station_id"] == "s3"] == [-1]
    assert len(lake.partitions(STATION_STATUS, city="sf")) == 2
    assert dict(con.sql("SELECT outcome, count(*) FROM ingest_log GROUP BY 1").fetchall()) == {
        "committed": 2,
        "quarantined": 1,
    }

    again = backfill(recording=small_recording, lake=lake, settings=settings)
    assert (again.committed, again.duplicates, again.quarantined) == (0, 2, 1)
    assert lake.connect().sql("SELECT count(*) FROM quarantine").fetchall() == [(1,)]  # not twice


def test_backfill_judges_snapshot_times_against_the_recorded_fetch_times(
    settings: Settings, lake: Lake, tmp_path: Path
) -> None:
    """A 2023 recording backfilled years later is fine; a snapshot whose feed clock said 1970 is not."""
    src = tmp_path / "src"
    src.mkdir()
    t0 = 1_677_700_000
    lines = []
    for last_updated, fetched in ((t0, t0 + 4), (86_400, t0 + 604), (t0 + 1200, t0 + 1204)):
        body = {
            "last_updated": last_updated,
            "ttl": 60,
            "data": {"stations": [_station(i, last_updated) for i in range(20)]},
        }
        lines.append(json.dumps({"fetched_at": fetched, "feed": "station_status", "body": body}))
    with gzip.open(src / "station_status.jsonl.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    information = _information(t0)
    _jsonl(src, "station_information", [information])
    _jsonl(
        src,
        "system_information",
        [
            {
                "last_updated": t0 - 1000,
                "ttl": 60,
                "data": {"system_id": "x", "name": "X", "timezone": "UTC", "language": "en"},
            }
        ],
    )
    recording = import_jsonl_recording(src, tmp_path / "rec")

    report = backfill(recording=recording, lake=lake, settings=settings, workers=2)
    assert (report.snapshots, report.committed, report.quarantined) == (3, 2, 1)
    assert dict(report.quarantined_by_reason) == {"implausible_time": 1}
    assert "against the recorded fetch times" in report.summary()
    assert not any(dt.startswith("1970") for dt in lake.partitions(STATION_STATUS, city="sf"))
    con = lake.connect()
    [(code, published, dt, reason)] = con.sql("SELECT reason_code, published_at, dt, reason FROM quarantine").fetchall()
    assert code == "implausible_time" and pd.Timestamp(published) == pd.Timestamp(86_400, unit="s", tz="UTC")
    assert dt == "2023-03-01"  # the day it was fetched, not 1970
    assert json.loads(reason)["rejections"][0]["field"] == "last_updated"
    log = dict(con.sql("SELECT outcome, count(*) FROM ingest_log GROUP BY 1").fetchall())
    assert log == {"committed": 2, "quarantined": 1}


def test_backfill_removes_stale_tmp_files_and_keeps_a_fresh_one(
    settings: Settings, lake: Lake, small_recording: Recording
) -> None:
    partition = f"{lake.table_root(STATION_STATUS)}/city=sf/dt=2023-03-01-19-46"
    lake.fs.makedirs(partition, exist_ok=True)
    stale = f"{partition}/station_status-20230301T194640Z.parquet.0123456789abcdef.tmp"
    fresh = f"{partition}/station_status-20230301T194640Z.parquet.fedcba9876543210.tmp"
    for path in (stale, fresh):
        lake.fs.pipe(path, b"PAR1 half a file")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))  # left by a run that died an hour ago
    report = backfill(recording=small_recording, lake=lake, settings=settings)
    assert report.stale_tmp_removed == 1
    assert not lake.fs.exists(stale)
    assert lake.fs.exists(fresh)  # might be a live writer's: a live write renames within milliseconds
