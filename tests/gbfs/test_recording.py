"""The recording format: the shipped slice, the JSON Lines importer, and reading back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikeshare.cli import app
from bikeshare.gbfs.normalise import STATUS_COLUMNS
from bikeshare.gbfs.recording import (
    Recording,
    RecordingError,
    default_recording_path,
    import_jsonl_recording,
)

CUT_START = pd.Timestamp("2023-03-04T06:00Z")
CUT_END = pd.Timestamp("2023-03-04T09:00Z")


def test_shipped_slice_is_seven_whole_days_of_all_stations_under_15_mb(shipped: Recording) -> None:
    size = sum(f.stat().st_size for f in default_recording_path().iterdir())
    assert size <= 15 * 1024 * 1024
    times = shipped.snapshot_times()
    first_day, last_day = times[0].normalize(), times[-1].normalize()
    assert (last_day - first_day).days + 1 >= 7
    assert times[0] - first_day < pd.Timedelta(hours=1)  # whole days: it starts at the day's start ...
    assert last_day + pd.Timedelta(days=1) - times[-1] < pd.Timedelta(hours=1)  # ... and ends at its end
    assert shipped.manifest["snapshots"] == len(times)
    every_station = set(shipped.information_at(times[0])["station_id"])
    assert every_station <= set(shipped.status_at(times[0])["station_id"])


def test_shipped_slice_keeps_the_mess_as_recorded(shipped: Recording) -> None:
    ts = shipped.snapshot_times()[300]
    rows, info = shipped.status_at(ts), shipped.information_at(ts)
    lag = rows["last_updated"] - rows["last_reported"]
    assert (lag > pd.Timedelta(hours=1)).any()  # stale last_reported
    assert (rows["last_reported"] < pd.Timestamp("2000-01-01", tz="UTC")).any()  # never reported
    assert (~rows["is_installed"]).any()
    assert set(info["station_id"]) <= set(rows["station_id"])
    unknown = [  # a station in status before information lists it
        ts
        for ts, rows in shipped.iter_status(end="2023-03-03")
        if not set(rows["station_id"]) <= set(shipped.information_at(ts)["station_id"])
    ]
    assert unknown


def _v1_doc(rows: pd.DataFrame, ts: pd.Timestamp) -> dict:
    """A GBFS 1.x document written the way the shared recording has them (0/1 flags, POSIX times)."""
    stations = [
        {
            "station_id": r.station_id,
            "num_bikes_available": int(r.bikes),
            "num_ebikes_available": int(r.ebikes),
            "num_docks_available": int(r.docks),
            "num_bikes_disabled": int(r.bikes_disabled),
            "num_docks_disabled": int(r.docks_disabled),
            "is_installed": int(r.is_installed),
            "is_renting": int(r.is_renting),
            "is_returning": int(r.is_returning),
            "last_reported": int(r.last_reported.timestamp()),
            "legacy_id": "1",
        }
        for r in rows.itertuples(index=False)
    ]
    return {"last_updated": int(ts.timestamp()), "ttl": 5, "data": {"stations": stations}}


def _info_doc(rows: pd.DataFrame, ts: pd.Timestamp) -> dict:
    stations = [
        {
            "station_id": r.station_id,
            "name": r.name,
            "short_name": r.short_name,
            "capacity": int(r.capacity),
            "lat": r.lat,
            "lon": r.lon,
            **({} if pd.isna(r.region_id) else {"region_id": r.region_id}),
            "rental_methods": ["KEY"],
        }
        for r in rows.itertuples(index=False)
    ]
    return {"last_updated": int(ts.timestamp()), "ttl": 5, "data": {"stations": stations}}


def _write_jsonl(path: Path, feed: str, docs: list[tuple[float, dict]]) -> None:
    with gzip.open(path, "wb") as handle:
        for fetched_at, body in docs:
            handle.write(orjson.dumps({"fetched_at": fetched_at, "feed": feed, "body": body}) + b"\n")


@pytest.fixture(scope="module")
def jsonl_cut(shipped: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real cut in the shared JSON Lines format, written from the shipped slice."""
    src = tmp_path_factory.mktemp("jsonl") / "baywheels-cut"
    src.mkdir()
    status = [
        (ts.timestamp() + 3, _v1_doc(rows, ts))
        for ts, rows in shipped.iter_status(CUT_START - pd.Timedelta(hours=1), CUT_END + pd.Timedelta(hours=1))
    ]
    status.insert(3, status[2])  # a duplicated last_updated is kept once
    _write_jsonl(src / "station_status.jsonl.gz", "station_status", status)
    versions = shipped.information_versions()
    info = [(ts.timestamp() + 5, _info_doc(rows, ts)) for ts, rows in versions if ts < CUT_END]
    info.append(info[-1])  # same content again: not a new version
    _write_jsonl(src / "station_information.jsonl.gz", "station_information", info)
    system = {
        "last_updated": 1677695871,
        "ttl": 5,
        "data": {"system_id": "fgb", "language": "en", "name": "Bay Wheels", "timezone": "America/Los_Angeles"},
    }
    _write_jsonl(src / "system_information.jsonl.gz", "system_information", [(1677695877, system)])
    return src


def test_import_round_trips_the_recorded_rows(shipped: Recording, jsonl_cut: Path, tmp_path: Path) -> None:
    rec = import_jsonl_recording(jsonl_cut, tmp_path / "rec", start=CUT_START, end=CUT_END, city="sf")
    expected = list(shipped.iter_status(CUT_START, CUT_END))
    times = rec.snapshot_times()
    assert list(times) == [ts for ts, _ in expected]
    assert rec.manifest["snapshots"] == len(expected) and rec.manifest["start"] == times[0].isoformat()
    for (ts, want), (got_ts, got) in zip(expected, rec.iter_status(chunk=2), strict=True):
        assert got_ts == ts
        pd.testing.assert_frame_equal(got[list(STATUS_COLUMNS)], want[list(STATUS_COLUMNS)])
        assert (got["fetched_at"] == ts + pd.Timedelta(seconds=3)).all()
    # Information: only the version in force at the first snapshot and the later ones survive.
    valid_from = [ts for ts, _ in rec.information_versions()]
    assert valid_from[0] <= times[0] < valid_from[1] if len(valid_from) > 1 else valid_from[0] <= times[0]
    in_force = rec.information_at(times[0])
    pd.testing.assert_frame_equal(
        in_force.drop(columns=["fetched_at", "last_updated"]),
        shipped.information_at(times[0]).drop(columns=["fetched_at", "last_updated"]),
    )
    assert rec.system_information["timezone"] == "America/Los_Angeles"


def test_recording_reads_snapshots_as_of_a_time(shipped: Recording) -> None:
    times = shipped.snapshot_times()
    between = times[10] + (times[11] - times[10]) / 2
    assert shipped.status_at(between)["last_updated"].iloc[0] == times[10]
    assert shipped.status_at(times[11])["last_updated"].iloc[0] == times[11]
    window = list(shipped.iter_status(times[10], times[13]))
    assert [ts for ts, _ in window] == list(times[10:13])
    pd.testing.assert_frame_equal(window[1][1], shipped.status_at(times[11]))
    with pytest.raises(KeyError, match="no snapshot at or before"):
        shipped.status_at(times[0] - pd.Timedelta(seconds=1))


def test_not_a_recording_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such recording folder"):
        Recording.open(tmp_path / "missing")
    with pytest.raises(RecordingError, match=r"has no manifest\.json"):
        Recording.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(RecordingError, match="format is not"):
        Recording.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "bikeshare-recording", "format_version": 1}))
    with pytest.raises(RecordingError, match=r"station_status\.parquet is missing"):
        Recording.open(tmp_path)


def test_import_refuses_bad_sources_and_never_half_writes(jsonl_cut: Path, tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"station_status\.jsonl\.gz"):
        import_jsonl_recording(tmp_path, tmp_path / "out")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("station_information", "system_information"):
        (broken / f"{name}.jsonl.gz").write_bytes((jsonl_cut / f"{name}.jsonl.gz").read_bytes())
    with gzip.open(broken / "station_status.jsonl.gz", "wb") as handle:
        good = {"last_updated": 1677900000, "ttl": 5, "data": {"stations": []}}
        handle.write(orjson.dumps({"fetched_at": 1, "feed": "station_status", "body": good}) + b"\n")
        handle.write(b'{"fetched_at": 1, "feed": "station_status", "body": {"last_up\n')
    with pytest.raises(RecordingError, match=r"station_status\.jsonl\.gz:2: not JSON"):
        import_jsonl_recording(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    done = import_jsonl_recording(jsonl_cut, tmp_path / "done", start=CUT_START, end=CUT_END)
    with pytest.raises(RecordingError, match="not empty"):
        import_jsonl_recording(jsonl_cut, tmp_path / "done", start=CUT_START, end=CUT_END)
    with pytest.raises(ValueError, match="must be after start"):
        import_jsonl_recording(jsonl_cut, tmp_path / "x", start=CUT_END, end=CUT_START)
    assert Recording.open(done.path).manifest == done.manifest


def test_recording_import_command(jsonl_cut: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    dest = tmp_path / "cli-rec"
    result = runner.invoke(
        app,
        [
            "recording",
            "import",
            str(jsonl_cut),
            str(dest),
            "--start",
            "2023-03-04T06:00Z",
            "--end",
            "2023-03-04T07:00Z",
        ],
    )
    assert result.exit_code == 0, result.output
    rec = Recording.open(dest)
    assert f"{rec.manifest['snapshots']} snapshots" in result.output
    assert all(CUT_START <= ts < CUT_START + pd.Timedelta(hours=1) for ts in rec.snapshot_times())
    again = runner.invoke(app, ["recording", "import", str(jsonl_cut), str(dest)])
    assert again.exit_code != 0 and "not empty" in again.output


def test_a_cut_holds_the_window_s_snapshots_and_reads_back_like_the_source(shipped: Recording, tmp_path: Path) -> None:
    cut = shipped.cut(tmp_path / "cut", start=CUT_START, end=CUT_END)
    times = cut.snapshot_times()
    source_times = shipped.snapshot_times()
    expected = source_times[(source_times >= CUT_START) & (source_times < CUT_END)]
    assert list(times) == list(expected) and len(times) >= 10
    assert cut.start == times[0] and cut.end == times[-1]
    assert cut.manifest["snapshots"] == len(times) and cut.city == shipped.city
    assert cut.manifest["window_start"] == CUT_START.isoformat() and cut.manifest["window_end"] == CUT_END.isoformat()
    middle = times[len(times) // 2]
    pd.testing.assert_frame_equal(cut.status_at(middle), shipped.status_at(middle))
    assert cut.manifest["status_rows"] == sum(len(rows) for _, rows in cut.iter_status())
    # station_information is copied whole by default, or without the versions issued after the window
    assert len(cut.information_versions()) == len(shipped.information_versions())
    blind = shipped.cut(tmp_path / "blind", start=CUT_START, end=CUT_END, later_information=False)
    versions = [valid_from for valid_from, _ in blind.information_versions()]
    assert versions and max(versions) < CUT_END < max(v for v, _ in shipped.information_versions())
    pd.testing.assert_frame_equal(blind.information_at(middle), shipped.information_at(middle))


def test_a_cut_refuses_an_empty_or_reversed_window(shipped: Recording, tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no snapshot within"):
        shipped.cut(tmp_path / "empty", start="2020-01-01T00:00Z", end="2020-01-02T00:00Z")
    with pytest.raises(ValueError, match="start < end"):
        shipped.cut(tmp_path / "reversed", start=CUT_END, end=CUT_START)
    assert not (tmp_path / "empty").exists()


def test_an_archive_without_system_information_needs_a_time_zone(jsonl_cut: Path, tmp_path: Path) -> None:
    """As the Oslo archive: no system_information; --timezone or the fleet file's city table gives the zone."""
    bare = tmp_path / "no-system"
    bare.mkdir()
    for name in ("station_status", "station_information"):
        (bare / f"{name}.jsonl.gz").write_bytes((jsonl_cut / f"{name}.jsonl.gz").read_bytes())
    window = ["--start", CUT_START.isoformat(), "--end", CUT_END.isoformat(), "--city", "oslo"]
    runner = CliRunner()
    refused = runner.invoke(
        app, ["recording", "import", str(bare), str(tmp_path / "a"), *window], env={"COLUMNS": "400"}
    )
    assert refused.exit_code == 2 and not (tmp_path / "a").exists()
    assert "no time zone: pass --timezone" in " ".join(refused.output.split()), refused.output
    given = runner.invoke(
        app, ["recording", "import", str(bare), str(tmp_path / "b"), *window, "--timezone", "Europe/Oslo"]
    )
    assert given.exit_code == 0, given.output
    assert Recording.open(tmp_path / "b").system_information["timezone"] == "Europe/Oslo"
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[cities]]\nkey = "oslo"\nfeed_url = "http://127.0.0.1:9/gbfs.json"\ntimezone = "Europe/Oslo"\n')
    from_fleet = runner.invoke(
        app, ["--fleet", str(fleet), "recording", "import", str(bare), str(tmp_path / "c"), *window]
    )
    assert from_fleet.exit_code == 0, from_fleet.output
    assert Recording.open(tmp_path / "c").manifest["system_information"]["timezone"] == "Europe/Oslo"
