"""Planner inputs from the lake: the stations at the plan time, their count history, the time zone."""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pandas as pd

from bikeshare.lake.store import Lake, empty_select_sql, parse_partition_value
from bikeshare.lake.tables import STATION_STATUS
from bikeshare.rebalancing.forecast import history_grid
from bikeshare.utc import to_utc


def status_sql(lake: Lake, *, city: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """SQL scanning the station_status partitions whose minute lies in ``[start, end]``."""
    dts = [dt for dt in lake.partitions(STATION_STATUS, city=city) if start <= parse_partition_value(dt) <= end]
    return lake.scan_sql(STATION_STATUS, city=city, dts=dts) if dts else empty_select_sql(STATION_STATUS)


def latest_status_time(lake: Lake, *, city: str) -> pd.Timestamp | None:
    """``last_updated`` of the newest snapshot in the lake for ``city`` (None when there is none)."""
    dts = lake.partitions(STATION_STATUS, city=city)
    if not dts:
        return None
    newest = parse_partition_value(dts[-1])
    con = lake.connect()
    try:
        sql = status_sql(lake, city=city, start=newest - pd.Timedelta(hours=1), end=newest)
        rows = con.execute(f"SELECT max(last_updated) FROM ({sql})").fetchall()
    finally:
        con.close()
    value = rows[0][0] if rows else None
    return None if value is None else to_utc(value, what="newest last_updated")


def load_stations(
    lake: Lake,
    *,
    city: str,
    as_of: pd.Timestamp,
    max_age_min: float,
    region_ids: Iterable[str] = (),
) -> pd.DataFrame:
    """Stations to plan for: the latest unmasked, installed, renting and returning snapshot row of each
    station within ``max_age_min`` before ``as_of``, with name and position from the
    station_information version in force at ``as_of``."""
    start = as_of - pd.Timedelta(minutes=max_age_min)
    con = lake.connect()
    try:
        sql = f"""
            WITH latest AS (
                SELECT * FROM ({status_sql(lake, city=city, start=start.floor("min"), end=as_of)})
                WHERE last_updated <= $as_of AND last_updated >= $start AND NOT coalesce(masked, false)
                QUALIFY row_number() OVER (PARTITION BY station_id ORDER BY last_updated DESC) = 1
            )
            SELECT l.station_id, l.bikes, l.docks, i.name, i.lat, i.lon, i.region_id, i.capacity
            FROM latest l
            JOIN station_information i
              ON i.station_id = l.station_id AND i.city = $city
             AND i.valid_from <= $as_of AND (i.valid_to IS NULL OR i.valid_to > $as_of)
            WHERE coalesce(l.is_installed, true) AND coalesce(l.is_renting, true)
              AND coalesce(l.is_returning, true)
              AND l.bikes IS NOT NULL AND l.docks IS NOT NULL AND i.lat IS NOT NULL AND i.lon IS NOT NULL
            ORDER BY l.station_id
        """
        frame = con.execute(sql, {"as_of": as_of.to_pydatetime(), "start": start.to_pydatetime(), "city": city}).df()
    finally:
        con.close()
    regions = [str(r) for r in region_ids]
    if regions:
        frame = frame[frame["region_id"].astype(str).isin(regions)]
    return frame.reset_index(drop=True)


def load_history(
    lake: Lake,
    *,
    city: str,
    as_of: pd.Timestamp,
    days: int,
    step_min: int,
    max_age_min: int,
) -> pd.DataFrame:
    """Bikes per station on the plan grid over the ``days`` before ``as_of`` (unmasked rows only)."""
    start = as_of - pd.Timedelta(days=days)
    con = lake.connect()
    try:
        sql = f"""
            SELECT station_id, last_updated, bikes
            FROM ({status_sql(lake, city=city, start=start.floor("min"), end=as_of)})
            WHERE last_updated > $start AND last_updated <= $as_of AND NOT coalesce(masked, false)
        """
        rows = con.execute(sql, {"as_of": as_of.to_pydatetime(), "start": start.to_pydatetime()}).df()
    finally:
        con.close()
    return history_grid(rows, start=start, end=as_of, step_min=step_min, max_age_min=max_age_min)


def system_timezone(lake: Lake, *, city: str) -> str | None:
    """The system's time zone from system_information (None when unknown)."""
    con = lake.connect()
    try:
        rows = con.execute("SELECT timezone FROM system_information WHERE city = $city", {"city": city}).fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return str(rows[0][0]) if rows and rows[0][0] else None
