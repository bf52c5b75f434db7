"""Every query of the dashboard: named functions over the lake's DuckDB views, cached per lake and city.

Each public query takes a :class:`Source` (which lake, which city) and an ``epoch`` (the cache
period: ``int(time / dashboard_cache_ttl_s)``, see :func:`epoch_of`), so a result is reused by every
session until the period ends. Queries over minute-partitioned tables (``station_status``,
``inference``, ``plans``) filter on the ``dt`` partition string, so DuckDB opens only the files of
the window they need; the newest partitions come from one listing (:func:`latest_partitions`).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from typing import Any, NamedTuple

import duckdb
import pandas as pd
import streamlit as st

from bikeshare.lake.store import Lake, empty_select_sql, partition_value, view_closure
from bikeshare.lake.tables import ALL_TABLES, Grain, TableSpec
from bikeshare.lake.views import DERIVED_VIEWS, read_only_frame

VIEW_NAMES: tuple[str, ...] = (*(spec.name for spec in ALL_TABLES), *DERIVED_VIEWS)
# The views the pages read (the map reads inference and station_status by partition folder).
PAGE_VIEWS: tuple[str, ...] = (
    "system_information",
    "station_information_current",
    "plan_summary",
    "plan_stops",
    "quality",
    "drift_latest",
    "promotions",
    "endpoint_metrics",
    "inference_batches",
    "job_runs",
    "alerts",
    "ingest_log",
    "quarantine",
)
DAY_CACHE_ENTRIES = 256  # day aggregates kept per process (a day of quality aggregates is ~1 MB)
_KEEP = 3600  # seconds an unused cached result may stay in memory (the epoch decides freshness)
_ENTRIES = 256

# The command that produces each table: what a "no data yet" message tells the operator to run.
PRODUCED_BY: dict[str, str] = {
    "station_status": "bikeshare ingest (or bikeshare backfill)",
    "station_information_versions": "bikeshare ingest (or bikeshare backfill)",
    "system_information_versions": "bikeshare ingest (or bikeshare backfill)",
    "ingest_log": "bikeshare ingest (or bikeshare backfill)",
    "quarantine": "bikeshare ingest (a rejected feed batch lands here)",
    "inference": "bikeshare infer",
    "inference_batches": "bikeshare infer",
    "quality": "bikeshare actuals",
    "promotions": "bikeshare promote",
    "drift_scores": "bikeshare monitor",
    "feature_baselines": "bikeshare monitor",
    "alert_events": "bikeshare monitor",
    "endpoint_metrics": "bikeshare monitor",
    "job_runs": "bikeshare run",
    "plans": "bikeshare rebalance plan",
}


class Source(NamedTuple):
    """Which lake and city the dashboard reads (hashable: the cache key of every query)."""

    lake_uri: str
    s3_endpoint_url: str | None
    city: str


def epoch_of(ttl_s: float, *, now: float | None = None) -> int:
    """The cache period a moment falls in: results are reused while it stays the same."""
    return int((time.time() if now is None else now) // ttl_s)


def spec_of(table: str) -> TableSpec:
    """The lake table named ``table`` (its view name)."""
    for spec in ALL_TABLES:
        if spec.name == table:
            return spec
    raise KeyError(f"no lake table named {table!r}")


class LakeReader:
    """One DuckDB connection with the lake's views, shared by every session of the process.

    Views are created when a query first names them (with what they read): binding a view over
    thousands of files takes a moment, and a page needs a few. Each query runs on its own cursor
    (DuckDB connections are not shared between threads). Once per cache period every bound table
    view is checked against the lake's layout and rebound when its scan changed: files in a table
    that was empty, a new day's minutes, a day compaction folded into one file.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._lock = threading.Lock()
        self._con = lake.connect_read_only(views=())  # no file outside the lake, no setting change
        self._bound: dict[str, str] = {}  # view -> the SQL it was created with
        self._checked_epoch: int | None = None
        self._days: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    def _ensure(self, sql: str) -> None:
        mentioned = {name for name in VIEW_NAMES if re.search(rf"\b{name}\b", sql)}
        if mentioned <= self._bound.keys():
            return
        with self._lock:
            self._bind(view_closure(mentioned) - self._bound.keys())

    def _bind(self, names: set[str]) -> None:
        """(Re)create the views ``names`` whose SQL differs from what they were bound with (lock held)."""
        for spec in ALL_TABLES:
            if spec.name in names:
                self._create(spec.name, self.lake.scan_sql(spec))
        for name, sql in DERIVED_VIEWS.items():
            if name in names:
                self._create(name, sql)

    def _create(self, name: str, sql: str) -> None:
        if self._bound.get(name) != sql:
            self._con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
            self._bound[name] = sql

    def day_cached(self, key: tuple[str, ...], compute: Any) -> Any:
        """A result keyed by its input's content (e.g. a day and its file count), kept for the process (LRU)."""
        with self._lock:
            if key in self._days:
                self._days.move_to_end(key)
                return self._days[key]
        value = compute()
        with self._lock:
            self._days[key] = value
            while len(self._days) > DAY_CACHE_ENTRIES:
                self._days.popitem(last=False)
        return value

    def prepare(self, views: tuple[str, ...] = PAGE_VIEWS) -> None:
        """Create the views now (server start) rather than at the first page that needs them."""
        self._ensure(" ".join(views))

    def refresh(self, epoch: int) -> None:
        """Rebind the table views whose scan changed (at most once per cache period)."""
        with self._lock:
            if self._checked_epoch != epoch:
                self._bind({spec.name for spec in ALL_TABLES} & self._bound.keys())
            self._checked_epoch = epoch

    def frame(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run one query on a fresh cursor and return its rows."""
        self._ensure(sql)
        cursor = self._con.cursor()
        try:
            return cursor.execute(sql, params or []).df()
        finally:
            cursor.close()

    def frames(self, setup: list[tuple[str, list[Any]]], queries: list[str]) -> list[pd.DataFrame]:
        """Run ``setup`` statements (e.g. a TEMP TABLE of the rows several panels need, read once),
        then each query, on one cursor; the temporary tables go with it."""
        for sql in [*(statement for statement, _ in setup), *queries]:
            self._ensure(sql)
        cursor = self._con.cursor()
        try:
            for sql, params in setup:
                cursor.execute(sql, params)
            return [cursor.execute(sql).df() for sql in queries]
        finally:
            cursor.close()

    def read_only_frame(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """:meth:`frame` for SQL that comes from outside the pages: refused unless it only reads."""
        self._ensure(sql)
        cursor = self._con.cursor()
        try:
            return read_only_frame(cursor, sql, params, who="the dashboard's SQL")
        finally:
            cursor.close()

    def close(self) -> None:
        self._con.close()


@st.cache_resource(show_spinner=False)
def _open_reader(lake_uri: str, s3_endpoint_url: str | None) -> LakeReader:
    from bikeshare.resources import Resources
    from bikeshare.settings import load_settings

    return LakeReader(Resources.build(load_settings(lake_uri=lake_uri, s3_endpoint_url=s3_endpoint_url)).lake)


def reader(src: Source, epoch: int) -> LakeReader:
    """The process's reader of ``src``'s lake, its empty views rebuilt for this cache period."""
    found = _open_reader(src.lake_uri, src.s3_endpoint_url)
    found.refresh(epoch)
    return found


def clear_caches() -> None:
    """Forget every cached result and the shared connection (the sidebar's Refresh button)."""
    st.cache_data.clear()
    _open_reader.clear()


def _cached(fn: Any) -> Any:
    return st.cache_data(ttl=_KEEP, max_entries=_ENTRIES, show_spinner=False)(fn)


def _day(ts: pd.Timestamp) -> str:
    return partition_value(ts, Grain.DAY)


def _minute(ts: pd.Timestamp) -> str:
    return partition_value(ts, Grain.MINUTE)


# ---- partitions and context -------------------------------------------------------------------


@_cached
def lake_cities(lake_uri: str, s3_endpoint_url: str | None, epoch: int) -> list[str]:
    """The cities with station snapshots in the lake (its ``city=`` folders of station_status), sorted."""
    lake = reader(Source(lake_uri, s3_endpoint_url, ""), epoch).lake
    root = lake.table_root(spec_of("station_status"))
    if not lake.fs.exists(root):
        return []
    names = (p.rstrip("/").rsplit("/", 1)[-1] for p in lake.fs.ls(root, detail=False))
    return sorted(n.removeprefix("city=") for n in names if n.startswith("city="))


@_cached
def partition_list(src: Source, epoch: int, table: str) -> list[str]:
    """Every ``dt`` folder of a table for the city, oldest first (one folder listing, no file glob)."""
    return reader(src, epoch).lake.partition_dirs(spec_of(table), city=src.city)


@_cached
def latest_partitions(src: Source, epoch: int, table: str, n: int = 1) -> list[str]:
    """The ``n`` newest ``dt`` values of a table for the city that hold a file, newest first (empty: no data).

    The newest folders are checked for a Parquet file (a folder exists a moment before its first file).
    """
    spec = spec_of(table)
    lake = reader(src, epoch).lake
    out: list[str] = []
    for dt in reversed(partition_list(src, epoch, table)):
        if lake.files(spec, city=src.city, dts=[dt]):
            out.append(dt)
            if len(out) == n:
                break
    return out


def _window_scan(src: Source, epoch: int, table: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """A scan of the minute partitions of ``[start, end]`` only: an explicit file list, no table glob."""
    lo, hi = _minute(start), _minute(end)
    dts = [dt for dt in partition_list(src, epoch, table) if lo <= dt <= hi]
    if not dts:
        return empty_select_sql(spec_of(table))
    return reader(src, epoch).lake.scan_sql(spec_of(table), city=src.city, dts=dts)


def _folder(src: Source, epoch: int, table: str, dt: str) -> str:
    """``read_parquet`` of one partition folder's files with their file names (for file-name filters)."""
    path = reader(src, epoch).lake.partition_dir(spec_of(table), city=src.city, dt=dt)
    return f"read_parquet('{path}/*.parquet', filename = true)"


@_cached
def system_info(src: Source, epoch: int) -> pd.DataFrame:
    """The system's name and time zone (newest system_information version)."""
    return reader(src, epoch).frame("SELECT name, timezone FROM system_information WHERE city = ?", [src.city])


# ---- map and top-N ----------------------------------------------------------------------------


@_cached
def latest_batch(src: Source, epoch: int) -> pd.DataFrame:
    """The newest served batch (one row, or none): its slot and counts, with its batch record's
    masked and missing station counts when the record is there.

    The newest minute partitions of ``inference`` are read one folder at a time (a partition holds
    a file per scored alias, only when scoring succeeded); the record is found in its day of
    ``inference_batches`` by file name, which DuckDB filters before opening any file.
    """
    lake = reader(src, epoch)
    for dt in latest_partitions(src, epoch, "inference", 24):
        found = lake.frame(
            f"""
            SELECT batch_id, any_value(feature_time) AS feature_time, any_value(alias) AS alias,
                   count(*) AS rows, count(DISTINCT station_id) AS stations_scored, ? AS dt
            FROM {_folder(src, epoch, "inference", dt)} WHERE NOT shadow GROUP BY batch_id
            """,
            [dt],
        )
        if found.empty:  # only shadow rows in this slot: the served alias failed
            continue
        batch = found.iloc[:1].copy()
        record = (
            lake.frame(
                f"""
            SELECT stations_masked, stations_missing, duration_s
            FROM {_folder(src, epoch, "inference_batches", dt[:10])} WHERE filename LIKE ?
            """,
                [f"%-{batch['batch_id'].iloc[0]}.parquet"],
            )
            if dt[:10] in partition_list(src, epoch, "inference_batches")
            else pd.DataFrame()
        )
        for column in ("stations_masked", "stations_missing", "duration_s"):
            batch[column] = record[column].iloc[0] if not record.empty else None
        return batch.reset_index(drop=True)
    return pd.DataFrame()


@_cached
def latest_risk(src: Source, epoch: int, feature_time: pd.Timestamp | None) -> pd.DataFrame:
    """One row per station: its place and the latest batch's probabilities, counts and model.

    Stations in station_information that the batch did not score (masked, no snapshot) are kept
    with null probabilities; ``risk`` is max(P(no bikes), P(no docks)).
    """
    if feature_time is None:
        source = f"({empty_select_sql(spec_of('inference'))})"
    else:
        source = _folder(src, epoch, "inference", _minute(feature_time))
    return reader(src, epoch).frame(
        """
        WITH p AS (
            SELECT * FROM {source} WHERE NOT shadow
        ), w AS (
            SELECT station_id,
                   max(probability) FILTER (WHERE target = 'bikes') AS p_bikes,
                   max(probability) FILTER (WHERE target = 'docks') AS p_docks,
                   bool_or(decision) FILTER (WHERE target = 'bikes') AS alert_bikes,
                   bool_or(decision) FILTER (WHERE target = 'docks') AS alert_docks,
                   max(current_count) FILTER (WHERE target = 'bikes') AS bikes_now,
                   max(current_count) FILTER (WHERE target = 'docks') AS docks_now,
                   max(threshold) FILTER (WHERE target = 'bikes') AS threshold_bikes,
                   max(threshold) FILTER (WHERE target = 'docks') AS threshold_docks,
                   max(model_version) FILTER (WHERE target = 'bikes') AS version_bikes,
                   max(model_version) FILTER (WHERE target = 'docks') AS version_docks,
                   max(capacity) AS capacity_scored, max(alias) AS alias,
                   max(feature_time) AS feature_time, max(target_time) AS target_time,
                   max(horizon_min) AS horizon_min
            FROM p GROUP BY station_id
        ), info AS (
            SELECT station_id, name, region_id, lat, lon, capacity
            FROM station_information_current WHERE city = ?
        )
        SELECT station_id, info.name, info.region_id, info.lat, info.lon,
               coalesce(info.capacity, w.capacity_scored) AS capacity,
               w.* EXCLUDE (station_id, capacity_scored),
               CASE WHEN w.p_bikes IS NULL AND w.p_docks IS NULL THEN NULL
                    ELSE greatest(coalesce(w.p_bikes, 0), coalesce(w.p_docks, 0)) END AS risk
        FROM info FULL OUTER JOIN w USING (station_id)
        ORDER BY risk DESC NULLS LAST, station_id
        """.replace("{source}", source),
        [src.city],
    )


@_cached
def station_history(src: Source, epoch: int, station_id: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Observed counts of one station with ``start <= last_updated <= end`` (pruned to those minutes)."""
    return reader(src, epoch).frame(
        f"""
        SELECT last_updated, bikes, docks, ebikes, bikes_disabled, docks_disabled, masked, mask_reasons
        FROM ({_window_scan(src, epoch, "station_status", start, end)})
        WHERE station_id = ? AND last_updated BETWEEN ? AND ?
        ORDER BY last_updated
        """,
        [station_id, start.to_pydatetime(), end.to_pydatetime()],
    )


@_cached
def station_predictions(
    src: Source, epoch: int, station_id: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Served predictions for one station made (feature slot) within ``[start, end]``."""
    return reader(src, epoch).frame(
        f"""
        SELECT feature_time, target_time, target, probability, threshold, decision, model_name, model_version
        FROM ({_window_scan(src, epoch, "inference", start, end)})
        WHERE station_id = ? AND NOT shadow
        ORDER BY target, feature_time
        """,
        [station_id],
    )


@_cached
def station_forecast(
    src: Source, epoch: int, station_id: str, end: pd.Timestamp, max_age_min: int = 120
) -> pd.DataFrame:
    """The newest stored forecast curve of one station with feature time in ``[end - max_age_min, end]``."""
    start = end - pd.Timedelta(minutes=max_age_min)
    return reader(src, epoch).frame(
        f"""
        WITH mine AS (
            SELECT * FROM ({_window_scan(src, epoch, "forecasts", start, end)})
            WHERE station_id = ? AND feature_time <= ?
        )
        SELECT feature_time, target_time, horizon_min, expected_bikes, bikes_lo, bikes_hi, p_no_bikes, p_no_docks,
               current_bikes, alias, model_name, model_version
        FROM mine WHERE feature_time = (SELECT max(feature_time) FROM mine)
        QUALIFY batch_id = max(batch_id) OVER ()
        ORDER BY horizon_min
        """,
        [station_id, end.to_pydatetime()],
    )


@_cached
def latest_plan(src: Source, epoch: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest rebalancing plan: its summary row and its truck stops (optimised and greedy)."""
    dts = latest_partitions(src, epoch, "plans", 1)
    if not dts:
        return pd.DataFrame(), pd.DataFrame()
    lake = reader(src, epoch)
    summary = lake.frame("SELECT * FROM plan_summary WHERE city = ? AND dt = ?", [src.city, dts[0]])
    stops = lake.frame(
        "SELECT * FROM plan_stops WHERE city = ? AND dt = ? ORDER BY method, truck, stop_seq", [src.city, dts[0]]
    )
    return summary, stops


# ---- model health -----------------------------------------------------------------------------


def _since_day(latest_day: str, days: int) -> str:
    return _day(pd.Timestamp(latest_day, tz="UTC") - timedelta(days=days))


# ---- model health: online quality from per-day aggregates ----------------------------------------
# A day partition of ``quality`` holds a file per scored slot (≈300 a day); reading them is what
# costs. Each day is reduced once to small additive aggregates (hourly score bins as in the
# ``quality_hourly_bins`` view, persistence bins and calibration sums per local day), kept by the
# reader until the day gains a file, so a page view re-reads only the day actuals are writing to.

_DAY_ROWS = """
    CREATE TEMP TABLE day_quality AS
    SELECT city, target, alias, model_name, model_version, shadow, target_time, probability, decision,
           actual_label, current_count, status,
           CAST(date_trunc('day', timezone('{tz}', target_time)) AS DATE) AS local_day
    FROM {source} WHERE status = 'joined' AND NOT shadow
"""

# onset: not short at prediction time (current_count > the shortage threshold), the rows where the
# model must foresee a change; persistence cannot (training.evaluate's "onsets" subset).
_DAY_PERSISTENCE = """
    SELECT target, local_day, 'model' AS scorer, round(probability, 3) AS score,
           current_count > {short} AS onset, count(*) FILTER (WHERE actual_label) AS pos, count(*) AS n
    FROM day_quality WHERE current_count IS NOT NULL GROUP BY ALL
    UNION ALL
    SELECT target, local_day, 'persistence' AS scorer, -CAST(current_count AS DOUBLE) AS score,
           current_count > {short} AS onset, count(*) FILTER (WHERE actual_label) AS pos, count(*) AS n
    FROM day_quality WHERE current_count IS NOT NULL GROUP BY ALL
"""

_DAY_CALIBRATION = """
    SELECT target, local_day, least(floor(probability * 10), 9) / 10 AS bin_start,
           sum(probability) AS sum_p, sum(CAST(actual_label AS DOUBLE)) AS sum_y, count(*) AS n
    FROM day_quality GROUP BY ALL
"""

_LIFT = """
    WITH bins AS (
        SELECT target, local_day AS day, 'all rows' AS subset, scorer, score, sum(pos) AS pos, sum(n) AS n
        FROM lift_bins GROUP BY ALL
        UNION ALL
        SELECT target, local_day AS day, 'onsets' AS subset, scorer, score, sum(pos) AS pos, sum(n) AS n
        FROM lift_bins WHERE onset GROUP BY ALL
    ), cum AS (
        SELECT *, sum(pos) OVER w AS tp_at, sum(n) OVER w AS n_at FROM bins
        WINDOW w AS (PARTITION BY target, day, subset, scorer ORDER BY score DESC ROWS UNBOUNDED PRECEDING)
    )
    SELECT target, day, subset, scorer, sum(n) AS rows, sum(pos) AS positives,
           sum(pos * tp_at / n_at) / nullif(sum(pos), 0) AS pr_auc
    FROM cum GROUP BY ALL ORDER BY target, day, subset, scorer
"""

_CALIBRATION = """
    SELECT target, bin_start, sum(sum_p) / sum(n) AS predicted, sum(sum_y) / sum(n) AS observed,
           sum(n) AS rows
    FROM calibration_sums GROUP BY ALL ORDER BY target, bin_start
"""


def _day_bins_sql() -> str:
    """The ``quality_hourly_bins`` view's own SQL, over ``day_quality``."""
    bins = DERIVED_VIEWS["quality_hourly_bins"]
    source = "FROM quality WHERE status = 'joined'"
    if source not in bins:
        raise RuntimeError("lake/views.py changed quality_hourly_bins: update dashboard.queries._day_bins_sql")
    return bins.replace(source, "FROM day_quality WHERE status = 'joined'")


def _recent_rolling_sql() -> str:
    """The ``quality_rolling_24h`` view's own SQL, over the hourly bins registered as ``recent_bins``."""
    rolling = DERIVED_VIEWS["quality_rolling_24h"].strip()
    if not rolling.startswith("WITH ") or "quality_hourly_bins" not in rolling:
        raise RuntimeError("lake/views.py changed quality_rolling_24h: update dashboard.queries._recent_rolling_sql")
    return rolling.replace("quality_hourly_bins", "recent_bins") + " ORDER BY target, window_end"


def _quality_day(
    src: Source, epoch: int, day: str, tz: str, short: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(hourly bins, persistence/model bins per local day, calibration sums) of one quality day partition."""
    if "'" in tz:
        raise ValueError(f"bad time zone name {tz!r}")
    lake = reader(src, epoch)
    source = f"({lake.lake.scan_sql(spec_of('quality'), city=src.city, dts=[day])})"
    setup = [(_DAY_ROWS.format(tz=tz, source=source), [])]
    persistence = _DAY_PERSISTENCE.format(short=int(short))
    bins, lift, calibration = lake.frames(setup, [_day_bins_sql(), persistence, _DAY_CALIBRATION])
    return bins, lift, calibration


def quality_days(
    src: Source, epoch: int, days: int, tz: str, short: int
) -> list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Aggregates of the ``days + 1`` newest quality days, each computed once per content: the
    reader's day cache is keyed by the day and its number of files (actuals only ever add files),
    so only a day that received rows since is read again."""
    latest = latest_partitions(src, epoch, "quality", 1)
    if not latest:
        return []
    newest = pd.Timestamp(latest[0], tz="UTC")
    available = set(partition_list(src, epoch, "quality"))
    lake = reader(src, epoch)
    out = []
    for k in range(days, -1, -1):
        day = _day(newest - timedelta(days=k))
        if day not in available:
            continue
        files = len(lake.lake.files(spec_of("quality"), city=src.city, dts=[day]))
        key = ("quality", src.city, day, tz, str(short), str(files))
        out.append(lake.day_cached(key, lambda d=day: _quality_day(src, epoch, d, tz, short)))
    return out


@_cached
def quality_panels(
    src: Source, epoch: int, days: int, tz: str, short: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Online quality of the served alias over the last ``days``:

    - PR-AUC, F1, precision, recall per 24 h window ending at each hour (``quality_rolling_24h``'s
      definition; one day more is read so that the first windows are full 24 h ones);
    - PR-AUC per local day of the model and of persistence (score = minus the count at prediction
      time) on the same joined rows, for the last ``days`` local days, on all rows and on onsets
      (rows not short at prediction time: count > ``short``);
    - calibration over those local days: mean predicted probability against the observed rate in 10 bins.
    """
    parts = quality_days(src, epoch, days, tz, short)
    if not parts:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    bins = pd.concat([b for b, _, _ in parts], ignore_index=True)
    lift_bins = pd.concat([lb for _, lb, _ in parts], ignore_index=True)
    sums = pd.concat([c for _, _, c in parts], ignore_index=True)
    if bins.empty:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    last_day = lift_bins["local_day"].max()
    keep = lift_bins["local_day"] > last_day - timedelta(days=days)
    lift_bins, sums = lift_bins[keep], sums[sums["local_day"] > last_day - timedelta(days=days)]
    cursor = duckdb.connect()
    try:
        cursor.execute("SET TimeZone = 'UTC'")
        cursor.register("recent_bins", bins)
        cursor.register("lift_bins", lift_bins)
        cursor.register("calibration_sums", sums)
        rolling = cursor.execute(_recent_rolling_sql()).df()
        lift = cursor.execute(_LIFT).df()
        calibration = cursor.execute(_CALIBRATION).df()
    finally:
        cursor.close()
    if not rolling.empty:
        rolling = rolling[rolling["window_end"] > rolling["window_end"].max() - timedelta(days=days)]
    return rolling.reset_index(drop=True), lift, calibration


def warm_quality(src: Source, epoch: int, days: int, tz: str, short: int) -> None:
    """Fill the reader's day cache for the default history (server start)."""
    quality_days(src, epoch, days, tz, short)


@_cached
def drift_latest(src: Source, epoch: int) -> pd.DataFrame:
    """PSI and KS per feature of the newest drift evaluation per target."""
    return reader(src, epoch).frame(
        """
        SELECT target, model_version, feature, kind, psi, ks_stat, ks_pvalue, live_rows, missing_rate,
               baseline_missing_rate, drifting, evaluated_at, window_start, window_end
        FROM drift_latest WHERE city = ?
        ORDER BY target, drifting DESC, psi DESC NULLS LAST, feature
        """,
        [src.city],
    )


@_cached
def promotions(src: Source, epoch: int, limit: int = 200) -> pd.DataFrame:
    """Alias moves and gate verdicts, newest first."""
    return reader(src, epoch).frame(
        """
        SELECT "at", target, action, alias, version, previous_version, verdict, actor, note
        FROM promotions WHERE city = ? ORDER BY "at" DESC LIMIT ?
        """,
        [src.city, limit],
    )


@_cached
def served_models(src: Source, epoch: int) -> pd.DataFrame:
    """Model versions and thresholds the newest batches applied, per alias and target (from the lake)."""
    dts = latest_partitions(src, epoch, "inference", 1)
    if not dts:
        return pd.DataFrame()
    return reader(src, epoch).frame(
        """
        SELECT alias, shadow, target, model_name, model_version, max(threshold) AS threshold,
               max(feature_time) AS feature_time
        FROM inference WHERE city = ? AND dt = ? GROUP BY ALL ORDER BY target, shadow, alias
        """,
        [src.city, dts[0]],
    )


# ---- system health ----------------------------------------------------------------------------


def _recent_days(src: Source, epoch: int, table: str, days: int) -> str | None:
    latest = latest_partitions(src, epoch, table, 1)
    return _since_day(latest[0], days) if latest else None


@_cached
def endpoint_metrics(src: Source, epoch: int, days: int) -> pd.DataFrame:
    """Endpoint latency percentiles and error rate per monitoring window (last ``days``)."""
    since = _recent_days(src, epoch, "endpoint_metrics", days)
    if since is None:
        return pd.DataFrame()
    return reader(src, epoch).frame(
        """
        SELECT window_start, window_end, route, requests, errors, error_rate, p50_ms, p95_ms, p99_ms
        FROM endpoint_metrics WHERE city = ? AND dt >= ? ORDER BY window_end, route
        """,
        [src.city, since],
    )


_RECENT_BATCHES = """
    CREATE TEMP TABLE recent_batches AS
    SELECT feature_time, status, duration_s, alias, attempts, error
    FROM inference_batches WHERE city = ? AND dt >= ? AND NOT shadow
"""

_HOURLY_BATCHES = """
    SELECT date_trunc('hour', feature_time) AS hour,
           count(*) FILTER (WHERE status = 'ok') AS ok,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'skipped') AS skipped,
           count(*) FILTER (WHERE status = 'ok')
               / nullif(count(*) FILTER (WHERE status IN ('ok', 'failed')), 0) AS success_rate,
           quantile_cont(duration_s, 0.95) FILTER (WHERE status = 'ok') AS p95_duration_s
    FROM recent_batches GROUP BY ALL ORDER BY hour
"""

_FAILED_BATCHES = """
    SELECT feature_time, alias, attempts, duration_s, error FROM recent_batches
    WHERE status = 'failed' ORDER BY feature_time DESC LIMIT 50
"""


@_cached
def batch_panels(src: Source, epoch: int, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Served inference batches of the last ``days`` (feature days): per hour ok, failed, skipped,
    success rate and P95 duration; and the newest failed batches with their errors."""
    since = _recent_days(src, epoch, "inference_batches", days)
    if since is None:
        return pd.DataFrame(), pd.DataFrame()
    hourly, failed = reader(src, epoch).frames(
        [(_RECENT_BATCHES, [src.city, since])], [_HOURLY_BATCHES, _FAILED_BATCHES]
    )
    return hourly, failed


@_cached
def job_runs(src: Source, epoch: int, hours: int) -> pd.DataFrame:
    """Runs of the scheduled jobs started in the ``hours`` before the newest run, newest first."""
    since = _recent_days(src, epoch, "job_runs", max(1, -(-hours // 24)))
    if since is None:
        return pd.DataFrame()
    return reader(src, epoch).frame(
        """
        SELECT job, status, scheduled_at, started_at, finished_at, duration_s, lag_s, error, run_id
        FROM job_runs WHERE city = ? AND dt >= ?
        QUALIFY started_at >= max(started_at) OVER () - to_hours(CAST(? AS INTEGER))
        ORDER BY started_at DESC
        """,
        [src.city, since, hours],
    )


@_cached
def open_alerts(src: Source, epoch: int) -> pd.DataFrame:
    """Alerts that are pending, firing or acknowledged, most severe and newest first."""
    return reader(src, epoch).frame(
        """
        SELECT alert_id, status, severity, rule, fingerprint, message, value, threshold, unit,
               started_at, fired_at, acknowledged_at, acknowledged_by, escalations, runbook
        FROM alerts WHERE city = ? AND status IN ('pending', 'firing', 'acknowledged')
        ORDER BY CASE status WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END,
                 CASE severity WHEN 'critical' THEN 0 ELSE 1 END, coalesce(fired_at, started_at) DESC
        """,
        [src.city],
    )


@_cached
def resolved_alerts(src: Source, epoch: int, limit: int = 20) -> pd.DataFrame:
    """The newest resolved alerts."""
    return reader(src, epoch).frame(
        """
        SELECT alert_id, severity, rule, fingerprint, fired_at, acknowledged_at, acknowledged_by, resolved_at, mtta_s
        FROM alerts WHERE city = ? AND status = 'resolved' ORDER BY resolved_at DESC LIMIT ?
        """,
        [src.city, limit],
    )


# ---- data freshness ---------------------------------------------------------------------------

# Feed name in ingest_log -> the table its committed snapshots land in.
FEED_TABLES: dict[str, str] = {
    "station_status": "station_status",
    "station_information": "station_information_versions",
    "system_information": "system_information_versions",
}


@_cached
def feed_partitions(src: Source, epoch: int) -> pd.DataFrame:
    """Per feed: its table's newest partition (``dt``, UTC minute) as one listing finds it."""
    rows = []
    for feed, table in FEED_TABLES.items():
        latest = latest_partitions(src, epoch, table, 1)
        rows.append({"feed": feed, "table": table, "latest_dt": latest[0] if latest else None})
    return pd.DataFrame(rows)


@_cached
def ingest_recent(src: Source, epoch: int, hours: int) -> pd.DataFrame:
    """Ingest log rows of the last ``hours`` before the newest logged batch."""
    days = latest_partitions(src, epoch, "ingest_log", 1)
    if not days:
        return pd.DataFrame()
    since = _since_day(days[0], max(1, -(-hours // 24)))
    frame = reader(src, epoch).frame(
        """
        SELECT feed, outcome, reason, source, fetched_at, published_at, committed_at, ingest_latency_s,
               rows_in, rows_written, rows_masked, row_pass_rate, path
        FROM ingest_log WHERE city = ? AND dt >= ? ORDER BY fetched_at
        """,
        [src.city, since],
    )
    if frame.empty:
        return frame
    cutoff = frame["fetched_at"].max() - timedelta(hours=hours)
    return frame[frame["fetched_at"] >= cutoff].reset_index(drop=True)


@_cached
def quarantined(src: Source, epoch: int, days: int, limit: int = 200) -> pd.DataFrame:
    """Rejected batches with their reasons, newest first."""
    since = _recent_days(src, epoch, "quarantine", days)
    if since is None:
        return pd.DataFrame()
    return reader(src, epoch).frame(
        """
        SELECT fetched_at, feed, reason_code, reason, source, published_at, batch_id, payload_path
        FROM quarantine WHERE city = ? AND dt >= ? ORDER BY fetched_at DESC LIMIT ?
        """,
        [src.city, since, limit],
    )


@_cached
def masked_stations(src: Source, epoch: int) -> pd.DataFrame:
    """Stations whose row in the newest station_status snapshot is masked, with the reasons."""
    dts = latest_partitions(src, epoch, "station_status", 1)
    if not dts:
        return pd.DataFrame()
    return reader(src, epoch).frame(
        """
        SELECT s.station_id, i.name, s.mask_reasons, s.last_reported, s.last_updated, s.bikes, s.docks,
               s.is_installed, s.is_renting, s.is_returning
        FROM station_status s
        LEFT JOIN (SELECT station_id, name FROM station_information_current WHERE city = ?) i USING (station_id)
        WHERE s.city = ? AND s.dt = ? AND s.masked
        ORDER BY s.mask_reasons, s.station_id
        """,
        [src.city, src.city, dts[0]],
    )


def run_sql(src: Source, epoch: int, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    """An uncached query over the views (benchmarks and tests use it to cross-check the pages).

    The query must only read (:func:`~bikeshare.lake.views.read_only_frame`); a refusal is a ValueError.
    """
    try:
        return reader(src, epoch).read_only_frame(sql, params)
    except duckdb.Error as exc:
        raise ValueError(f"query failed: {exc}") from exc


# ---- trust signals (status bar) ---------------------------------------------------------------


@_cached
def lake_clock(src: Source, epoch: int) -> tuple[pd.Timestamp | None, str | None]:
    """(newest activity recorded in the lake: a fetch or a job run, the newest ingest source)."""
    lake = reader(src, epoch)
    newest: list[pd.Timestamp] = []
    source: str | None = None
    log_day = latest_partitions(src, epoch, "ingest_log", 1)
    if log_day:
        rows = lake.frame(
            "SELECT fetched_at, source FROM ingest_log WHERE city = ? AND dt = ? ORDER BY fetched_at DESC LIMIT 1",
            [src.city, log_day[0]],
        )
        if not rows.empty:
            newest.append(pd.Timestamp(rows["fetched_at"].iloc[0]))
            source = rows["source"].iloc[0]
    run_day = latest_partitions(src, epoch, "job_runs", 1)
    if run_day:
        rows = lake.frame(
            "SELECT max(coalesce(finished_at, started_at)) AS at FROM job_runs WHERE city = ? AND dt = ?",
            [src.city, run_day[0]],
        )
        if not rows.empty and pd.notna(rows["at"].iloc[0]):
            newest.append(pd.Timestamp(rows["at"].iloc[0]))
    return (max(newest) if newest else None), source


@_cached
def last_job_runs(src: Source, epoch: int, days: int = 7) -> pd.DataFrame:
    """The newest run of each job (within ``days`` of the newest run day), with its last error."""
    since = _recent_days(src, epoch, "job_runs", days)
    if since is None:
        return pd.DataFrame()
    return reader(src, epoch).frame(
        """
        SELECT job, status, scheduled_at, started_at, finished_at, duration_s, error
        FROM job_runs WHERE city = ? AND dt >= ?
        QUALIFY row_number() OVER (PARTITION BY job ORDER BY started_at DESC) = 1
        ORDER BY job
        """,
        [src.city, since],
    )


@_cached
def latest_batch_record(src: Source, epoch: int) -> pd.DataFrame:
    """The newest served batch record (ok, failed or skipped), with its error and forecast status."""
    days = latest_partitions(src, epoch, "inference_batches", 1)
    if not days:
        return pd.DataFrame()
    return reader(src, epoch).frame(
        """
        SELECT feature_time, started_at, status, error, attempts, alias, forecast_status, forecast_error
        FROM inference_batches WHERE city = ? AND dt = ? AND NOT shadow
        ORDER BY feature_time DESC, started_at DESC LIMIT 1
        """,
        [src.city, days[0]],
    )


@_cached
def mask_onset(src: Source, epoch: int, station_id: str, end: pd.Timestamp, hours: int = 24) -> pd.DataFrame:
    """When a station's current run of masked snapshots began (within ``hours`` before ``end``), and why.

    One row (``masked_since``, ``mask_reasons``, ``runs_back_to_window``) or none when its newest row is not masked.
    """
    start = end - timedelta(hours=hours)
    return reader(src, epoch).frame(
        f"""
        WITH s AS (
            SELECT last_updated, masked, mask_reasons FROM ({_window_scan(src, epoch, "station_status", start, end)})
            WHERE station_id = ? AND last_updated BETWEEN ? AND ?
        ), last_ok AS (SELECT max(last_updated) AS ok_at FROM s WHERE NOT masked)
        SELECT min(last_updated) AS masked_since, arg_max(mask_reasons, last_updated) AS mask_reasons,
               (SELECT ok_at FROM last_ok) IS NULL AS runs_back_to_window
        FROM s WHERE masked AND last_updated > coalesce((SELECT ok_at FROM last_ok), '-infinity'::TIMESTAMPTZ)
        HAVING count(*) > 0
        """,
        [station_id, start.to_pydatetime(), end.to_pydatetime()],
    )


@_cached
def model_events(src: Source, epoch: int) -> pd.DataFrame:
    """Production alias moves (promotions, forced moves, rollbacks) and retrain runs: ``time``, ``label``."""
    moves = reader(src, epoch).frame(
        """
        SELECT "at" AS time, target || ' v' || version || ' ' || action AS label FROM promotions
        WHERE city = ? AND alias = 'production' AND action IN ('promote', 'forced', 'rollback')
        """,
        [src.city],
    )
    since = _recent_days(src, epoch, "job_runs", 90)
    if since is None:
        return moves
    retrains = reader(src, epoch).frame(
        "SELECT started_at AS time, 'retrain ' || status AS label FROM job_runs WHERE city = ? AND dt >= ? "
        "AND job = 'retrain'",
        [src.city, since],
    )
    return pd.concat([moves, retrains], ignore_index=True) if not retrains.empty else moves
