"""Property: ingesting snapshots twice, in any order, gives the lake of ingesting each once."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bikeshare.gbfs.recording import Recording
from bikeshare.gbfs.render import render_station_status
from bikeshare.ingest.poller import IngestState, Outcome, ingest_status_payload
from bikeshare.ingest.sink import InformationVersion, IngestSink, information_content_hash
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import QUARANTINE, STATION_STATUS
from bikeshare.settings import Settings

STATIONS = 60


@pytest.fixture(scope="module")
def payloads(recording: Recording) -> list[tuple[bytes, pd.Timestamp]]:
    """Five real snapshots (one with 10% of bikes missing) and a malformed body."""
    times = recording.snapshot_times()[300:305]
    out = []
    for i, t in enumerate(times):
        doc = render_station_status(recording.status_at(t).head(STATIONS), version="2.3", last_updated=t, ttl=60)
        if i == 2:
            for station in doc["data"]["stations"][: STATIONS // 10]:
                station.pop("num_bikes_available")
        out.append((orjson.dumps(doc), t + pd.Timedelta(seconds=5)))
    out.append((b'{"last_updated": 16777', times[0] + pd.Timedelta(seconds=7)))
    return out


@pytest.fixture(scope="module")
def information(recording: Recording) -> InformationVersion:
    valid_from, rows = recording.information_versions()[0]
    frame = rows.loc[:, ["station_id", "name", "short_name", "capacity", "lat", "lon", "region_id"]]
    return InformationVersion(frame=frame, content_hash=information_content_hash(frame), valid_from=valid_from)


def _ingest(root: Path, order: list[int], payloads: list[tuple[bytes, pd.Timestamp]], info: InformationVersion) -> Lake:
    lake = Lake.open(str(root))
    settings_ = Settings(lake_uri=str(root), state_dir=root / "state", weather_enabled=False)
    IngestSink(lake, "sf").write_information(info, fetched_at=info.valid_from, batch_id="info")
    state = IngestState()
    for i in order:
        body, fetched_at = payloads[i]
        ingest_status_payload(payload=body, fetched_at=fetched_at, lake=lake, settings=settings_, state=state)
    return lake


def _content(lake: Lake) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    files = sorted(p.removeprefix(lake.root) for p in lake.fs.find(lake.root) if "/raw/" in p or "/quarantine/" in p)
    status = lake.read(STATION_STATUS, city="sf").to_pandas().sort_values(["last_updated", "station_id"])
    quarantine = lake.read(QUARANTINE, city="sf").to_pandas().sort_values("batch_id")
    quarantine["payload_path"] = quarantine["payload_path"].str.removeprefix(lake.root)
    return files, status.reset_index(drop=True), quarantine.reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory,
    payloads: list[tuple[bytes, pd.Timestamp]],
    information: InformationVersion,
) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    lake = _ingest(tmp_path_factory.mktemp("reference"), list(range(len(payloads))), payloads, information)
    outcomes = lake.connect().sql("SELECT outcome, count(*) FROM ingest_log GROUP BY 1").fetchall()
    assert dict(outcomes) == {Outcome.COMMITTED: 4, Outcome.QUARANTINED: 2}
    return _content(lake)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.permutations(range(6)), second=st.permutations(range(6)))
def test_ingesting_twice_in_any_order_gives_the_same_lake(
    first: list[int],
    second: list[int],
    payloads: list[tuple[bytes, pd.Timestamp]],
    information: InformationVersion,
    reference: tuple[list[str], pd.DataFrame, pd.DataFrame],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        lake = _ingest(Path(folder), [*first, *second], payloads, information)
        files, status, quarantine = _content(lake)
        outcomes = dict(lake.connect().sql("SELECT outcome, count(*) FROM ingest_log GROUP BY 1").fetchall())
    assert files == reference[0]
    pd.testing.assert_frame_equal(status, reference[1])
    pd.testing.assert_frame_equal(quarantine, reference[2])
    assert outcomes == {Outcome.COMMITTED: 4, Outcome.DUPLICATE: 4, Outcome.QUARANTINED: 4}
