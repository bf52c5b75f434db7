"""Compaction of minute-grain tables: same rows before and after, crash-safe (kill -9), idempotent, on S3."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from bikeshare.gbfs.recording import Recording, import_jsonl_recording
from bikeshare.ingest.backfill import backfill
from bikeshare.ingest.sink import IngestSink
from bikeshare.lake.compaction import MINUTE_TABLES, compact
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import INFERENCE, STATION_STATUS, TableSpec
from bikeshare.settings import Settings

CITIES = ("sf", "oslo")
DAY0 = pd.Timestamp("2023-03-01", tz="UTC")


def _status(stations: int, at: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "station_id": [f"s{(i * 7) % stations:02d}" for i in range(stations)],
            "bikes": [int(at.minute + i) for i in range(stations)],
            "last_updated": [at] * stations,
            "masked": [i == 0 for i in range(stations)],
        }
    )


def _inference(stations: int, at: pd.Timestamp, alias: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "station_id": [f"s{i:02d}" for i in range(stations)],
            "feature_time": [at] * stations,
            "alias": [alias] * stations,
            "probability": [i / stations for i in range(stations)],
        }
    )


def _dt(at: pd.Timestamp) -> str:
    return at.strftime("%Y-%m-%d-%H-%M")


def _fill(lake: Lake, minutes: list[tuple[str, int]], stations: int = 4) -> None:
    """station_status and inference files at ``(city, minute offset from DAY0)``."""
    for city, offset in minutes:
        at = DAY0 + pd.Timedelta(minutes=offset)
        lake.write(STATION_STATUS, _status(stations, at), city=city, dt=_dt(at), name=f"station_status-{offset}")
        for alias in ("production", "staging"):
            lake.write(INFERENCE, _inference(stations, at, alias), city=city, dt=_dt(at), name=alias)


def _snapshot(lake: Lake, cities: tuple[str, ...] = CITIES) -> dict[str, object]:
    """What every reader sees: the views, Lake.read, scan_sql of some partitions, partitions, written."""
    con = lake.connect(views=["station_status", "inference"])
    out: dict[str, object] = {}
    for spec in (STATION_STATUS, INFERENCE):
        cols = ", ".join([*spec.schema.names, "city", "dt"])
        out[f"view:{spec.name}"] = con.sql(f"SELECT {cols} FROM {spec.name} ORDER BY ALL").fetchall()
        if lake.is_remote:  # fewer round trips to moto: the views, the listings and the ingest's lookups
            out[f"written:{spec.name}"] = sorted(lake.written(spec, city="sf"))
            out[f"partitions:{spec.name}"] = lake.partitions(spec, city="sf")
            continue
        for city in cities:
            dts = lake.partitions(spec, city=city)
            out[f"partitions:{spec.name}:{city}"] = dts
            out[f"dirs:{spec.name}:{city}"] = lake.partition_dirs(spec, city=city)
            out[f"written:{spec.name}:{city}"] = sorted(lake.written(spec, city=city))
            frame = lake.read(spec, city=city).to_pandas()
            out[f"read:{spec.name}:{city}"] = sorted(map(tuple, frame.astype(str).to_numpy().tolist()))
            some = dts[::3]
            part = lake.read(spec, city=city, dts=some).to_pandas()
            out[f"read-some:{spec.name}:{city}"] = sorted(map(tuple, part.astype(str).to_numpy().tolist()))
            sql = lake.scan_sql(spec, city=city, dts=some) if some else None
            if sql:
                rows = con.sql(f"SELECT {cols} FROM ({sql}) ORDER BY ALL").fetchall()
                out[f"scan-some:{spec.name}:{city}"] = rows
            day = lake.partitions(spec, city=city, dt_glob="2023-03-02*")
            out[f"day-glob:{spec.name}:{city}"] = day
    con.close()
    return out


def _minute_files(lake: Lake, spec: TableSpec, city: str) -> int:
    return sum(len(names) for names in lake.minute_files(spec, city=city).values())


MINUTES = [(c, m) for c in CITIES for m in (5, 6, 700, 1439, 1440 + 3, 1440 + 800, 2 * 1440 + 10, 2 * 1440 + 11)]


def test_compaction_keeps_every_row_and_leaves_one_file_per_day(lake: Lake) -> None:
    _fill(lake, MINUTES)
    before = _snapshot(lake)
    report = compact(lake, city="sf", before="2023-03-03")
    compact(lake, city="oslo", before="2023-03-03")
    assert report.days_compacted == 4 and report.files_removed == 6 + 12  # station_status 6, inference 12
    assert _snapshot(lake) == before
    for city in CITIES:
        assert lake.compacted_days(STATION_STATUS, city=city) == ["2023-03-01", "2023-03-02"]
        assert _minute_files(lake, STATION_STATUS, city) == 2  # today's minutes stay open
        assert _minute_files(lake, INFERENCE, city) == 4
    # Sorted by station then time, in row groups with statistics DuckDB can prune by.
    path = lake.compacted_path(STATION_STATUS, city="sf", day="2023-03-01")
    table = pq.read_table(path)
    keys = list(zip(table.column("station_id").to_pylist(), table.column("dt").to_pylist(), strict=True))
    assert keys == sorted(keys)
    stats = pq.ParquetFile(path).metadata.row_group(0).column(0).statistics
    assert stats is not None and stats.has_min_max
    from bikeshare.orchestration.demo import compaction_lines  # what the demo's summary says

    assert compaction_lines(lake, city="sf")[0] == (
        "station_status: 2 day(s) 2023-03-01..2023-03-02 in 2 file(s) (were 6 minute files); 2 minute files open"
    )
    # A second run is a no-op: nothing rewritten, nothing removed.
    mtime = os.stat(path).st_mtime_ns
    again = compact(lake, city="sf", before="2023-03-03")
    assert again.days_compacted == 0 and again.files_removed == 0 and "nothing to do" in again.summary()
    assert os.stat(path).st_mtime_ns == mtime


def test_folded_minute_files_stay_for_readers_until_the_day_file_is_old_enough(lake: Lake) -> None:
    _fill(lake, MINUTES)
    expected = _snapshot(lake)
    listed = [
        p for c in CITIES for p in lake.files(STATION_STATUS, city=c, dts=lake.partitions(STATION_STATUS, city=c))
    ]
    first = compact(lake, city="sf", before="2023-03-03", remove_after_s=3600)
    assert first.days_compacted == 4 and first.files_removed == 0 and first.tables[0].files_pending == 6
    assert "left for readers" in first.summary()
    compact(lake, city="oslo", before="2023-03-03", remove_after_s=3600)
    assert all(os.path.exists(p) for p in listed)  # a reader that listed before the commit still reads them
    for path in listed:
        if path.rsplit("/", 2)[-2] < "dt=2023-03-03":
            Path(path).write_bytes(b"not parquet")  # no reader after the commit may open a folded file
    assert _snapshot(lake) == expected
    later = compact(lake, city="sf", before="2023-03-03", remove_after_s=0)
    assert later.days_compacted == 0 and later.files_removed == 6 + 12
    compact(lake, city="oslo", before="2023-03-03", remove_after_s=0)
    assert _snapshot(lake) == expected


def test_a_late_minute_file_is_folded_in_by_the_next_run(lake: Lake) -> None:
    _fill(lake, MINUTES)
    compact(lake, city="sf", before="2023-03-03")
    _fill(lake, [("sf", 30)])  # a backfill of a minute the compacted day did not hold
    late = _snapshot(lake)
    assert ("sf", "2023-03-01-00-30") in {(r[-2], r[-1]) for r in late["view:station_status"]}  # type: ignore[union-attr]
    report = compact(lake, city="sf", before="2023-03-03")
    assert report.tables[0].days == ["2023-03-01"] and report.tables[0].files_folded == 1
    assert _snapshot(lake) == late


@hyp_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    minutes=st.lists(st.tuples(st.sampled_from(CITIES), st.integers(0, 4 * 1440 - 1)), min_size=1, max_size=12),
    late=st.lists(st.tuples(st.sampled_from(CITIES), st.integers(0, 4 * 1440 - 1)), max_size=4),
    cut=st.integers(0, 4),
    tables=st.sampled_from([MINUTE_TABLES, (STATION_STATUS,), (INFERENCE,)]),
)
def test_any_partition_set_reads_the_same_after_compaction(
    tmp_path_factory: pytest.TempPathFactory,
    minutes: list[tuple[str, int]],
    late: list[tuple[str, int]],
    cut: int,
    tables: tuple[TableSpec, ...],
) -> None:
    lake = Lake.open(str(tmp_path_factory.mktemp("prop")))
    before = (DAY0 + pd.Timedelta(days=cut)).strftime("%Y-%m-%d")
    _fill(lake, minutes, stations=3)
    expected = _snapshot(lake)
    for city in CITIES:
        compact(lake, city=city, before=before, tables=tables)
    assert _snapshot(lake) == expected
    _fill(lake, late, stations=3)  # minutes written after (new, or already held: then not rewritten)
    expected = _snapshot(lake)
    for city in CITIES:
        compact(lake, city=city, before=before, tables=tables)
        for spec in tables:
            open_days = {dt[:10] for dt in lake.minute_files(spec, city=city)}
            assert all(day >= before for day in open_days)
    assert _snapshot(lake) == expected


# ---- kill -9 ------------------------------------------------------------------------------------
_CHILD = """
import os, signal, sys
from bikeshare.lake.compaction import compact
from bikeshare.lake.store import Lake
root, endpoint, kill_at, nth = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
seen = []
def step(name):
    seen.append(name)
    if name == kill_at and seen.count(name) == nth:
        os.kill(os.getpid(), signal.SIGKILL)
compact(Lake.open(root, s3_endpoint_url=endpoint), city="sf", before="2023-03-03", step=step)
"""


def _kill_compaction(root: str, endpoint: str | None, kill_at: str, nth: int) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, root, endpoint or "", kill_at, str(nth)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    return done.returncode


KILL_POINTS = [("read", 1), ("committed", 1), ("removing", 1), ("committed", 3), ("removed", 2)]


def _check_crash(
    lake: Lake, root: str, endpoint: str | None, kill_at: str, nth: int, minutes: list[tuple[str, int]] = MINUTES
) -> None:
    cities = tuple(sorted({c for c, _ in minutes}))
    _fill(lake, minutes)
    expected = _snapshot(lake, cities)
    assert _kill_compaction(root, endpoint, kill_at, nth) == -signal.SIGKILL
    assert _snapshot(lake, cities) == expected  # readable, every row once
    compact(lake, city="sf", before="2023-03-03")  # the re-run completes
    assert _snapshot(lake, cities) == expected
    for spec in (STATION_STATUS, INFERENCE):
        assert lake.compacted_days(spec, city="sf") == ["2023-03-01", "2023-03-02"]
        assert {dt[:10] for dt in lake.minute_files(spec, city="sf")} == {"2023-03-03"}
    again = compact(lake, city="sf", before="2023-03-03")
    assert again.days_compacted == 0 and again.files_removed == 0


@pytest.mark.parametrize(("kill_at", "nth"), KILL_POINTS)
def test_kill_9_at_any_step_leaves_every_row_once_and_a_rerun_completes(tmp_path: Path, kill_at: str, nth: int) -> None:
    root = str(tmp_path / "lake")
    _check_crash(Lake.open(root), root, None, kill_at, nth)


def test_s3_compaction_survives_kill_9(s3_endpoint: str) -> None:
    minutes = [("sf", m) for m in (5, 700, 1439, 1440 + 3, 1440 + 800, 2 * 1440 + 10)]
    root = "s3://lake/crash"
    lake = Lake.open(root, s3_endpoint_url=s3_endpoint)
    _check_crash(lake, root, s3_endpoint, "removing", 2, minutes)  # day 2 committed, day 1 removed, day 2 half
    assert lake.compacted_path(STATION_STATUS, city="sf", day="2023-03-01").startswith("s3://")


# ---- a re-sent snapshot of a compacted day ------------------------------------------------------
def _recording(tmp_path: Path, times: list[int]) -> Recording:
    src = tmp_path / "src"
    src.mkdir()

    def station(i: int, t: int) -> dict:
        return {
            "station_id": f"s{i}",
            "num_bikes_available": 3 + i,
            "num_ebikes_available": 0,
            "num_docks_available": 7 - i,
            "num_bikes_disabled": 0,
            "num_docks_disabled": 0,
            "is_installed": 1,
            "is_renting": 1,
            "is_returning": 1,
            "last_reported": t - 30,
        }

    information = [
        {"station_id": f"s{i}", "name": f"S{i}", "capacity": 10, "lat": 37.7, "lon": -122.4} for i in range(5)
    ]
    system = {"system_id": "x", "name": "X", "timezone": "UTC", "language": "en"}
    docs = {
        "station_status": [
            {"last_updated": t, "ttl": 60, "data": {"stations": [station(i, t) for i in range(5)]}} for t in times
        ],
        "station_information": [{"last_updated": times[0] - 100, "ttl": 60, "data": {"stations": information}}],
        "system_information": [{"last_updated": times[0] - 100, "ttl": 60, "data": system}],
    }
    for feed, bodies in docs.items():
        with gzip.open(src / f"{feed}.jsonl.gz", "wt") as handle:
            for body in bodies:
                handle.write(json.dumps({"fetched_at": body["last_updated"] + 3, "feed": feed, "body": body}) + "\n")
    return import_jsonl_recording(src, tmp_path / "rec")


def test_a_resent_snapshot_of_a_compacted_day_is_a_duplicate(tmp_path: Path, settings: Settings, lake: Lake) -> None:
    midnight = int(pd.Timestamp("2023-03-02", tz="UTC").timestamp())
    times = [midnight - 600, midnight - 300, midnight + 300]  # two on 03-01, one on 03-02
    recording = _recording(tmp_path, times)
    first = backfill(recording=recording, lake=lake, settings=settings)
    assert first.committed == 3
    count = "SELECT count(*), count(DISTINCT last_updated) FROM station_status"
    assert lake.connect().sql(count).fetchall() == [(15, 3)]

    report = compact(lake, city="sf", before="2023-03-02")
    assert {t.table: t.days for t in report.tables}["station_status"] == ["2023-03-01"]
    assert {t.table: t.days for t in report.tables}["station_information_versions"] == ["2023-03-01"]
    assert lake.minute_files(STATION_STATUS, city="sf").keys() == {"2023-03-02-00-05"}

    sink = IngestSink(lake=lake, city="sf")
    compacted = pd.Timestamp(times[0], unit="s", tz="UTC")
    assert sink.has_status(compacted)  # the live ingest's check
    assert sink.write_status(_status(5, compacted).drop(columns=["masked"]), compacted) is None
    again = backfill(recording=recording, lake=lake, settings=settings)  # the backfill's check
    assert again.committed == 0 and again.duplicates == 3 and again.information_versions_written == 0
    assert lake.connect().sql(count).fetchall() == [(15, 3)]
    assert sink.current_information() is not None and len(sink.current_information().frame) == 5


def test_compact_and_retention_commands(
    tmp_path: Path, lake: Lake, settings: Settings, mlflow_db_template: Path
) -> None:
    import shutil

    from typer.testing import CliRunner

    from bikeshare.cli import app
    from bikeshare.registry.client import model_name, open_client

    _fill(lake, MINUTES)
    env = {
        "BIKESHARE_LAKE_URI": str(lake.root),
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_WEATHER_ENABLED": "false",
    }
    bad = CliRunner().invoke(app, ["compact", "--table", "features"], env=env)
    assert bad.exit_code != 0 and "not a minute-grain table" in bad.output
    args = ["compact", "--city", "oslo", "--table", "station_status", "--before", "2023-03-02"]
    done = CliRunner().invoke(app, args, env=env)
    assert done.exit_code == 0, done.output
    assert "station_status 1 day(s), 4 files folded, 0 removed, 4 left for readers" in done.output
    now = CliRunner().invoke(app, [*args, "--remove-now"], env=env)
    assert now.exit_code == 0, now.output
    assert "station_status 0 day(s), 0 files folded, 4 removed" in now.output
    assert lake.compacted_days(STATION_STATUS, city="oslo") == ["2023-03-01"]
    assert lake.compacted_days(INFERENCE, city="oslo") == [] and lake.compacted_days(STATION_STATUS, city="sf") == []

    # A production model trained on 2023-03-02: the retention command reads its window from the registry.
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mlflow_db_template, settings.state_dir / "mlflow.db")
    client = open_client(settings)
    name = model_name("sf", "bikes")
    client.create_registered_model(name)
    tags = {"bikeshare.data_start": "2023-03-02T00:00:00+00:00", "bikeshare.data_end": "2023-03-02T23:55:00+00:00"}
    version = client.create_model_version(name, source=str(tmp_path), tags=tags)
    client.set_registered_model_alias(name, "production", version.version)
    dry = CliRunner().invoke(app, ["retention", "--dry-run"], env=env)  # wall clock: 2023 is past every age
    assert dry.exit_code == 0, dry.output
    assert f"training window kept: {name} v1 2023-03-02T00:00:00+00:00" in dry.output
    assert "station_status: would remove 2023-03-01, 2023-03-03" in dry.output
    assert lake.partitions(STATION_STATUS, city="sf")  # a dry run removes nothing
    real = CliRunner().invoke(app, ["retention"], env=env)
    assert real.exit_code == 0, real.output
    assert {dt[:10] for dt in lake.partitions(STATION_STATUS, city="sf")} == {"2023-03-02"}
