"""The SQL layer is read-only: ``Lake.connect_read_only`` plus ``read_only_frame`` (what ``bikeshare sql``
and the dashboard run on) refuse every statement that writes, deletes, attaches, installs or changes
a setting, and DuckDB itself refuses files outside the lake. The lake's files stay byte-identical."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import STATION_INFORMATION, STATION_STATUS
from bikeshare.lake.views import ReadOnlyQueryError, read_only_frame

T0 = pd.Timestamp("2023-03-01 10:00", tz="UTC")


def _status(n: int, minute: int) -> pd.DataFrame:
    ts = T0 + pd.Timedelta(minutes=minute)
    return pd.DataFrame(
        {"station_id": [f"s{i}" for i in range(n)], "bikes": range(n), "last_updated": [ts] * n, "masked": False}
    )


def _information(n: int) -> pd.DataFrame:
    return pd.DataFrame({"station_id": [f"s{i}" for i in range(n)], "name": [f"Station {i}" for i in range(n)]})


def fill(lake: Lake) -> None:
    for minute in (0, 5, 10):
        lake.write(STATION_STATUS, _status(4, minute), city="sf", dt=f"2023-03-01-10-{minute:02d}", name="a")
    for dt in ("2023-03-01-09-00", "2023-03-02-09-00"):
        lake.write(STATION_INFORMATION, _information(3), city="sf", dt=dt, name="v")


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def flat(output: str) -> str:
    """CLI output with the error panel's frame and line wrapping removed."""
    return " ".join(output.replace("│", " ").split())


def attack_statements(lake: Lake, outside: Path) -> list[tuple[str, str]]:
    """(statement, the kind the refusal must name): each one wrote, deleted or read on a plain connection."""
    partition = lake.file_path(STATION_STATUS, city="sf", dt="2023-03-01-10-05", name="a")
    information = lake.table_root(STATION_INFORMATION)
    return [
        (f"COPY (SELECT * FROM station_status WHERE false) TO '{partition}' (FORMAT parquet)", "COPY ... TO"),
        (
            f"COPY (SELECT * EXCLUDE (dt) FROM station_information_versions WHERE false) TO '{information}' "
            "(FORMAT parquet, PARTITION_BY (city), OVERWRITE)",
            "COPY ... TO",
        ),
        (f"ATTACH '{outside / 'evil.duckdb'}' AS evil", "ATTACH"),
        (f"ATTACH '{lake.root}/evil.duckdb' AS evil", "ATTACH"),
        ("CREATE TABLE grabbed AS SELECT * FROM station_status", "CREATE TABLE"),
        ("INSERT INTO station_status SELECT * FROM station_status", "INSERT"),
        ("DELETE FROM station_status", "DELETE"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("SET lock_configuration = false", "SET"),
        ("UPDATE EXTENSIONS", "UPDATE"),
        ("SELECT * FROM (PIVOT station_status ON city USING count(*))", "PIVOT"),
        (f"WITH w AS (COPY (SELECT 1 AS x) TO '{lake.root}/w.csv') SELECT * FROM w", "COPY ... TO inside WITH"),
        (f"EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{lake.root}/e.csv'", "COPY ... TO"),
        (f"SELECT 1; COPY (SELECT 1 AS x) TO '{lake.root}/m.csv'", "COPY ... TO"),
        (f"EXPORT DATABASE '{outside / 'export'}'", "EXPORT"),
    ]


def test_every_write_statement_is_refused_and_the_lake_is_unchanged(lake: Lake, tmp_path: Path) -> None:
    fill(lake)
    outside = tmp_path / "outside"
    outside.mkdir()
    before, around = snapshot(Path(lake.root)), snapshot(tmp_path)
    con = lake.connect_read_only()
    for statement, kind in attack_statements(lake, outside):
        with pytest.raises(
            ReadOnlyQueryError, match="^" + re.escape(f"bikeshare sql is read-only: {kind} is not allowed")
        ):
            read_only_frame(con, statement)
    with pytest.raises(ReadOnlyQueryError, match=r"bikeshare sql reads only the lake: .*/etc/hostname"):
        read_only_frame(con, "SELECT * FROM read_text('/etc/hostname')")
    assert snapshot(Path(lake.root)) == before
    assert snapshot(tmp_path) == around  # nothing created next to the lake either
    # The views still read the lake after every refusal.
    assert read_only_frame(con, "SELECT count(*) AS n FROM station_status")["n"].tolist() == [12]


def test_duckdb_itself_refuses_files_outside_the_lake_and_setting_changes(lake: Lake, tmp_path: Path) -> None:
    """Below the statement check: the connection's own configuration, for code that runs SQL directly."""
    fill(lake)
    con = lake.connect_read_only()
    with pytest.raises(duckdb.PermissionException):
        con.execute("SELECT * FROM read_text('/etc/hostname')").fetchall()
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"COPY (SELECT 1 AS x) TO '{tmp_path / 'out.csv'}'").fetchall()
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"ATTACH '{tmp_path / 'x.duckdb'}' AS x").fetchall()
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true").fetchall()
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET allowed_directories = ['/']").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("INSTALL httpfs").fetchall()
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.duckdb").exists()
    # Views created after the lock (the dashboard creates them as pages need them) read the lake.
    lake.refresh_views(con, views=["station_information_versions"])
    assert con.execute("SELECT count(*) FROM station_information_versions").fetchall() == [(6,)]


def test_reading_queries_still_work(lake: Lake) -> None:
    fill(lake)
    con = lake.connect_read_only()
    frame = read_only_frame(con, "SELECT dt, count(*) AS n FROM station_status GROUP BY dt ORDER BY dt")
    assert frame["n"].tolist() == [4, 4, 4]
    assert read_only_frame(
        con, "SELECT bikes FROM station_status WHERE station_id = ? AND dt = ?", ["s3", "2023-03-01-10-05"]
    )["bikes"].tolist() == [3]
    assert "station_id" in read_only_frame(con, "DESCRIBE station_status")["column_name"].tolist()
    assert "station_status" in read_only_frame(con, "SHOW TABLES")["name"].tolist()
    assert len(read_only_frame(con, "SUMMARIZE station_status")) > 0
    assert len(read_only_frame(con, "EXPLAIN SELECT * FROM station_status")) == 1
    union = "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r"
    assert read_only_frame(con, union)["n"].tolist() == [1, 2, 3]
    assert read_only_frame(con, "SELECT 'COPY x TO y' AS text")["text"].tolist() == ["COPY x TO y"]


def test_an_s3_lake_reads_through_the_guard_and_refuses_writes(s3_endpoint: str, tmp_path: Path) -> None:
    lake = Lake.open("s3://lake/read-only", s3_endpoint_url=s3_endpoint)  # moto keeps objects between tests
    fill(lake)
    before = sorted(lake.fs.find("lake/read-only"))
    sizes = {p: lake.fs.info(p)["size"] for p in before}
    con = lake.connect_read_only()
    assert read_only_frame(con, "SELECT count(*) AS n FROM station_status")["n"].tolist() == [12]
    partition = lake.file_path(STATION_STATUS, city="sf", dt="2023-03-01-10-05", name="a")
    with pytest.raises(ReadOnlyQueryError, match=re.escape("COPY ... TO is not allowed")):
        read_only_frame(con, f"COPY (SELECT * FROM station_status WHERE false) TO '{partition}' (FORMAT parquet)")
    with pytest.raises(ReadOnlyQueryError, match="reads only the lake"):
        read_only_frame(con, "SELECT * FROM read_text('/etc/hostname')")
    with pytest.raises(duckdb.PermissionException):  # another bucket (or prefix) is outside the lake
        con.execute("SELECT * FROM read_parquet('s3://lake/read-only2/x.parquet')").fetchall()
    assert sorted(lake.fs.find("lake/read-only")) == before
    assert {p: lake.fs.info(p)["size"] for p in before} == sizes


def test_the_cli_refuses_every_write_and_leaves_the_lake_unchanged(lake: Lake, tmp_path: Path) -> None:
    fill(lake)
    outside = tmp_path / "outside"
    outside.mkdir()
    env = {"BIKESHARE_LAKE_URI": lake.root, "BIKESHARE_STATE_DIR": str(tmp_path / "state")}
    before, around = snapshot(Path(lake.root)), snapshot(tmp_path)
    runner = CliRunner()
    for statement, kind in attack_statements(lake, outside):
        result = runner.invoke(app, ["sql", statement], env=env)
        assert result.exit_code == 2, (statement, result.output)
        assert f"bikeshare sql is read-only: {kind} is not allowed" in flat(result.output), result.output
    result = runner.invoke(app, ["sql", "SELECT * FROM read_text('/etc/hostname')"], env=env)
    assert result.exit_code == 2 and "reads only the lake" in flat(result.output), result.output
    assert snapshot(Path(lake.root)) == before
    assert snapshot(tmp_path) == around
    result = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM station_status", "--format", "json"], env=env)
    assert result.exit_code == 0 and result.output.strip() == '[{"n":12}]', result.output
