"""The dashboard's lake connection has the read-only guard of ``bikeshare sql``: its SQL cannot write
into the lake, read other files or change a setting, and the pages' own queries still run."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from bikeshare.dashboard.queries import LakeReader, Source, run_sql
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import STATION_STATUS


def _fill(lake: Lake) -> None:
    for minute in (0, 5):
        ts = pd.Timestamp("2023-03-01 10:00", tz="UTC") + pd.Timedelta(minutes=minute)
        rows = pd.DataFrame({"station_id": ["a", "b"], "bikes": [1, 2], "last_updated": [ts, ts], "masked": False})
        lake.write(STATION_STATUS, rows, city="sf", dt=f"2023-03-01-10-{minute:02d}", name="a")


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_the_dashboard_reader_refuses_writes_and_outside_files(lake: Lake, tmp_path: Path) -> None:
    _fill(lake)
    before, around = _snapshot(Path(lake.root)), _snapshot(tmp_path)
    partition = lake.file_path(STATION_STATUS, city="sf", dt="2023-03-01-10-05", name="a")
    src = Source(lake_uri=lake.root, s3_endpoint_url=None, city="sf")

    assert run_sql(src, 0, "SELECT count(*) AS n FROM station_status")["n"].tolist() == [4]
    with pytest.raises(ValueError, match=re.escape("read-only: COPY ... TO is not allowed")):
        run_sql(src, 0, f"COPY (SELECT * FROM station_status WHERE false) TO '{partition}' (FORMAT parquet)")
    with pytest.raises(ValueError, match="read-only: ATTACH is not allowed"):
        run_sql(src, 0, f"ATTACH '{tmp_path / 'x.duckdb'}' AS x")
    with pytest.raises(ValueError, match="reads only the lake"):
        run_sql(src, 0, "SELECT * FROM read_text('/etc/hostname')")

    # The connection itself, as the pages' own queries (TEMP TABLE set-ups included) use it.
    reader = LakeReader(lake)
    try:
        [rows] = reader.frames(
            [("CREATE TEMP TABLE recent AS SELECT * FROM station_status WHERE dt = ?", ["2023-03-01-10-05"])],
            ["SELECT count(*) AS n FROM recent"],
        )
        assert rows["n"].tolist() == [2]
        with pytest.raises(duckdb.PermissionException):
            reader.frame("SELECT * FROM read_text('/etc/hostname')")
        with pytest.raises(duckdb.PermissionException):
            reader.frame(f"COPY (SELECT 1 AS x) TO '{tmp_path / 'out.csv'}'")
        with pytest.raises(duckdb.Error, match="locked"):
            reader.frame("SET enable_external_access = true")
    finally:
        reader.close()
    assert _snapshot(Path(lake.root)) == before
    assert _snapshot(tmp_path) == around


def test_the_reader_follows_compaction_and_new_days_without_a_restart(lake: Lake) -> None:
    from bikeshare.lake.compaction import compact

    def snapshot(day: str, minute: int) -> None:
        ts = pd.Timestamp(f"{day} 10:{minute:02d}", tz="UTC")
        rows = pd.DataFrame({"station_id": ["a", "b"], "bikes": [1, 2], "last_updated": [ts, ts], "masked": False})
        lake.write(STATION_STATUS, rows, city="sf", dt=f"{day}-10-{minute:02d}", name="a")

    def count(reader: LakeReader) -> int:
        return int(reader.frame("SELECT count(*) AS n FROM station_status")["n"].iloc[0])

    for minute in (0, 5):
        snapshot("2023-03-01", minute)
        snapshot("2023-03-02", minute)
    reader = LakeReader(lake)
    try:
        assert count(reader) == 8
        compact(lake, city="sf", before="2023-03-02", remove_after_s=0.0)  # day 1 folded, its minutes gone
        snapshot("2023-03-03", 0)  # a new day after the views were bound
        reader.refresh(1)
        assert count(reader) == 10 == lake.read(STATION_STATUS, city="sf").num_rows
        reader.refresh(1)  # the same cache period: nothing is re-read
        compact(lake, city="sf", before="2023-03-03", remove_after_s=0.0)
        reader.refresh(2)
        assert count(reader) == 10
    finally:
        reader.close()
