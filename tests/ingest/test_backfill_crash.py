"""A backfill killed with SIGKILL mid-way, then run again: the audit in ingest_log matches the lake."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bikeshare.gbfs.recording import Recording
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import STATION_STATUS
from bikeshare.settings import Settings

CHILD = """
import sys
from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings

settings = Settings(lake_uri=sys.argv[1], state_dir=sys.argv[2], weather_enabled=False)
backfill(
    recording=Recording.open(default_recording_path()),
    lake=Lake.open(settings.lake_uri),
    settings=settings,
    workers=4,
    chunk_snapshots=100,
    progress=lambda report: print(report.committed, flush=True),
)
print("done", flush=True)
"""


def test_a_backfill_killed_mid_way_and_run_again_keeps_an_audit_that_matches_the_lake(
    tmp_path: Path, recording: Recording
) -> None:
    lake_dir, state_dir = tmp_path / "lake", tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lake_dir), str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        assert line.strip() != "done", "the backfill finished before it could be killed"
        if int(line) >= 200:
            break
    # Kill while the next chunk is being written: some partitions in the lake, not yet logged.
    status_root = lake_dir / "raw" / "station_status" / "city=sf"
    deadline = time.monotonic() + 60
    while len(list(status_root.glob("*/*.parquet"))) <= int(line) and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""

    lake = Lake.open(str(lake_dir))
    first_run = len(lake.files(STATION_STATUS, city="sf"))
    snapshots = recording.manifest["snapshots"]
    assert 200 <= first_run < snapshots
    con = lake.connect()
    [(logged_by_first_run,)] = con.sql("SELECT count(*) FROM ingest_log WHERE outcome = 'committed'").fetchall()
    assert 200 <= logged_by_first_run < first_run  # logged per chunk, not at the end; killed mid-chunk
    leftover_dir = f"{lake.table_root(STATION_STATUS)}/city=sf/dt=2023-03-05-00-00"
    lake.fs.makedirs(leftover_dir, exist_ok=True)
    lake.fs.pipe(
        f"{leftover_dir}/station_status-20230305T000000Z.parquet.0123abcd.tmp", b"PAR1"
    )  # one more leftover of the killed run, whether or not the kill left one of its own

    settings = Settings(lake_uri=str(lake_dir), state_dir=state_dir, weather_enabled=False)
    report = backfill(recording=recording, lake=lake, settings=settings, stale_tmp_s=0)
    assert report.stale_tmp_removed >= 1
    assert report.recovered == first_run - logged_by_first_run
    assert not [p for p in lake.fs.find(str(lake_dir)) if p.endswith(".tmp")]

    con = lake.connect()
    files = len(lake.files(STATION_STATUS, city="sf"))
    assert files == snapshots
    log = dict(con.sql("SELECT outcome, count(*) FROM ingest_log WHERE feed = 'station_status' GROUP BY 1").fetchall())
    assert log == {"committed": snapshots, "duplicate": logged_by_first_run}
    [(distinct,)] = con.sql("SELECT count(DISTINCT batch_id) FROM ingest_log WHERE outcome = 'committed'").fetchall()
    assert distinct == snapshots
    [(rows, masked)] = con.sql("SELECT count(*), count(*) FILTER (WHERE masked) FROM station_status").fetchall()
    [(logged_rows, logged_masked)] = con.sql(
        "SELECT sum(rows_written), sum(rows_masked) FROM ingest_log WHERE outcome = 'committed'"
    ).fetchall()
    assert (logged_rows, logged_masked) == (rows, masked)
    by_reason: Counter[str] = Counter()
    for (text,) in con.sql("SELECT masked_by_reason FROM ingest_log WHERE outcome = 'committed'").fetchall():
        by_reason.update(json.loads(text))
    in_lake: Counter[str] = Counter()
    for (text,) in con.sql("SELECT mask_reasons FROM station_status WHERE masked").fetchall():
        in_lake.update(text.split(","))
    assert by_reason == in_lake
