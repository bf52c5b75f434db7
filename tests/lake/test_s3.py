"""The lake on S3 (moto's server on loopback): atomic idempotent writes, listings and DuckDB views."""

from __future__ import annotations

import pandas as pd

from bikeshare.lake.store import Lake
from bikeshare.lake.tables import STATION_STATUS


def _rows(n: int, minute: int) -> pd.DataFrame:
    ts = pd.Timestamp("2023-03-01 10:00", tz="UTC") + pd.Timedelta(minutes=minute)
    return pd.DataFrame(
        {
            "station_id": [f"s{i}" for i in range(n)],
            "bikes": range(n),
            "last_updated": [ts] * n,
            "masked": [False] * n,
        }
    )


def test_s3_lake_writes_lists_and_serves_views(s3_endpoint: str) -> None:
    lake = Lake.open("s3://lake/prefix", s3_endpoint_url=s3_endpoint)
    assert lake.is_remote
    first = lake.write(STATION_STATUS, _rows(3, 5), city="sf", dt="2023-03-01-10-05", name="a")
    assert first == "s3://lake/prefix/raw/station_status/city=sf/dt=2023-03-01-10-05/a.parquet"
    assert lake.write(STATION_STATUS, _rows(3, 5), city="sf", dt="2023-03-01-10-05", name="a") is None
    assert lake.connect().sql("SELECT count(*) FROM station_status").fetchall() == [(3,)]

    lake.write(STATION_STATUS, _rows(2, 6), city="sf", dt="2023-03-01-10-06", name="b")
    assert lake.partitions(STATION_STATUS, city="sf") == ["2023-03-01-10-05", "2023-03-01-10-06"]
    con = lake.connect()
    assert con.sql("SELECT dt, count(*) FROM station_status GROUP BY dt ORDER BY dt").fetchall() == [
        ("2023-03-01-10-05", 3),
        ("2023-03-01-10-06", 2),
    ]
    assert con.sql("SELECT count(*) FROM ingest_log").fetchall() == [(0,)]  # empty typed view
    assert lake.read(STATION_STATUS, city="sf", dts=["2023-03-01-10-06"]).num_rows == 2

    lake.write_bytes("s3://lake/prefix/quarantine/city=sf/dt=2023-03-01/x.json.gz", b"payload")
    assert lake.read_bytes("s3://lake/prefix/quarantine/city=sf/dt=2023-03-01/x.json.gz") == b"payload"
    # Another process (a fresh Lake) sees the same objects.
    other = Lake.open("s3://lake/prefix", s3_endpoint_url=s3_endpoint)
    assert other.connect().sql("SELECT count(*) FROM station_status").fetchall() == [(5,)]
