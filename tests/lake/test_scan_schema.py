"""Views skip union_by_name when files share one schema, and keep it when a table's schema moved."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bikeshare.lake.store import Lake
from bikeshare.lake.tables import INGEST_LOG


def _log_rows(batch: str) -> pd.DataFrame:
    return pd.DataFrame({"batch_id": [batch], "feed": ["station_status"], "outcome": ["committed"]})


def test_uniform_files_are_read_without_union_by_name(lake: Lake) -> None:
    for day in ("2023-03-01", "2023-03-02", "2023-03-03"):
        lake.write(INGEST_LOG, _log_rows(day), city="sf", dt=day, name="b")
    assert "union_by_name = false" in lake.scan_sql(INGEST_LOG)
    con = lake.connect()
    assert con.execute("SELECT count(*), count(DISTINCT dt) FROM ingest_log").fetchall() == [(3, 3)]


def test_an_older_file_without_a_new_column_still_reads_every_column(lake: Lake) -> None:
    # A file written before the spec gained columns: only two of today's columns.
    old_dir = lake.partition_dir(INGEST_LOG, city="sf", dt="2023-03-01")
    lake.fs.makedirs(old_dir, exist_ok=True)
    pq.write_table(pa.table({"batch_id": ["old"], "feed": ["station_status"]}), f"{old_dir}/old.parquet")
    lake.write(INGEST_LOG, _log_rows("new"), city="sf", dt="2023-03-02", name="b")
    assert "union_by_name = true" in lake.scan_sql(INGEST_LOG)
    con = lake.connect()
    rows = con.execute("SELECT batch_id, outcome FROM ingest_log ORDER BY batch_id").fetchall()
    assert rows == [("new", "committed"), ("old", None)]


def test_edge_files_are_found_per_city_and_a_city_scan_reads_only_that_city(lake: Lake) -> None:
    lake.write(INGEST_LOG, _log_rows("sf-1"), city="sf", dt="2023-03-01", name="b")
    lake.write(INGEST_LOG, _log_rows("sf-2"), city="sf", dt="2023-03-02", name="b")
    lake.fs.makedirs(lake.partition_dir(INGEST_LOG, city="sf", dt="2023-03-03"), exist_ok=True)  # no file yet
    old_dir = lake.partition_dir(INGEST_LOG, city="nyc", dt="2023-03-01")
    lake.fs.makedirs(old_dir, exist_ok=True)
    pq.write_table(pa.table({"batch_id": ["nyc-old"], "feed": ["station_status"]}), f"{old_dir}/old.parquet")
    lake.write(INGEST_LOG, _log_rows("nyc-new"), city="nyc", dt="2023-03-02", name="b")
    assert "union_by_name = false" in lake.scan_sql(INGEST_LOG, city="sf")
    assert "union_by_name = true" in lake.scan_sql(INGEST_LOG)  # nyc's oldest file lacks columns
    con = lake.connect()
    con.execute(f"CREATE VIEW sf_only AS {lake.scan_sql(INGEST_LOG, city='sf')}")
    assert con.execute("SELECT batch_id FROM sf_only ORDER BY batch_id").fetchall() == [("sf-1",), ("sf-2",)]
    assert con.execute("SELECT count(*) FROM ingest_log").fetchall() == [(4,)]


def test_connect_can_create_only_the_views_asked_for_and_what_they_read(lake: Lake) -> None:
    lake.write(INGEST_LOG, _log_rows("b1"), city="sf", dt="2023-03-01", name="b")
    con = lake.connect(views=["quality_rolling_24h", "ingest_log"])
    names = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert names == {"quality", "quality_hourly_bins", "quality_rolling_24h", "ingest_log"}
    assert con.execute("SELECT count(*) FROM ingest_log").fetchall() == [(1,)]
    assert con.execute("SELECT count(*) FROM quality_rolling_24h").fetchall() == [(0,)]
    lake.refresh_views(con, views=["station_information_current"])
    assert con.execute("SELECT count(*) FROM station_information_current").fetchall() == [(0,)]
    with pytest.raises(ValueError, match="no lake view named 'nope'"):
        lake.connect(views=["nope"])
