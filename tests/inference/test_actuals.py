"""Actuals: predictions joined with the counts the label rule sees, late snapshots waited for,
stations that went dark recorded as missing, nothing written twice."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bikeshare.features.build import build_features
from bikeshare.gbfs.recording import STATUS_FILE, Recording
from bikeshare.inference.actuals import run_actuals
from bikeshare.inference.batch import run_inference_batch
from bikeshare.inference.endpoint_client import EndpointClient
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import partition_value
from bikeshare.lake.tables import INFERENCE, QUALITY, STATION_STATUS, Grain

from .conftest import Env, World

SLOT = pd.Timestamp("2023-03-07T16:40Z")
TARGET = SLOT + pd.Timedelta(minutes=30)


def _truncate_lake(env: Env, after: pd.Timestamp) -> None:
    """Forget every snapshot after ``after``: they have not arrived yet."""
    cutoff = partition_value(after, Grain.MINUTE)
    for dt in env.lake.partitions(STATION_STATUS, city="sf"):
        if dt > cutoff:
            env.lake.delete_partition(STATION_STATUS, city="sf", dt=dt)


def _late_recording(world: World, dest: Path, *, start: pd.Timestamp, end: pd.Timestamp, drop: str) -> Recording:
    """The snapshots of ``[start, end)`` without station ``drop`` (it went dark)."""
    rec = world.cut.cut(dest, start=start, end=end)
    table = pq.read_table(rec.path / STATUS_FILE)
    pq.write_table(table.filter(pc.not_equal(table.column("station_id"), drop)), rec.path / STATUS_FILE)
    return Recording.open(rec.path)


def test_late_snapshots_are_waited_for_then_joined_and_dark_stations_become_missing(
    env: Env, world: World, tmp_path: Path
) -> None:
    settings = env.settings
    _truncate_lake(env, SLOT + pd.Timedelta(minutes=1))
    with EndpointClient.from_settings(settings, sleep=lambda _s: None) as client:
        record = run_inference_batch(
            lake=env.lake, endpoint=client, settings=settings, now=SLOT + pd.Timedelta(minutes=1)
        )
    assert record.status == "ok"
    predictions = env.lake.read(INFERENCE, city="sf").to_pandas()
    dark = sorted(predictions["station_id"])[0]

    # Before the horizon (plus settle) nothing is due.
    early = run_actuals(lake=env.lake, settings=settings, now=TARGET + pd.Timedelta(minutes=1))
    assert (early.due, early.files_written) == (0, 0)

    # The horizon has passed but no snapshot at or after it has arrived: everything waits.
    waiting = run_actuals(lake=env.lake, settings=settings, now=TARGET + pd.Timedelta(minutes=3))
    assert (waiting.due, waiting.waiting, waiting.joined, waiting.files_written) == (
        len(predictions),
        len(predictions),
        0,
        0,
    )
    assert env.lake.files(QUALITY, city="sf") == []

    # The late snapshots arrive, without the dark station.
    late = _late_recording(
        world, tmp_path / "late", start=SLOT + pd.Timedelta(minutes=1), end=TARGET + pd.Timedelta(minutes=10), drop=dark
    )
    backfill(recording=late, lake=env.lake, settings=settings, workers=1)
    now = TARGET + pd.Timedelta(minutes=10)
    second = run_actuals(lake=env.lake, settings=settings, now=now)
    assert second.joined > 0.9 * len(predictions)
    assert second.joined + second.waiting == second.due == len(predictions)
    quality = env.lake.read(QUALITY, city="sf").to_pandas()
    assert len(quality) == second.joined and set(quality["status"]) == {"joined"}
    assert dark not in set(quality["station_id"])
    assert (quality["joined_at"] == now).all()
    assert [p.rsplit("/", 2)[-2] for p in env.lake.files(QUALITY, city="sf")] == [f"dt={TARGET:%Y-%m-%d}"]

    # Joined values are the labels the feature SQL gives the same slot.
    labels = build_features(lake=env.lake, start=SLOT, end=SLOT, settings=settings).set_index("station_id")
    for target in ("bikes", "docks"):
        mine = quality[quality["target"] == target].set_index("station_id")
        expected = labels.loc[mine.index, f"{target}_t_h"]
        assert (mine["actual_count"].astype(int) == expected.astype(int)).all()
        assert (mine["actual_label"] == (expected <= settings.shortage_threshold)).all()
        assert (mine["actual_time"] <= TARGET).all()
        assert (mine["actual_time"] >= TARGET - pd.Timedelta(minutes=settings.max_snapshot_age_min)).all()
    waiting_ids = set(predictions["station_id"]) - set(quality["station_id"])
    assert dark in waiting_ids
    assert labels.reindex(sorted(waiting_ids))["bikes_t_h"].isna().all()

    # Running again before the limit writes nothing new.
    again = run_actuals(lake=env.lake, settings=settings, now=now + pd.Timedelta(minutes=5))
    assert (again.joined, again.missing, again.files_written) == (0, 0, 0)
    assert again.waiting == second.waiting

    # After actuals_max_wait_min the rest is recorded as missing, and the prediction file is done.
    final = run_actuals(
        lake=env.lake, settings=settings, now=TARGET + pd.Timedelta(minutes=settings.actuals_max_wait_min + 1)
    )
    assert (final.joined, final.missing, final.waiting) == (0, second.waiting, 0)
    quality = env.lake.read(QUALITY, city="sf").to_pandas()
    assert len(quality) == len(predictions)
    key = ["station_id", "target"]
    assert not quality.duplicated(key).any()
    missing = quality[quality["status"] == "missing"]
    assert set(missing["station_id"]) == waiting_ids
    assert missing["actual_count"].isna().all() and missing["actual_time"].isna().all()
    assert any(p.endswith("_final.parquet") for p in env.lake.files(QUALITY, city="sf"))

    done = run_actuals(lake=env.lake, settings=settings, now=TARGET + pd.Timedelta(hours=2))
    assert (done.prediction_files, done.due, done.files_written) == (0, 0, 0)
    con = env.lake.connect()
    [(predictions_n, joined_n, missing_n)] = con.sql(
        "SELECT sum(predictions), sum(joined), sum(missing) FROM quality_by_version"
    ).fetchall()
    assert (predictions_n, joined_n, missing_n) == (len(predictions), second.joined, final.missing)
