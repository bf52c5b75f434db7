from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.lake.store import Lake, parse_partition_value, partition_value
from bikeshare.lake.tables import INGEST_LOG, STATION_STATUS, Grain


def _status_rows(n: int) -> pd.DataFrame:
    ts = pd.Timestamp("2023-03-01 10:05:00", tz="UTC")
    return pd.DataFrame(
        {
            "station_id": [f"s{i}" for i in range(n)],
            "bikes": range(n),
            "docks": [10] * n,
            "is_installed": [True] * n,
            "last_reported": [ts] * n,
            "last_updated": [ts] * n,
            "masked": [False] * n,
        }
    )


def test_partition_values_round_trip() -> None:
    ts = pd.Timestamp("2023-03-01 10:05:59", tz="UTC")
    assert partition_value(ts, Grain.MINUTE) == "2023-03-01-10-05"
    assert partition_value(ts, Grain.DAY) == "2023-03-01"
    assert parse_partition_value("2023-03-01-10-05") == pd.Timestamp("2023-03-01 10:05", tz="UTC")
    with pytest.raises(ValueError, match="no timezone"):
        partition_value(pd.Timestamp("2023-03-01"), Grain.DAY)


def test_write_is_idempotent_and_views_read_it(lake: Lake) -> None:
    path = lake.write(STATION_STATUS, _status_rows(3), city="sf", dt="2023-03-01-10-05", name="snap-1")
    assert path is not None
    assert lake.write(STATION_STATUS, _status_rows(3), city="sf", dt="2023-03-01-10-05", name="snap-1") is None
    con = lake.connect()
    assert con.execute("SELECT count(*) FROM station_status WHERE city = 'sf'").fetchall() == [(3,)]
    assert lake.partitions(STATION_STATUS, city="sf") == ["2023-03-01-10-05"]
    assert not [p for p in lake.fs.find(lake.root) if p.endswith(".tmp")]


def test_empty_tables_have_typed_views(lake: Lake) -> None:
    con = lake.connect()
    assert con.execute("SELECT count(*) FROM ingest_log").fetchall() == [(0,)]
    cols = {r[0]: r[1] for r in con.sql("DESCRIBE station_status").fetchall()}
    assert cols["last_reported"] == "TIMESTAMP WITH TIME ZONE"
    assert lake.read(INGEST_LOG, city="sf").num_rows == 0


def test_out_of_contract_columns_are_refused(lake: Lake) -> None:
    frame = _status_rows(1).assign(surprise=1)
    with pytest.raises(ValueError, match="surprise"):
        lake.write(STATION_STATUS, frame, city="sf", dt="2023-03-01-10-05", name="x")
