"""Rendering recorded rows as GBFS 1.1 / 2.3 / 3.0: schema validity and exact round trips."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bikeshare.gbfs.normalise import STATUS_COLUMNS, normalise_station_information, normalise_station_status
from bikeshare.gbfs.normalise import normalise_system_information as norm_system
from bikeshare.gbfs.normalise import normalise_vehicle_types as norm_types
from bikeshare.gbfs.recording import Recording
from bikeshare.gbfs.render import (
    GBFS_VERSIONS,
    MIN_POSIX_TIME,
    render_discovery,
    render_station_information,
    render_station_status,
    render_system_information,
    render_vehicle_types,
)

from .conftest import schema_errors

FLOOR = pd.Timestamp(MIN_POSIX_TIME, unit="s", tz="UTC")


def _wire(doc: dict) -> dict:
    """What a client parses: the document through JSON bytes."""
    return orjson.loads(orjson.dumps(doc))


def _normalised(rows: pd.DataFrame, version: str, ts: pd.Timestamp) -> pd.DataFrame:
    doc = _wire(render_station_status(rows, version=version, last_updated=ts, ttl=7))
    types = (
        None if version == "1.1" else norm_types(_wire(render_vehicle_types(version=version, last_updated=ts, ttl=7)))
    )
    return normalise_station_status(doc, vehicle_types=types)


@pytest.fixture(scope="module")
def snapshot(shipped: Recording) -> tuple[pd.Timestamp, pd.DataFrame]:
    """A recorded snapshot that holds the recording's mess (a never-reported station)."""
    for ts, rows in shipped.iter_status(start="2023-03-06T17:00Z"):
        if (rows["last_reported"] < FLOOR).any():
            return ts, rows
    raise AssertionError("the shipped slice should contain stations that never reported")


@pytest.mark.parametrize("version", GBFS_VERSIONS)
def test_every_rendered_feed_validates_against_the_official_schema(
    version: str, shipped: Recording, snapshot: tuple[pd.Timestamp, pd.DataFrame]
) -> None:
    ts, rows = snapshot
    docs = {
        "gbfs": render_discovery("http://127.0.0.1:9/", version=version, last_updated=ts, ttl=0),
        "station_status": render_station_status(rows, version=version, last_updated=ts, ttl=5),
        "station_information": render_station_information(
            shipped.information_at(ts), version=version, last_updated=ts, ttl=5
        ),
        "system_information": render_system_information(
            shipped.system_information, version=version, last_updated=ts, ttl=5
        ),
    }
    if version != "1.1":
        docs["vehicle_types"] = render_vehicle_types(version=version, last_updated=ts, ttl=5)
    for feed, doc in docs.items():
        assert schema_errors(version, feed, _wire(doc)) == [], f"{version} {feed}"


def test_schema_check_is_able_to_fail(snapshot: tuple[pd.Timestamp, pd.DataFrame]) -> None:
    ts, rows = snapshot
    doc = _wire(render_station_status(rows, version="2.3", last_updated=ts, ttl=5))
    doc["data"]["stations"][0]["num_bikes_available"] = -1
    doc["data"]["stations"][1]["is_renting"] = 1  # 0/1 flags are 1.x only
    assert len(schema_errors("2.3", "station_status", doc)) == 2


def test_three_renderings_of_a_recorded_snapshot_normalise_to_identical_rows(
    snapshot: tuple[pd.Timestamp, pd.DataFrame],
) -> None:
    ts, rows = snapshot
    frames = {v: _normalised(rows, v, ts) for v in GBFS_VERSIONS}
    pd.testing.assert_frame_equal(frames["1.1"], frames["2.3"])
    pd.testing.assert_frame_equal(frames["1.1"], frames["3.0"])
    # ... and they are the recorded rows, but for never-reported times raised to the schema minimum.
    expected = rows[list(STATUS_COLUMNS)].copy()
    expected["last_reported"] = expected["last_reported"].where(expected["last_reported"] >= FLOOR, FLOOR)
    pd.testing.assert_frame_equal(frames["3.0"], expected)


@pytest.mark.parametrize("version", GBFS_VERSIONS)
def test_information_and_system_round_trip(
    version: str, shipped: Recording, snapshot: tuple[pd.Timestamp, pd.DataFrame]
) -> None:
    ts, _ = snapshot
    info = shipped.information_at(ts)
    doc = _wire(render_station_information(info, version=version, last_updated=ts, ttl=0))
    back = normalise_station_information(doc, language="en")
    expected = info.drop(columns=["fetched_at"]).assign(last_updated=ts.as_unit("us"))
    pd.testing.assert_frame_equal(back, expected)
    system = norm_system(
        _wire(render_system_information(shipped.system_information, version=version, last_updated=ts, ttl=0))
    )
    assert (system["system_id"], system["name"], system["timezone"], system["language"]) == (
        "fgb",
        "Bay Wheels",
        "America/Los_Angeles",
        "en",
    )


def _optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


_counts = st.integers(min_value=0, max_value=200)
_station = st.fixed_dictionaries(
    {
        "station_id": st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12),
        "bikes": _optional(_counts),
        "ebikes": _optional(_counts),
        "docks": _optional(_counts),
        "bikes_disabled": _optional(_counts),
        "docks_disabled": _optional(_counts),
        "is_installed": _optional(st.booleans()),
        "is_renting": _optional(st.booleans()),
        "is_returning": _optional(st.booleans()),
        "last_reported": _optional(st.integers(min_value=MIN_POSIX_TIME, max_value=2_000_000_000)),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stations=st.lists(_station, min_size=0, max_size=8),
    version=st.sampled_from(GBFS_VERSIONS),
    updated=st.integers(min_value=MIN_POSIX_TIME, max_value=2_000_000_000),
)
def test_render_then_normalise_is_the_identity(stations: list[dict], version: str, updated: int) -> None:
    ts = pd.Timestamp(updated, unit="s", tz="UTC").as_unit("us")
    rows = pd.DataFrame(
        {
            "station_id": pd.Series([s["station_id"] for s in stations], dtype="str"),
            **{
                c: pd.array([s[c] for s in stations], dtype="Int32")
                for c in ("bikes", "ebikes", "docks", "bikes_disabled", "docks_disabled")
            },
            **{
                c: pd.array([s[c] for s in stations], dtype="boolean")
                for c in ("is_installed", "is_renting", "is_returning")
            },
            "last_reported": pd.array(
                [
                    pd.NaT if s["last_reported"] is None else pd.Timestamp(s["last_reported"], unit="s", tz="UTC")
                    for s in stations
                ],
                dtype="datetime64[us, UTC]",
            ),
            "last_updated": pd.array([ts] * len(stations), dtype="datetime64[us, UTC]"),
        }
    )
    pd.testing.assert_frame_equal(_normalised(rows, version, ts), rows)
