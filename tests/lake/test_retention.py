"""Retention: old partitions go (minute, compacted and day grain), a production training window stays."""

from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.lake.compaction import compact
from bikeshare.lake.retention import TrainingWindow, apply_retention
from bikeshare.lake.store import Lake
from bikeshare.lake.tables import AUDIT, FEATURES, STATION_INFORMATION, STATION_STATUS
from bikeshare.settings import DEFAULT_RETENTION_DAYS, Settings

NOW = pd.Timestamp("2023-06-01 08:00", tz="UTC")


def _day(offset: int) -> pd.Timestamp:
    return NOW.floor("D") - pd.Timedelta(days=offset)


def _fill(lake: Lake, offsets: list[int]) -> None:
    for offset in offsets:
        at = _day(offset) + pd.Timedelta(hours=6)
        rows = pd.DataFrame({"station_id": ["a", "b"], "bikes": [1, 2], "last_updated": [at, at]})
        for minute in (0, 1):
            t = at + pd.Timedelta(minutes=minute)
            lake.write(STATION_STATUS, rows, city="sf", dt=t.strftime("%Y-%m-%d-%H-%M"), name=f"s-{minute}")
        features = pd.DataFrame({"station_id": ["a"], "slot": [at]})
        lake.write(FEATURES, features, city="sf", dt=at.strftime("%Y-%m-%d"), name="features")
        lake.write(
            AUDIT,
            pd.DataFrame({"event_id": [str(offset)], "at": [at]}),
            city="sf",
            dt=at.strftime("%Y-%m-%d"),
            name="e",
        )
        info = pd.DataFrame({"station_id": ["a"], "valid_from": [at], "content_hash": [str(offset)]})
        lake.write(STATION_INFORMATION, info, city="sf", dt=at.strftime("%Y-%m-%d-%H-%M"), name=f"v{offset}")


def _days(lake: Lake, spec: object) -> list[str]:
    return sorted({dt[:10] for dt in lake.partition_dirs(spec, city="sf")})  # type: ignore[arg-type]


@pytest.fixture
def old_lake(lake: Lake) -> Lake:
    _fill(lake, [200, 120, 95, 91, 89, 10, 0])
    compact(lake, city="sf", before=_day(100).strftime("%Y-%m-%d"))  # the oldest days are compacted
    assert lake.compacted_days(STATION_STATUS, city="sf") == [
        _day(200).strftime("%Y-%m-%d"),
        _day(120).strftime("%Y-%m-%d"),
    ]
    return lake


def test_retention_deletes_what_is_past_its_age_and_keeps_the_rest(old_lake: Lake) -> None:
    lake = old_lake
    days = {"station_status": 90, "features": 60, "station_information_versions": 90}
    dry = apply_retention(lake, city="sf", retention_days=days, now=NOW, dry_run=True)
    assert dry.removed > 0 and _days(lake, STATION_STATUS) == sorted(
        _day(o).strftime("%Y-%m-%d") for o in (200, 120, 95, 91, 89, 10, 0)
    )

    report = apply_retention(lake, city="sf", retention_days=days, now=NOW)
    assert report.to_dict()["tables"] == dry.to_dict()["tables"]
    by_table = {t.table: t for t in report.tables}
    expect = [_day(o).strftime("%Y-%m-%d") for o in (200, 120, 95, 91)]
    assert by_table["station_status"].removed == expect and by_table["station_status"].cutoff == _day(90).strftime(
        "%Y-%m-%d"
    )
    assert _days(lake, STATION_STATUS) == [_day(o).strftime("%Y-%m-%d") for o in (89, 10, 0)]
    assert lake.compacted_days(STATION_STATUS, city="sf") == []  # compacted days go too
    assert _days(lake, FEATURES) == [_day(o).strftime("%Y-%m-%d") for o in (10, 0)]
    # The slowly changing dimension keeps the version valid at the cut-off.
    assert by_table["station_information_versions"].kept_current_version == [_day(91).strftime("%Y-%m-%d")]
    assert _day(91).strftime("%Y-%m-%d") in _days(lake, STATION_INFORMATION)
    # The audit is not in the map: kept forever.
    assert len(_days(lake, AUDIT)) == 7
    con = lake.connect(views=["station_status"])
    assert con.sql("SELECT count(*) FROM station_status").fetchall() == [(3 * 2 * 2,)]
    again = apply_retention(lake, city="sf", retention_days=days, now=NOW)
    assert again.removed == 0 and "nothing past its age" in again.summary()


def test_retention_refuses_to_delete_a_production_training_window(old_lake: Lake) -> None:
    lake = old_lake
    window = TrainingWindow(start=_day(121) + pd.Timedelta(hours=12), end=_day(95) + pd.Timedelta(hours=1), label="v3")
    report = apply_retention(
        lake, city="sf", retention_days={"station_status": 90, "features": 60}, now=NOW, windows=[window]
    )
    by_table = {t.table: t for t in report.tables}
    kept = [_day(o).strftime("%Y-%m-%d") for o in (120, 95)]
    assert by_table["station_status"].kept_for_training == kept
    assert by_table["station_status"].removed == [_day(o).strftime("%Y-%m-%d") for o in (200, 91)]
    assert by_table["features"].kept_for_training == kept
    assert _days(lake, STATION_STATUS) == [_day(o).strftime("%Y-%m-%d") for o in (120, 95, 89, 10, 0)]
    assert "kept 2 for a training window" in report.summary()


def test_default_retention_is_documented_and_names_real_tables() -> None:
    settings = Settings()
    assert settings.retention_days == DEFAULT_RETENTION_DAYS
    assert settings.retention_days["station_status"] == 90 and settings.retention_days["features"] == 60
    assert settings.retention_days["inference"] == 400 and settings.retention_days["quality"] == 400
    assert "promotions" not in settings.retention_days  # audit: forever
    with pytest.raises(ValueError, match="unknown tables"):
        Settings(retention_days={"no_such_table": 3})
