"""Reads of station snapshots over a short time window, scoped to the minute partitions it covers.

Both the batch job (which stations are masked now) and the actuals join (which count was seen at
``target_time``) look at minutes of ``station_status``, so they list only the partitions whose
``dt`` (the snapshot's ``last_updated`` minute) falls inside the window.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from bikeshare.lake.store import Lake, empty_select_sql, partition_value
from bikeshare.lake.tables import STATION_INFORMATION, STATION_STATUS, Grain, TableSpec


def minute_partitions(lake: Lake, spec: TableSpec, *, city: str, lo: pd.Timestamp, hi: pd.Timestamp) -> list[str]:
    """``dt`` values of a minute-grain table with ``lo <= dt-minute <= hi`` (UTC instants)."""
    lo_dt, hi_dt = partition_value(lo.floor("min"), Grain.MINUTE), partition_value(hi, Grain.MINUTE)
    days = pd.date_range(lo.tz_convert("UTC").floor("D"), hi.tz_convert("UTC"), freq="D")
    out: list[str] = []
    for day in days:
        out.extend(dt for dt in lake.partitions(spec, city=city, dt_glob=f"{day:%Y-%m-%d}*") if lo_dt <= dt <= hi_dt)
    return sorted(out)


def connect_window(lake: Lake, *, city: str, lo: pd.Timestamp, hi: pd.Timestamp) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose view ``status_window`` holds the snapshots of ``[lo, hi]``.

    The view reads only the partitions of the window (it may hold a few rows just outside it:
    filter on ``last_updated``).
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if lake.is_remote:
        con.register_filesystem(lake.fs)
    dts = minute_partitions(lake, STATION_STATUS, city=city, lo=lo, hi=hi)
    sql = lake.scan_sql(STATION_STATUS, city=city, dts=dts) if dts else empty_select_sql(STATION_STATUS)
    con.execute(f"CREATE VIEW status_window AS {sql}")
    return con


def latest_status(lake: Lake, *, city: str, at: pd.Timestamp, max_age_min: int) -> pd.DataFrame:
    """Each station's newest snapshot row (masked or not) with ``at - max_age <= last_updated <= at``.

    Columns: station_id, last_updated, masked, mask_reasons.
    """
    lo = at - pd.Timedelta(minutes=max_age_min)
    con = connect_window(lake, city=city, lo=lo, hi=at)
    try:
        return con.execute(
            """
            SELECT station_id, last_updated, coalesce(masked, false) AS masked, mask_reasons
            FROM status_window
            WHERE station_id IS NOT NULL AND last_updated BETWEEN ? AND ?
            QUALIFY row_number() OVER (
                PARTITION BY station_id ORDER BY last_updated DESC, fetched_at DESC NULLS LAST) = 1
            """,
            [lo.to_pydatetime(), at.to_pydatetime()],
        ).df()
    finally:
        con.close()


def stations_in_force(lake: Lake, *, city: str, at: pd.Timestamp) -> set[str]:
    """Station ids of the station_information version in force at ``at`` (empty before the first)."""
    at_dt = partition_value(at, Grain.MINUTE)
    versions = [dt for dt in lake.partitions(STATION_INFORMATION, city=city) if dt <= at_dt]
    if not versions:
        return set()
    table = lake.read(STATION_INFORMATION, city=city, dts=[versions[-1]])
    return {str(s) for s in table.column("station_id").to_pylist() if s is not None}
