"""The mirror writer: the committed fixture is exactly what it builds from the plain sources."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from bikeshare.weather.mirror import build_mirror, build_mirror_from_csv


def _tables(db: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {n: sorted(con.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}
    finally:
        con.close()


def test_committed_fixture_matches_a_rebuild(tmp_path: Path, meteostat_dir: Path) -> None:
    files = build_mirror_from_csv(
        tmp_path,
        stations_csv=meteostat_dir / "source" / "stations.csv",
        hourly_csv=meteostat_dir / "source" / "hourly.csv",
    )
    rel = sorted(str(p.relative_to(tmp_path)) for p in files)
    committed = sorted(
        str(p.relative_to(meteostat_dir))
        for p in [meteostat_dir / "stations.db", *meteostat_dir.glob("hourly/*/*.csv.gz")]
    )
    assert rel == committed
    for name in rel:
        if name.endswith(".csv.gz"):
            assert (tmp_path / name).read_bytes() == (meteostat_dir / name).read_bytes(), name
    assert _tables(tmp_path / "stations.db") == _tables(meteostat_dir / "stations.db")


def test_hourly_files_use_the_meteostat_layout(tmp_path: Path) -> None:
    stations = pd.DataFrame(
        [{"id": "X1", "name": "x", "country": "US", "region": "CA", "latitude": 1.0, "longitude": 2.0,
          "elevation": 5, "timezone": "UTC"}]
    )  # fmt: skip
    hourly = pd.DataFrame(
        {
            "station": ["X1", "X1"],
            "time": ["2022-12-31T23:00Z", "2023-01-01T00:00Z"],
            "temp": [1.5, None],
            "coco": [2.0, 3.0],
            "source": ["metar", "synop"],
        }
    )
    build_mirror(tmp_path, stations=stations, hourly=hourly)
    old = pd.read_csv(tmp_path / "hourly" / "2022" / "X1.csv.gz")
    new = pd.read_csv(tmp_path / "hourly" / "2023" / "X1.csv.gz")
    assert list(old.columns) == ["year", "month", "day", "hour", "temp", "temp_source", "coco", "coco_source"]
    assert old.iloc[0].tolist() == [2022, 12, 31, 23, 1.5, "metar", 2, "metar"]
    assert pd.isna(new.loc[0, "temp"]) and pd.isna(new.loc[0, "temp_source"])
    assert new.loc[0, "coco_source"] == "synop"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "time"}, "lacks columns \\['time'\\]"),
        ({"add": ("humidity", 50)}, "not Meteostat hourly parameters"),
        ({"set": ("station", "ZZ")}, "does not have"),
        ({"set": ("time", "2023-01-01T00:30Z")}, "full hour"),
    ],
)
def test_bad_inputs_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    stations = pd.DataFrame(
        [{"id": "X1", "name": "x", "country": "US", "region": "CA", "latitude": 1.0, "longitude": 2.0,
          "elevation": 5, "timezone": "UTC"}]
    )  # fmt: skip
    hourly = pd.DataFrame({"station": ["X1"], "time": ["2023-01-01T00:00Z"], "temp": [1.0], "source": ["metar"]})
    if "drop" in change:
        hourly = hourly.drop(columns=change["drop"])
    if "add" in change:
        hourly[change["add"][0]] = change["add"][1]
    if "set" in change:
        hourly[change["set"][0]] = change["set"][1]
    with pytest.raises(ValueError, match=message):
        build_mirror(tmp_path / "m", stations=stations, hourly=hourly)
    assert not (tmp_path / "m").exists()


def test_stations_out_of_range_are_refused(tmp_path: Path) -> None:
    stations = pd.DataFrame(
        [{"id": "X1", "name": "x", "country": "US", "region": "CA", "latitude": 100.0, "longitude": 2.0,
          "elevation": 5, "timezone": "UTC"}]
    )  # fmt: skip
    hourly = pd.DataFrame({"station": ["X1"], "time": ["2023-01-01T00:00Z"], "temp": [1.0], "source": ["metar"]})
    with pytest.raises(ValueError, match="out of range"):
        build_mirror(tmp_path, stations=stations, hourly=hourly)
