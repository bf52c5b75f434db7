"""Run the feature SQL over a window of the lake: offline (a date range) and online (one slot).

Both paths call :func:`build_features`; the only difference is the window. The lake views the SQL
reads are scoped to the partitions the window needs, so online scoring of "now" scans minutes of
snapshots (plus the same minutes on each history day), not the whole lake.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

import duckdb
import pandas as pd
import pyarrow as pa

from bikeshare.features.calendar import country_of_timezone, holiday_dates
from bikeshare.features.schema import features_frame
from bikeshare.features.sql import (
    HISTORY_SMOOTH_MIN,
    MINUTE_US,
    RECENT_LOOKBACK_MIN,
    SqlParams,
    feature_statements,
    quote,
)
from bikeshare.lake.store import Lake, conform, empty_select_sql, parse_partition_value, partition_value
from bikeshare.lake.tables import (
    ALL_TABLES,
    FEATURES,
    STATION_INFORMATION,
    STATION_STATUS,
    SYSTEM_INFORMATION,
    WEATHER,
    Grain,
    TableSpec,
)
from bikeshare.settings import Settings
from bikeshare.utc import to_utc


def slot_index(ts: pd.Timestamp, grid_minutes: int) -> int:
    """Index of the grid slot at or before ``ts`` (UTC)."""
    ts = to_utc(ts)
    return int(ts.value // 1000 // (grid_minutes * MINUTE_US))


def slot_time(idx: int, grid_minutes: int) -> pd.Timestamp:
    return pd.Timestamp(idx * grid_minutes * MINUTE_US, unit="us", tz="UTC")


def needed_ranges(
    start_idx: int, end_idx: int, settings: Settings, *, with_labels: bool
) -> tuple[tuple[int, int], ...]:
    """Slot index ranges the grid must hold for features on ``[start_idx, end_idx]`` (merged)."""
    g = settings.grid_minutes
    h = settings.horizon_min // g
    day = 1440 // g
    ranges = [(start_idx - RECENT_LOOKBACK_MIN // g, end_idx + (h if with_labels else 0))]
    smooth = HISTORY_SMOOTH_MIN // g
    for k in range(1, settings.history_days + 1):
        ranges.append((start_idx - k * day - smooth, end_idx - k * day + h + smooth))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def build_features(
    *,
    lake: Lake,
    start: pd.Timestamp,
    end: pd.Timestamp,
    settings: Settings,
    with_labels: bool = True,
) -> pd.DataFrame:
    """Feature rows for every present station-slot with ``start <= slot <= end`` (UTC).

    Columns are those of the ``features`` table (labels null when ``with_labels`` is false or when
    the station is missing at ``slot + horizon``), sorted by slot and station.
    """
    table = build_features_arrow(lake=lake, start=start, end=end, settings=settings, with_labels=with_labels)
    return features_frame(table)


def online_features(*, lake: Lake, at: pd.Timestamp, settings: Settings) -> pd.DataFrame:
    """Feature rows for the latest grid slot at or before ``at``: the rows the model scores now."""
    slot = slot_time(slot_index(at, settings.grid_minutes), settings.grid_minutes)
    return build_features(lake=lake, start=slot, end=slot, settings=settings, with_labels=False)


def build_features_arrow(
    *,
    lake: Lake,
    start: pd.Timestamp,
    end: pd.Timestamp,
    settings: Settings,
    with_labels: bool = True,
) -> pa.Table:
    """Like :func:`build_features`, as an Arrow table in the ``features`` schema."""
    con = compute_features(lake=lake, start=start, end=end, settings=settings, with_labels=with_labels)
    try:
        return _fetch(con, "SELECT * FROM _features ORDER BY slot, station_id")
    finally:
        con.close()


def compute_features(
    *,
    lake: Lake,
    start: pd.Timestamp,
    end: pd.Timestamp,
    settings: Settings,
    with_labels: bool = True,
) -> duckdb.DuckDBPyConnection:
    """Run the feature SQL; the returned connection holds the rows in temp table ``_features``."""
    city = settings.city
    g = settings.grid_minutes
    start_idx = -(-to_utc(start).value // 1000 // (g * MINUTE_US))  # first slot at or after start
    end_idx = slot_index(end, g)
    if end_idx < start_idx:
        raise ValueError(f"empty feature window: start {start} is after end {end} on a {g}-minute grid")
    ranges = needed_ranges(start_idx, end_idx, settings, with_labels=with_labels)
    scan_lo = slot_time(ranges[0][0], g) - timedelta(minutes=settings.max_snapshot_age_min)
    scan_hi = slot_time(ranges[-1][1], g)
    windows = [
        (slot_time(lo, g) - timedelta(minutes=settings.max_snapshot_age_min), slot_time(hi, g)) for lo, hi in ranges
    ]
    con = scoped_connection(lake=lake, status_windows=windows, scan_lo=scan_lo, scan_hi=scan_hi, settings=settings)
    try:
        timezone = system_timezone(con, city) or settings.timezone
        if timezone is None:
            raise ValueError(
                f"no time zone for city {city!r}: the lake has no system_information for it and the timezone "
                "setting is unset (set timezone, e.g. in the fleet file, or ingest system_information)"
            )
        country = settings.holiday_country or country_of_timezone(timezone)
        years = range(scan_lo.year - 1, scan_hi.year + 2)
        days = holiday_dates(country, years)
        con.register("_holidays_src", pa.table({"day": pa.array(days, pa.date32())}))
        con.execute("CREATE OR REPLACE TEMP TABLE _holidays AS SELECT day FROM _holidays_src")
        params = SqlParams(
            city=city,
            grid_min=g,
            max_age_min=settings.max_snapshot_age_min,
            horizon_min=settings.horizon_min,
            threshold=settings.shortage_threshold,
            neighbour_radius_m=settings.neighbour_radius_m,
            history_days=settings.history_days,
            timezone=timezone,
            start_idx=start_idx,
            end_idx=end_idx,
            ranges=ranges,
            with_labels=with_labels,
            skip_masked=settings.features_skip_masked,
        )
        for statement in feature_statements(params):
            con.execute(statement)
        columns = [row[0] for row in con.execute("DESCRIBE _features").fetchall()]
        if columns != FEATURES.schema.names:
            raise RuntimeError(f"feature SQL columns {columns} differ from the features table {FEATURES.schema.names}")
    except Exception:
        con.close()
        raise
    return con


def system_timezone(con: duckdb.DuckDBPyConnection, city: str) -> str | None:
    """The IANA time zone of the city's system (latest system_information version); None when unknown."""
    rows = con.execute(
        f"SELECT timezone FROM system_information WHERE city = {quote(city)} AND timezone IS NOT NULL"
    ).fetchall()
    return str(rows[0][0]) if rows else None


def scoped_connection(
    *,
    lake: Lake,
    status_windows: list[tuple[pd.Timestamp, pd.Timestamp]],
    scan_lo: pd.Timestamp,
    scan_hi: pd.Timestamp,
    settings: Settings,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose lake views cover only the partitions the windows need.

    ``station_status`` holds the minute partitions inside ``status_windows``; the station and
    system information views hold the version in force at ``scan_lo`` and every later one up to
    ``scan_hi``; ``weather`` holds the days from the day before ``scan_lo``. Other tables are empty.
    """
    city = settings.city
    scopes: dict[str, list[str]] = {
        STATION_STATUS.name: _minute_partitions(lake, STATION_STATUS, city, status_windows),
        STATION_INFORMATION.name: _versions_in_force(lake, STATION_INFORMATION, city, scan_lo, scan_hi),
        SYSTEM_INFORMATION.name: _versions_in_force(lake, SYSTEM_INFORMATION, city, scan_lo, scan_hi),
        WEATHER.name: _day_partitions(lake, WEATHER, city, scan_lo - timedelta(days=1), scan_hi),
    }
    from bikeshare.lake.views import DERIVED_VIEWS

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    spill = settings.state_dir / "duckdb_tmp"
    con.execute(f"SET memory_limit = {quote(settings.duckdb_memory_limit)}")
    con.execute(f"SET threads = {int(settings.duckdb_threads)}")
    con.execute(f"SET temp_directory = {quote(str(spill))}")
    if lake.is_remote:
        con.register_filesystem(lake.fs)
    for spec in ALL_TABLES:
        dts = scopes.get(spec.name)
        sql = lake.scan_sql(spec, city=city, dts=dts) if dts else empty_select_sql(spec)
        con.execute(f"CREATE OR REPLACE VIEW {spec.name} AS {sql}")
    for name, sql in DERIVED_VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
    return con


def _minute_partitions(
    lake: Lake, spec: TableSpec, city: str, windows: list[tuple[pd.Timestamp, pd.Timestamp]]
) -> list[str]:
    listed = lake.partition_dirs(spec, city=city)
    bounds = [(partition_value(lo.floor("min"), Grain.MINUTE), partition_value(hi, Grain.MINUTE)) for lo, hi in windows]
    return [dt for dt in listed if any(lo <= dt <= hi for lo, hi in bounds)]


def _versions_in_force(lake: Lake, spec: TableSpec, city: str, lo: pd.Timestamp, hi: pd.Timestamp) -> list[str]:
    listed = lake.partitions(spec, city=city)
    values = [(parse_partition_value(dt), dt) for dt in listed]
    before = [dt for ts, dt in values if ts <= lo]
    inside = [dt for ts, dt in values if lo < ts <= hi]
    return before[-1:] + inside


def _day_partitions(lake: Lake, spec: TableSpec, city: str, lo: pd.Timestamp, hi: pd.Timestamp) -> list[str]:
    low, high = partition_value(lo, Grain.DAY), partition_value(hi, Grain.DAY)
    return [dt for dt in lake.partitions(spec, city=city) if low <= dt <= high]


def _fetch(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    return conform(con.sql(query).to_arrow_table(), FEATURES.schema)


def iter_days(start: pd.Timestamp, end: pd.Timestamp) -> Iterable[str]:
    """UTC ``dt`` values of the days ``[start, end]`` touches."""
    for day in pd.date_range(to_utc(start).floor("D"), to_utc(end), freq="D"):
        yield partition_value(day, Grain.DAY)


def write_features(
    *,
    lake: Lake,
    start: pd.Timestamp,
    end: pd.Timestamp,
    settings: Settings,
) -> list[str]:
    """Build features with labels for ``[start, end]`` and write one partition per UTC day.

    A day is computed in whole and replaces what the partition held (so re-running a day after
    more data arrived fills the labels of its last slots). Days are built in chunks of
    ``features_chunk_days`` to bound memory. Returns the ``dt`` values written.
    """
    city = settings.city
    first_day = to_utc(start).floor("D")
    last_day = to_utc(end).floor("D")
    if last_day < first_day:
        raise ValueError(f"empty feature window: start {start} is after end {end}")
    written: list[str] = []
    chunk = timedelta(days=settings.features_chunk_days)
    day = timedelta(days=1)
    lo = first_day
    while lo <= last_day:
        hi = min(lo + chunk - day, last_day)
        con = compute_features(
            lake=lake, start=lo, end=hi + day - timedelta(minutes=settings.grid_minutes), settings=settings
        )
        try:
            d = lo
            while d <= hi:
                dt = partition_value(d, Grain.DAY)
                table = _fetch(
                    con,
                    f"SELECT * FROM _features WHERE slot >= TIMESTAMPTZ '{d.isoformat()}' "
                    f"AND slot < TIMESTAMPTZ '{(d + day).isoformat()}' ORDER BY slot, station_id",
                )
                if table.num_rows:
                    lake.write(FEATURES, table, city=city, dt=dt, name="features", overwrite=True)
                    written.append(dt)
                else:
                    lake.delete_partition(FEATURES, city=city, dt=dt)
                d += day
        finally:
            con.close()
        lo = hi + day
    return written


def load_features(
    *,
    lake: Lake,
    city: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Feature rows stored by :func:`write_features`, optionally limited to ``[start, end]`` and ``columns``.

    Streamed by day: each day partition is read, cut to the window and the columns in Arrow, and the
    days are converted to pandas once, freeing Arrow memory column by column (peak about one copy).
    """
    lo = to_utc(start) if start is not None else None
    hi = to_utc(end) if end is not None else None
    dts = lake.partitions(FEATURES, city=city)
    if lo is not None:
        dts = [dt for dt in dts if dt >= partition_value(lo, Grain.DAY)]
    if hi is not None:
        dts = [dt for dt in dts if dt <= partition_value(hi, Grain.DAY)]
    names = list(columns) if columns is not None else FEATURES.schema.names
    days = [_day_rows(lake.read(FEATURES, city=city, dts=[dt]), lo, hi).select(names) for dt in dts]
    table = pa.concat_tables(days) if days else FEATURES.schema.empty_table().select(names)
    del days
    return features_frame(table, release=True).reset_index(drop=True)


def _day_rows(table: pa.Table, lo: pd.Timestamp | None, hi: pd.Timestamp | None) -> pa.Table:
    """The rows of one day's features with ``lo <= slot <= hi``."""
    import pyarrow.compute as pc

    keep = None
    slot = table.column("slot")
    for bound, op in ((lo, pc.greater_equal), (hi, pc.less_equal)):
        if bound is not None:
            cond = op(slot, pa.scalar(bound.to_pydatetime(), type=slot.type))
            keep = cond if keep is None else pc.and_(keep, cond)
    return table if keep is None else table.filter(keep)


def status_span(*, lake: Lake, city: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last minute partition of station_status: the default window of a build."""
    dts = lake.partition_dirs(STATION_STATUS, city=city)
    if not dts:
        raise ValueError(f"the lake holds no station_status for city {city!r}: ingest or backfill first")
    return parse_partition_value(dts[0]), parse_partition_value(dts[-1]) + timedelta(minutes=1)
