"""Two cities of different GBFS versions in one lake: the views see both, each with its own columns' truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from bikeshare.gbfs.recording import Recording, default_recording_path
from bikeshare.ingest.backfill import backfill
from bikeshare.lake.store import Lake
from bikeshare.settings import Settings

OSLO_SLICE = default_recording_path().parent / "oslo-2023-06-08_16"


def test_a_v1_city_with_ebikes_and_a_v22_city_without_them_share_the_views(tmp_path: Path) -> None:
    from bikeshare.cli import app

    base = Settings(lake_uri=str(tmp_path / "lake"), state_dir=tmp_path / "state", weather_enabled=False)
    lake = Lake.open(base.lake_uri)
    cuts = {
        "sf": Recording.open(default_recording_path()).cut(
            tmp_path / "sf", start="2023-03-03T12:00Z", end="2023-03-03T14:00Z"
        ),
        "oslo": Recording.open(OSLO_SLICE).cut(tmp_path / "oslo", start="2023-06-09T12:00Z", end="2023-06-09T14:00Z"),
    }
    for key, recording in cuts.items():
        report = backfill(recording=recording, lake=lake, settings=base.with_values(city=key), workers=1)
        assert report.quarantined == 0 and report.committed == report.snapshots > 0, report.summary()

    con = lake.connect_read_only()
    try:
        rows = con.execute(
            "SELECT city, count(*) AS n, count(ebikes) AS with_ebikes, count(DISTINCT last_updated) AS snapshots "
            "FROM station_status GROUP BY city ORDER BY city"
        ).df()
        zones = dict(con.execute("SELECT city, timezone FROM system_information").fetchall())
    finally:
        con.close()
    by_city = rows.set_index("city")
    assert set(by_city.index) == {"sf", "oslo"}
    assert by_city.loc["sf", "with_ebikes"] == by_city.loc["sf", "n"] > 0  # GBFS 1.x: num_ebikes_available
    assert by_city.loc["oslo", "with_ebikes"] == 0 < by_city.loc["oslo", "n"]  # 2.2 without e-bikes: null, not 0
    assert by_city.loc["sf", "snapshots"] > by_city.loc["oslo", "snapshots"] >= 5  # ~10 and ~20 minutes apart
    assert zones == {"sf": "America/Los_Angeles", "oslo": "Europe/Oslo"}  # Oslo's came from the import

    env = {"BIKESHARE_LAKE_URI": base.lake_uri, "BIKESHARE_STATE_DIR": str(base.state_dir)}
    out = CliRunner().invoke(app, ["sql", "SELECT city, count(*) AS n FROM station_status GROUP BY city"], env=env)
    assert out.exit_code == 0, out.output
    printed = " ".join(out.output.split())
    for key in ("sf", "oslo"):
        assert f"{key} {by_city.loc[key, 'n']}" in printed, printed


def test_a_city_without_system_information_takes_its_time_zone_from_its_settings(tmp_path: Path) -> None:
    import pytest

    from bikeshare.features.build import build_features
    from bikeshare.lake.tables import SYSTEM_INFORMATION

    oslo = Settings(city="oslo", lake_uri=str(tmp_path / "lake"), state_dir=tmp_path / "state", weather_enabled=False)
    lake = Lake.open(oslo.lake_uri)
    cut = Recording.open(OSLO_SLICE).cut(tmp_path / "oslo", start="2023-06-09T10:00Z", end="2023-06-09T14:00Z")
    backfill(recording=cut, lake=lake, settings=oslo, workers=1)
    for dt in lake.partitions(SYSTEM_INFORMATION, city="oslo"):  # as a live 2.2 feed without the file would be
        lake.delete_partition(SYSTEM_INFORMATION, city="oslo", dt=dt)
    window = {"start": pd.Timestamp("2023-06-09T13:00Z"), "end": pd.Timestamp("2023-06-09T13:05Z")}
    with pytest.raises(ValueError, match=r"no time zone for city .oslo.*set timezone"):
        build_features(lake=lake, settings=oslo, **window)
    rows = build_features(lake=lake, settings=oslo.with_values(timezone="Europe/Oslo"), **window)
    assert len(rows) > 200 and rows["slot"].min() == window["start"]
    local_hour = window["start"].tz_convert("Europe/Oslo").hour  # 15:00 in Oslo (CEST), not 13:00
    assert set(rows.loc[rows["slot"] == window["start"], "hour_local"]) == {local_hour}
