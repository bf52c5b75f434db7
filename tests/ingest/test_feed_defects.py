"""Defective feeds over real HTTP (issue 15): huge integer times, implausible snapshot times, wrong types."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.gbfs.client import GbfsClient
from bikeshare.ingest.poller import Outcome, ingest_once
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import STATION_STATUS
from bikeshare.settings import Settings

from .conftest import StaticFeed, feed_station, information_doc, status_doc

STATIONS = 25


def serve(feed: StaticFeed, last_updated: int, stations: list[dict[str, Any]]) -> None:
    feed.docs["station_status"] = status_doc(last_updated, stations)
    feed.docs["station_information"] = information_doc(last_updated - 600, STATIONS)


def log_rows(lake: Lake) -> list[dict[str, Any]]:
    return lake.connect().sql("SELECT * FROM ingest_log ORDER BY fetched_at").df().to_dict("records")


def quarantine_rows(lake: Lake) -> list[dict[str, Any]]:
    return lake.connect().sql("SELECT * FROM quarantine WHERE feed = 'station_status'").df().to_dict("records")


def now_s() -> int:
    return int(time.time()) - 5


# --- item 1: an integer time far too large ---------------------------------------------------------


@pytest.mark.parametrize("huge", [10**15, 10**18])
def test_cli_ingest_once_masks_a_station_whose_integer_last_reported_is_out_of_range(
    tmp_path: Path, static_feed: StaticFeed, huge: int
) -> None:
    t = now_s()
    serve(static_feed, t, [feed_station(i, huge if i == 3 else t - 30) for i in range(STATIONS)])
    env = {
        "BIKESHARE_LAKE_URI": str(tmp_path / "lake"),
        "BIKESHARE_STATE_DIR": str(tmp_path / "state"),
        "BIKESHARE_WEATHER_ENABLED": "false",
    }
    result = CliRunner().invoke(app, ["ingest", "--feed", static_feed.discovery_url, "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("committed")

    lake = Lake.open(env["BIKESHARE_LAKE_URI"])
    [row] = log_rows(lake)
    assert row["outcome"] == "committed"
    assert row["rows_in"] == STATIONS and row["rows_masked"] == 1
    assert json.loads(row["masked_by_reason"]) == {"wrong_type": 1}
    status = lake.read(STATION_STATUS, city="sf").to_pandas().set_index("station_id")
    assert status.loc["s3", "masked"] and status.loc["s3", "mask_reasons"] == "wrong_type"
    assert pd.isna(status.loc["s3", "last_reported"])
    assert not status.drop(index="s3")["masked"].any()


def test_every_station_with_an_out_of_range_time_quarantines_the_batch_and_logs_it(
    settings: Settings, lake: Lake, static_feed: StaticFeed, make_client: Callable[..., GbfsClient]
) -> None:
    t = now_s()
    serve(static_feed, t, [feed_station(i, 10**18) for i in range(STATIONS)])
    with make_client(static_feed.discovery_url, follow_replay=False) as client:
        outcome = ingest_once(client=client, lake=lake, settings=settings)
    assert outcome.outcome == Outcome.QUARANTINED
    assert lake.partitions(STATION_STATUS, city="sf") == []
    [row] = quarantine_rows(lake)
    assert row["reason_code"] == "wrong_type"
    [rejection] = json.loads(row["reason"])["rejections"]
    assert rejection["field"] == "last_reported" and rejection["values"][0] == str(10**18)
    payload = json.loads(gzip.decompress(lake.read_bytes(row["payload_path"])))
    assert payload == static_feed.docs["station_status"]
    [log] = log_rows(lake)
    assert log["outcome"] == "quarantined" and log["reason"].startswith("wrong_type: ")


# --- item 4: implausible snapshot times ----------------------------------------------------------


@pytest.mark.parametrize(
    "last_updated",
    [
        3600,  # 1970-01-01T01:00Z
        1_000_000_000,  # 2001-09-09
        4_102_444_800,  # 2100-01-01
    ],
)
def test_a_snapshot_far_from_the_fetch_time_is_quarantined_as_implausible_time(
    settings: Settings,
    lake: Lake,
    static_feed: StaticFeed,
    make_client: Callable[..., GbfsClient],
    last_updated: int,
) -> None:
    serve(static_feed, last_updated, [feed_station(i, last_updated - 30) for i in range(STATIONS)])
    with make_client(static_feed.discovery_url, follow_replay=False) as client:
        outcome = ingest_once(client=client, lake=lake, settings=settings)
    assert outcome.outcome == Outcome.QUARANTINED, outcome.summary()
    assert (outcome.reason or "").startswith("implausible_time: ")
    assert lake.partitions(STATION_STATUS, city="sf") == []
    [row] = quarantine_rows(lake)
    assert row["reason_code"] == "implausible_time"
    rejection = json.loads(row["reason"])["rejections"][0]
    assert rejection["field"] == "last_updated"
    assert pd.Timestamp(row["published_at"]) == pd.Timestamp(last_updated, unit="s", tz="UTC")
    assert [r["outcome"] for r in log_rows(lake)] == ["quarantined"]


def test_the_snapshot_time_window_comes_from_the_settings(
    tmp_path: Path, static_feed: StaticFeed, make_client: Callable[..., GbfsClient]
) -> None:
    t = now_s()
    serve(static_feed, t - 7200, [feed_station(i, t - 7230) for i in range(STATIONS)])  # two hours old
    strict = Settings(
        lake_uri=str(tmp_path / "strict"),
        state_dir=tmp_path / "state",
        weather_enabled=False,
        contract_max_snapshot_age_s=3600,
    )
    default = Settings(lake_uri=str(tmp_path / "default"), state_dir=tmp_path / "state", weather_enabled=False)
    outcomes = {}
    for name, settings in (("strict", strict), ("default", default)):
        with make_client(static_feed.discovery_url, follow_replay=False) as client:
            outcomes[name] = ingest_once(client=client, lake=Lake.open(settings.lake_uri), settings=settings)
    assert outcomes["strict"].outcome == Outcome.QUARANTINED
    assert (outcomes["strict"].reason or "").startswith("implausible_time")
    assert outcomes["default"].outcome == Outcome.COMMITTED, outcomes["default"].summary()

    ahead = Settings(
        lake_uri=str(tmp_path / "ahead"),
        state_dir=tmp_path / "state",
        weather_enabled=False,
        contract_snapshot_future_skew_s=60,
    )
    serve(static_feed, t + 600, [feed_station(i, t + 570) for i in range(STATIONS)])  # ten minutes ahead
    with make_client(static_feed.discovery_url, follow_replay=False) as client:
        outcome = ingest_once(client=client, lake=Lake.open(ahead.lake_uri), settings=ahead)
    assert (outcome.reason or "").startswith("implausible_time")


# --- item 7: wrong types and numeric strings ------------------------------------------------------


@pytest.mark.parametrize("value", ["many", True, 2.5])
def test_a_count_of_the_wrong_type_is_reported_as_wrong_type_with_an_example(
    settings: Settings, lake: Lake, static_feed: StaticFeed, make_client: Callable[..., GbfsClient], value: Any
) -> None:
    t = now_s()
    serve(static_feed, t, [feed_station(i, t - 30, num_bikes_available=value) for i in range(STATIONS)])
    with make_client(static_feed.discovery_url, follow_replay=False) as client:
        outcome = ingest_once(client=client, lake=lake, settings=settings)
    assert outcome.outcome == Outcome.QUARANTINED
    [row] = quarantine_rows(lake)
    assert row["reason_code"] == "wrong_type"
    rejections = json.loads(row["reason"])["rejections"]
    assert [(r["code"], r["field"]) for r in rejections] == [("wrong_type", "bikes")]
    assert rejections[0]["share"] == 1.0
    assert rejections[0]["values"][0] == orjson.dumps(value).decode()
    assert "missing" not in rejections[0]["message"]
    assert orjson.dumps(value).decode() in (outcome.reason or "")


def test_a_few_wrong_types_mask_their_rows_and_integral_numeric_strings_are_converted_and_counted(
    settings: Settings, lake: Lake, static_feed: StaticFeed, make_client: Callable[..., GbfsClient]
) -> None:
    t = now_s()
    stations = [feed_station(i, t - 30) for i in range(STATIONS)]
    stations[0]["num_docks_available"] = "many"  # 1 of 25: under the threshold, masked
    for station in stations[5:15]:
        station["num_bikes_available"] = "7"  # numeric strings: converted and counted
    stations[20]["num_docks_available"] = "7"
    stations[21]["num_bikes_disabled"] = "2.5"  # not integral: a wrong type, not a conversion
    serve(static_feed, t, stations)
    with make_client(static_feed.discovery_url, follow_replay=False) as client:
        outcome = ingest_once(client=client, lake=lake, settings=settings)
    assert outcome.outcome == Outcome.COMMITTED, outcome.summary()
    assert outcome.converted_by_field == {"bikes": 10, "docks": 1}
    [log] = log_rows(lake)
    assert json.loads(log["converted_by_field"]) == {"bikes": 10, "docks": 1}
    assert json.loads(log["masked_by_reason"]) == {"wrong_type": 2}
    status = lake.read(STATION_STATUS, city="sf").to_pandas().set_index("station_id")
    assert (status.loc[[f"s{i}" for i in range(5, 15)], "bikes"] == 7).all()
    assert status.loc["s20", "docks"] == 7
    assert status.loc[["s0", "s21"], "mask_reasons"].tolist() == ["wrong_type", "wrong_type"]
    assert not status.drop(index=["s0", "s21"])["masked"].any()


# --- never crash, always a log row ----------------------------------------------------------------

HOSTILE: dict[str, dict[str, Any]] = {
    "unhashable vehicle_type_id": {"vehicle_types_available": [{"vehicle_type_id": ["e"], "count": 1}]},
    "count beyond 64 bits": {"num_bikes_available": 10**20},
    "time beyond 64 bits": {"last_reported": 10**20},
    "nested junk": {"num_docks_available": {"n": 1}, "is_renting": [True], "station_id": ["s"]},
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_station_entries_never_crash_the_ingest_and_always_leave_a_log_row(
    settings: Settings, lake: Lake, static_feed: StaticFeed, make_client: Callable[..., GbfsClient], name: str
) -> None:
    t = now_s()
    stations = [feed_station(i, t - 30) for i in range(STATIONS)]
    stations[0].update(HOSTILE[name])
    serve(static_feed, t, stations)
    static_feed.docs["vehicle_types"] = {
        "last_updated": t,
        "ttl": 0,
        "version": "2.3",
        "data": {"vehicle_types": [{"vehicle_type_id": "e", "form_factor": "bicycle", "propulsion_type": "electric"}]},
    }
    with make_client(static_feed.discovery_url, follow_replay=False) as client:
        outcome = ingest_once(client=client, lake=lake, settings=settings)
    assert outcome.outcome in (Outcome.COMMITTED, Outcome.QUARANTINED)
    [log] = log_rows(lake)
    assert (log["outcome"], log["batch_id"]) == (outcome.outcome, outcome.batch_id)
    if outcome.outcome == Outcome.QUARANTINED:
        [row] = quarantine_rows(lake)
        assert json.loads(gzip.decompress(lake.read_bytes(row["payload_path"]))) == static_feed.docs["station_status"]
    print(name, outcome.summary())
