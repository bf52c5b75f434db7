"""The feature definition: DuckDB SQL over the lake views, the same text offline and online.

The statements read only the lake views ``station_status``, ``station_information_versions``,
``system_information`` and ``weather`` (scoped to the partitions a window needs by
:mod:`bikeshare.features.build`) plus two small tables the caller registers: ``_ranges`` (slot index
ranges to materialise) and ``_holidays`` (local dates). Every window frame looks backwards only,
so a feature at slot ``t`` is a function of snapshots with ``last_updated <= t``; labels are joined
last, from the grid at ``t + horizon``.

Slots are integers: ``slot_idx = epoch_us(slot) // grid_us``.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE_US = 60_000_000
EARTH_RADIUS_M = 6_371_000.0

# How far back the recent-window features look, in minutes (net flows, rolling stats, lags).
RECENT_LOOKBACK_MIN = 360
# Half-width of the time-of-day window the smoothed history averages over, in minutes.
HISTORY_SMOOTH_MIN = 30


@dataclass(frozen=True)
class SqlParams:
    """Integers and floats the SQL is parameterised by (all from Settings; no user text)."""

    city: str
    grid_min: int
    max_age_min: int
    horizon_min: int
    threshold: int
    neighbour_radius_m: float
    history_days: int
    timezone: str
    start_idx: int  # first output slot index
    end_idx: int  # last output slot index
    ranges: tuple[tuple[int, int], ...]  # slot index ranges the grid materialises
    with_labels: bool
    skip_masked: bool = True

    @property
    def grid_us(self) -> int:
        return self.grid_min * MINUTE_US

    def slots(self, minutes: int) -> int:
        return minutes // self.grid_min

    @property
    def day_slots(self) -> int:
        return 1440 // self.grid_min


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _in_ranges(column: str, ranges: tuple[tuple[int, int], ...]) -> str:
    return "(" + " OR ".join(f"{column} BETWEEN {lo} AND {hi}" for lo, hi in ranges) + ")"


def feature_statements(p: SqlParams) -> list[str]:
    """Statements that leave the feature rows (and labels when asked) in temp table ``_features``."""
    g_us = p.grid_us
    age_us = p.max_age_min * MINUTE_US
    h = p.slots(p.horizon_min)
    thr = p.threshold
    scan_lo_us = min(lo for lo, _ in p.ranges) * g_us - age_us
    scan_hi_us = max(hi for _, hi in p.ranges) * g_us
    s15, s30, s60, s120, s360 = p.slots(15), p.slots(30), p.slots(60), p.slots(120), p.slots(RECENT_LOOKBACK_MIN)
    sw = p.slots(HISTORY_SMOOTH_MIN)
    day = p.day_slots
    radius = float(p.neighbour_radius_m)
    # Degrees of latitude/longitude that surely cover the radius (pre-filter of the pair search).
    lat_deg = radius / 111_000.0 * 1.2
    lon_deg = lat_deg * 2.0

    recent_lo = p.start_idx - s360
    ranges_values = ", ".join(f"({lo}, {hi})" for lo, hi in p.ranges)
    return [
        # 1. Usable snapshots: unmasked, with both counts, one row per station and feed time.
        f"""
        CREATE OR REPLACE TEMP TABLE _snap AS
        SELECT station_id, epoch_us(last_updated) AS ts_us, bikes, ebikes, docks,
               bikes_disabled, docks_disabled, epoch_us(last_reported) AS reported_us
        FROM station_status
        WHERE city = {quote(p.city)} {"AND NOT coalesce(masked, false)" if p.skip_masked else ""}
          AND station_id IS NOT NULL AND bikes IS NOT NULL AND docks IS NOT NULL
          AND epoch_us(last_updated) BETWEEN {scan_lo_us} AND {scan_hi_us}
        QUALIFY row_number() OVER (PARTITION BY station_id, last_updated ORDER BY fetched_at DESC NULLS LAST) = 1
        """,
        # 2. The canonical grid: each snapshot covers the slots from its time until the station's
        #    next snapshot, but never more than max_age_min after it (then the slot is missing).
        f"""
        CREATE OR REPLACE TEMP TABLE _grid AS
        WITH s AS (
            SELECT *, lead(ts_us) OVER (PARTITION BY station_id ORDER BY ts_us) AS next_us FROM _snap
        ), c AS (
            SELECT *, (ts_us + {g_us - 1}) // {g_us} AS first_idx,
                   least(coalesce(next_us - 1, ts_us + {age_us}), ts_us + {age_us}) // {g_us} AS last_idx
            FROM s
        ), g AS (
            SELECT station_id, unnest(range(first_idx, last_idx + 1)) AS slot_idx, ts_us, reported_us,
                   bikes, ebikes, docks, bikes_disabled, docks_disabled
            FROM c WHERE last_idx >= first_idx
        )
        SELECT * FROM g WHERE {_in_ranges("slot_idx", p.ranges)}
        """,
        # 3. Station information in force at each slot (a version is a full snapshot of the city).
        f"""
        CREATE OR REPLACE TEMP TABLE _slot_version AS
        SELECT s.slot_idx, v.valid_from
        FROM (SELECT DISTINCT slot_idx FROM _grid) s
        ASOF LEFT JOIN (
            SELECT DISTINCT valid_from, epoch_us(valid_from) AS vf_us
            FROM station_information_versions WHERE city = {quote(p.city)}
        ) v ON s.slot_idx * {g_us} >= v.vf_us
        """,
        f"""
        CREATE OR REPLACE TEMP TABLE _base AS
        SELECT g.*, i.capacity, i.lat, i.lon, i.region_id
        FROM _grid g
        JOIN _slot_version sv USING (slot_idx)
        LEFT JOIN (
            SELECT * FROM station_information_versions WHERE city = {quote(p.city)}
            QUALIFY row_number() OVER (PARTITION BY station_id, valid_from ORDER BY fetched_at DESC NULLS LAST) = 1
        ) i ON i.station_id = g.station_id AND i.valid_from = sv.valid_from
        """,
        # 4. A dense grid: every station x every slot of the ranges, NULL counts where the station is
        #    missing. On it, ROWS frames are exact time offsets (a row is one grid step).
        f"""
        CREATE OR REPLACE TEMP TABLE _dense AS
        WITH st AS (SELECT DISTINCT station_id FROM _base),
        sl AS (SELECT unnest(range(lo, hi + 1)) AS slot_idx FROM (VALUES {ranges_values}) r(lo, hi))
        SELECT st.station_id, sl.slot_idx, b.bikes, b.docks, b.ebikes
        FROM st CROSS JOIN sl
        LEFT JOIN _base b ON b.station_id = st.station_id AND b.slot_idx = sl.slot_idx
        """,
        # 5. The station's recent past (the output window and the recent lookback are contiguous).
        f"""
        CREATE OR REPLACE TEMP TABLE _recent AS
        WITH steps AS (
            SELECT *, abs(bikes - lag(bikes) OVER (PARTITION BY station_id ORDER BY slot_idx)) AS step
            FROM _dense WHERE slot_idx BETWEEN {recent_lo} AND {p.end_idx}
        ), w AS (
            SELECT station_id, slot_idx, bikes,
                   bikes - lag(bikes, {s15}) OVER w AS net_flow_15,
                   bikes - lag(bikes, {s30}) OVER w AS net_flow_30,
                   bikes - lag(bikes, {s60}) OVER w AS net_flow_60,
                   bikes - lag(bikes, {s120}) OVER w AS net_flow_120,
                   (bikes - lag(bikes, {s15}) OVER w) - (lag(bikes, {s15}) OVER w - lag(bikes, {s30}) OVER w)
                       AS flow_accel_15,
                   docks - lag(docks, {s15}) OVER w AS docks_change_15,
                   docks - lag(docks, {s30}) OVER w AS docks_change_30,
                   docks - lag(docks, {s60}) OVER w AS docks_change_60,
                   ebikes - lag(ebikes, {s30}) OVER w AS ebike_flow_30,
                   avg(bikes) OVER w60 AS bikes_mean_60,
                   stddev_pop(bikes) OVER w60 AS bikes_std_60,
                   min(bikes) OVER w60 AS bikes_min_60,
                   max(bikes) OVER w60 AS bikes_max_60,
                   regr_slope(bikes, slot_idx) OVER w60 * {s60} AS bikes_trend_60,
                   regr_slope(docks, slot_idx) OVER w60 * {s60} AS docks_trend_60,
                   avg(docks) OVER w60 AS docks_mean_60,
                   stddev_pop(docks) OVER w60 AS docks_std_60,
                   min(docks) OVER w60 AS docks_min_60,
                   max(docks) OVER w60 AS docks_max_60,
                   count(bikes) OVER w60 AS slots_seen_60,
                   count(CASE WHEN bikes <= {thr} THEN 1 END) OVER w60 AS short_bikes_slots_60,
                   count(CASE WHEN docks <= {thr} THEN 1 END) OVER w60 AS short_docks_slots_60,
                   sum(step) OVER w60 AS turnover_60,
                   min(bikes) OVER w120 AS bikes_min_120,
                   min(docks) OVER w120 AS docks_min_120,
                   sum(step) OVER w120 AS turnover_120,
                   avg(bikes) OVER w360 AS bikes_mean_360,
                   avg(docks) OVER w360 AS docks_mean_360,
                   count(CASE WHEN bikes <= {thr} THEN 1 END) OVER w360 AS short_bikes_slots_360,
                   count(CASE WHEN docks <= {thr} THEN 1 END) OVER w360 AS short_docks_slots_360
            FROM steps
            WINDOW w AS (PARTITION BY station_id ORDER BY slot_idx),
                   w60 AS (w ROWS BETWEEN {s60 - 1} PRECEDING AND CURRENT ROW),
                   w120 AS (w ROWS BETWEEN {s120 - 1} PRECEDING AND CURRENT ROW),
                   w360 AS (w ROWS BETWEEN {s360 - 1} PRECEDING AND CURRENT ROW)
        )
        SELECT * EXCLUDE (bikes) FROM w
        WHERE bikes IS NOT NULL AND slot_idx BETWEEN {p.start_idx} AND {p.end_idx}
        """,
        # 6. Local calendar of every slot (time zone of the system).
        f"""
        CREATE OR REPLACE TEMP TABLE _calendar AS
        WITH s AS (
            SELECT slot_idx, make_timestamp(slot_idx * {g_us})::TIMESTAMPTZ AS slot
            FROM (SELECT DISTINCT slot_idx FROM _dense)
        ), l AS (SELECT *, timezone({quote(p.timezone)}, slot) AS local_ts FROM s)
        SELECT slot_idx, slot,
               hour(local_ts) + minute(local_ts) / 60.0 AS hour_local,
               isodow(local_ts) AS weekday,
               isodow(local_ts) >= 6 AS is_weekend,
               CAST(local_ts AS DATE) IN (SELECT day FROM _holidays) AS is_holiday,
               isodow(local_ts) >= 6 OR CAST(local_ts AS DATE) IN (SELECT day FROM _holidays) AS day_off
        FROM l
        """,
        # 7. What happened in the horizon_min after each row: the labels of an output row, and the
        #    history of the same time of day for rows one or more days later. Every row these values
        #    are read from has its next horizon_min inside the same range.
        f"""
        CREATE OR REPLACE TEMP TABLE _ahead AS
        SELECT d.station_id, d.slot_idx, d.bikes, d.docks, c.day_off,
               lead(d.bikes, {h}) OVER w AS bikes_ahead,
               lead(d.docks, {h}) OVER w AS docks_ahead,
               min(d.bikes) OVER (w ROWS BETWEEN 1 FOLLOWING AND {h} FOLLOWING) AS min_bikes_ahead,
               min(d.docks) OVER (w ROWS BETWEEN 1 FOLLOWING AND {h} FOLLOWING) AS min_docks_ahead
        FROM _dense d JOIN _calendar c USING (slot_idx)
        WINDOW w AS (PARTITION BY d.station_id ORDER BY d.slot_idx)
        """,
        # 8. The station's past days at this time of day: a partition holds one station and one time
        #    of day (UTC), one row per day, so ROWS frames count days. Only t - k days (k >= 1) enter,
        #    and their next horizon_min ended by t. Day-type variants keep days off or workdays only.
        f"""
        CREATE OR REPLACE TEMP TABLE _hist AS
        WITH u AS (
            SELECT station_id, slot_idx, day_off, bikes_ahead, docks_ahead,
                   bikes_ahead - bikes AS flow_h,
                   docks_ahead - docks AS docks_flow_h,
                   CAST(bikes_ahead <= {thr} AS INTEGER) AS short_b,
                   CAST(docks_ahead <= {thr} AS INTEGER) AS short_d,
                   CAST(min_bikes_ahead <= {thr} AS INTEGER) AS any_short_b,
                   CAST(min_docks_ahead <= {thr} AS INTEGER) AS any_short_d
            FROM _ahead
        ), v AS (
            -- The same values averaged over +-HISTORY_SMOOTH_MIN around each row (all within the
            -- range the row belongs to, so still known at t for rows one or more days before t).
            SELECT *,
                   avg(flow_h) OVER ws AS sm_flow_h,
                   avg(docks_flow_h) OVER ws AS sm_docks_flow_h,
                   avg(short_b) OVER ws AS sm_short_b,
                   avg(short_d) OVER ws AS sm_short_d
            FROM u
            WINDOW ws AS (PARTITION BY station_id ORDER BY slot_idx ROWS BETWEEN {sw} PRECEDING AND {sw} FOLLOWING)
            QUALIFY slot_idx % {day} IN (SELECT DISTINCT i % {day} FROM range({p.start_idx}, {p.end_idx + 1}) r(i))
        ), w AS (
            SELECT station_id, slot_idx, day_off, bikes_ahead, docks_ahead,
                   avg(flow_h) OVER wh AS hist_flow_h,
                   avg(bikes_ahead) OVER wh AS hist_bikes_h,
                   avg(docks_flow_h) OVER wh AS hist_docks_flow_h,
                   avg(short_b) OVER wh AS hist_short_bikes_h,
                   avg(short_d) OVER wh AS hist_short_docks_h,
                   avg(any_short_b) OVER wh AS hist_any_short_bikes_h,
                   avg(any_short_d) OVER wh AS hist_any_short_docks_h,
                   count(bikes_ahead) OVER wh AS hist_days,
                   avg(sm_flow_h) OVER wh AS hist_smooth_flow_h,
                   avg(sm_docks_flow_h) OVER wh AS hist_smooth_docks_flow_h,
                   avg(sm_short_b) OVER wh AS hist_smooth_short_bikes_h,
                   avg(sm_short_d) OVER wh AS hist_smooth_short_docks_h,
                   avg(CASE WHEN day_off THEN flow_h END) OVER wh AS off_flow_h,
                   avg(CASE WHEN NOT day_off THEN flow_h END) OVER wh AS work_flow_h,
                   avg(CASE WHEN day_off THEN short_b END) OVER wh AS off_short_b,
                   avg(CASE WHEN NOT day_off THEN short_b END) OVER wh AS work_short_b,
                   avg(CASE WHEN day_off THEN short_d END) OVER wh AS off_short_d,
                   avg(CASE WHEN NOT day_off THEN short_d END) OVER wh AS work_short_d
            FROM v
            WINDOW wd AS (PARTITION BY station_id, slot_idx % {day} ORDER BY slot_idx),
                   wh AS (wd ROWS BETWEEN {p.history_days} PRECEDING AND 1 PRECEDING)
        )
        SELECT station_id, slot_idx, bikes_ahead, docks_ahead,
               hist_flow_h, hist_bikes_h, hist_docks_flow_h, hist_short_bikes_h, hist_short_docks_h,
               hist_any_short_bikes_h, hist_any_short_docks_h, hist_days,
               hist_smooth_flow_h, hist_smooth_docks_flow_h, hist_smooth_short_bikes_h, hist_smooth_short_docks_h,
               CASE WHEN day_off THEN off_flow_h ELSE work_flow_h END AS daytype_flow_h,
               CASE WHEN day_off THEN off_short_b ELSE work_short_b END AS daytype_short_bikes_h,
               CASE WHEN day_off THEN off_short_d ELSE work_short_d END AS daytype_short_docks_h
        FROM w WHERE slot_idx BETWEEN {p.start_idx} AND {p.end_idx}
        """,
        f"""
        CREATE OR REPLACE TEMP TABLE _station2 AS
        SELECT b.station_id, b.slot_idx, b.ts_us, b.reported_us, b.bikes, b.ebikes, b.docks,
               b.bikes_disabled, b.docks_disabled, b.capacity, b.lat, b.lon, b.region_id,
               r.* EXCLUDE (station_id, slot_idx), h.* EXCLUDE (station_id, slot_idx)
        FROM (SELECT * FROM _base WHERE slot_idx BETWEEN {p.start_idx} AND {p.end_idx}) b
        JOIN _recent r USING (station_id, slot_idx)
        JOIN _hist h USING (station_id, slot_idx)
        """,
        # 9. Neighbourhood: stations within the radius at the same slot, by the coordinates in force.
        f"""
        CREATE OR REPLACE TEMP TABLE _pairs AS
        WITH c AS (SELECT DISTINCT station_id, lat, lon FROM _station2 WHERE lat IS NOT NULL AND lon IS NOT NULL)
        SELECT DISTINCT a.station_id AS station_id, b.station_id AS nb_id
        FROM c a JOIN c b
          ON a.station_id <> b.station_id
         AND abs(a.lat - b.lat) <= {lat_deg} AND abs(a.lon - b.lon) <= {lon_deg}
        """,
        f"""
        CREATE OR REPLACE TEMP TABLE _nb AS
        WITH j AS (
            SELECT a.station_id, a.slot_idx, b.bikes, b.docks, b.net_flow_30,
                   {EARTH_RADIUS_M} * sqrt(
                       pow(radians(b.lat - a.lat), 2)
                       + pow(radians(b.lon - a.lon) * cos(radians((a.lat + b.lat) / 2)), 2)
                   ) AS dist_m
            FROM _station2 a
            JOIN _pairs p ON p.station_id = a.station_id
            JOIN _station2 b ON b.station_id = p.nb_id AND b.slot_idx = a.slot_idx
            WHERE a.slot_idx BETWEEN {p.start_idx} AND {p.end_idx}
        )
        SELECT station_id, slot_idx,
               count(*) AS nb_count,
               sum(bikes) AS nb_bikes,
               sum(docks) AS nb_docks,
               sum(bikes * (1 - dist_m / {radius})) AS nb_bikes_w,
               sum(docks * (1 - dist_m / {radius})) AS nb_docks_w,
               sum(net_flow_30) AS nb_net_flow_30,
               sum(CASE WHEN bikes <= {thr} THEN 1 ELSE 0 END) AS nb_short_bikes,
               sum(CASE WHEN docks <= {thr} THEN 1 ELSE 0 END) AS nb_short_docks
        FROM j WHERE dist_m <= {radius}
        GROUP BY station_id, slot_idx
        """,
        # Wider areas at the same slot: the whole system, the station's region, its ~1 km grid cell.
        """
        CREATE OR REPLACE TEMP TABLE _area AS
        WITH s AS (
            SELECT station_id, slot_idx, region_id, bikes, docks, net_flow_15, net_flow_30,
                   CAST(floor(lat / 0.01) * 100000 + floor(lon / 0.01) AS BIGINT) AS cell
            FROM _station2
        ), sys AS (
            SELECT slot_idx, avg(net_flow_15) AS sys_net_flow_15, avg(net_flow_30) AS sys_net_flow_30,
                   CAST(sum(bikes) AS DOUBLE) / nullif(sum(bikes + docks), 0) AS sys_fill_ratio
            FROM s GROUP BY slot_idx
        ), region AS (
            SELECT slot_idx, region_id, avg(net_flow_30) AS region_net_flow_30 FROM s GROUP BY slot_idx, region_id
        ), cell AS (
            SELECT slot_idx, cell, sum(net_flow_30) AS cell_net_flow_30, sum(bikes) AS cell_bikes,
                   sum(docks) AS cell_docks
            FROM s GROUP BY slot_idx, cell
        )
        SELECT s.station_id, s.slot_idx, sys.sys_net_flow_15, sys.sys_net_flow_30, sys.sys_fill_ratio,
               region.region_net_flow_30, cell.cell_net_flow_30, cell.cell_bikes, cell.cell_docks
        FROM s
        JOIN sys USING (slot_idx)
        JOIN region ON region.slot_idx = s.slot_idx AND region.region_id IS NOT DISTINCT FROM s.region_id
        JOIN cell ON cell.slot_idx = s.slot_idx AND cell.cell IS NOT DISTINCT FROM s.cell
        """,
        # 10. Weather per output slot: the latest hourly row at or before the slot.
        f"""
        CREATE OR REPLACE TEMP TABLE _slots AS
        SELECT c.*, w.temp_c, w.precip_mm, w.wind_kmh, w.condition_code
        FROM (SELECT * FROM _calendar WHERE slot_idx BETWEEN {p.start_idx} AND {p.end_idx}) c
        ASOF LEFT JOIN (
            SELECT * FROM weather WHERE city = {quote(p.city)} AND time IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY time ORDER BY weather_station) = 1
        ) w ON c.slot >= w.time
        """,
        # 11. One row per present station-slot in the output window.
        f"""
        CREATE OR REPLACE TEMP TABLE _features AS
        SELECT s.station_id, t.slot,
               s.bikes, s.ebikes, s.docks, s.bikes_disabled, s.docks_disabled, s.capacity,
               CAST(s.bikes AS DOUBLE) / nullif(s.bikes + s.docks, 0) AS fill_ratio,
               CAST(s.ebikes AS DOUBLE) / nullif(s.bikes, 0) AS ebike_share,
               (s.slot_idx * {g_us} - s.ts_us) / {MINUTE_US}.0 AS snapshot_age_min,
               least((s.slot_idx * {g_us} - s.reported_us) / {MINUTE_US}.0, 1440.0) AS reported_age_min,
               s.net_flow_15, s.net_flow_30, s.net_flow_60, s.net_flow_120, s.flow_accel_15,
               s.docks_change_15, s.docks_change_30, s.docks_change_60, s.ebike_flow_30,
               s.bikes_mean_60, s.bikes_std_60, s.bikes_min_60, s.bikes_max_60, s.bikes_trend_60, s.docks_trend_60,
               s.docks_mean_60, s.docks_std_60, s.docks_min_60, s.docks_max_60,
               s.slots_seen_60, s.short_bikes_slots_60, s.short_docks_slots_60, s.turnover_60,
               s.bikes_min_120, s.docks_min_120, s.turnover_120,
               s.bikes_mean_360, s.docks_mean_360, s.short_bikes_slots_360, s.short_docks_slots_360,
               s.lat, s.lon, coalesce(TRY_CAST(s.region_id AS INTEGER), hash(s.region_id) % 100000) AS region_code,
               CAST(floor(s.lat / 0.01) * 100000 + floor(s.lon / 0.01) AS BIGINT) AS geo_cell,
               coalesce(n.nb_count, 0) AS nb_count, coalesce(n.nb_bikes, 0) AS nb_bikes,
               coalesce(n.nb_docks, 0) AS nb_docks, coalesce(n.nb_bikes_w, 0) AS nb_bikes_w,
               coalesce(n.nb_docks_w, 0) AS nb_docks_w, coalesce(n.nb_net_flow_30, 0) AS nb_net_flow_30,
               coalesce(n.nb_short_bikes, 0) AS nb_short_bikes, coalesce(n.nb_short_docks, 0) AS nb_short_docks,
               CAST(coalesce(n.nb_bikes, 0) AS DOUBLE) / nullif(coalesce(n.nb_bikes, 0) + coalesce(n.nb_docks, 0), 0)
                   AS nb_fill_ratio,
               a.sys_net_flow_15, a.sys_net_flow_30, a.sys_fill_ratio, a.region_net_flow_30,
               a.cell_net_flow_30, a.cell_bikes, a.cell_docks,
               s.hist_flow_h, s.hist_bikes_h, s.hist_docks_flow_h, s.hist_short_bikes_h, s.hist_short_docks_h,
               s.hist_any_short_bikes_h, s.hist_any_short_docks_h, s.hist_days,
               s.hist_smooth_flow_h, s.hist_smooth_docks_flow_h, s.hist_smooth_short_bikes_h,
               s.hist_smooth_short_docks_h,
               s.daytype_flow_h, s.daytype_short_bikes_h, s.daytype_short_docks_h,
               s.bikes + s.bikes_trend_60 * {p.horizon_min / 60.0} AS bikes_proj_trend,
               s.bikes + s.net_flow_30 * {p.horizon_min / 30.0} AS bikes_proj_flow,
               s.bikes + s.hist_smooth_flow_h AS bikes_proj_hist,
               s.docks + s.docks_trend_60 * {p.horizon_min / 60.0} AS docks_proj_trend,
               s.docks + s.docks_change_30 * {p.horizon_min / 30.0} AS docks_proj_flow,
               s.docks + s.hist_smooth_docks_flow_h AS docks_proj_hist,
               t.hour_local, t.weekday, t.is_weekend, t.is_holiday,
               t.temp_c, t.precip_mm, t.wind_kmh, t.condition_code
               {_label_columns(thr) if p.with_labels else _NULL_LABELS}
        FROM _station2 s
        JOIN _slots t USING (slot_idx)
        LEFT JOIN _nb n USING (station_id, slot_idx)
        JOIN _area a USING (station_id, slot_idx)
        WHERE s.slot_idx BETWEEN {p.start_idx} AND {p.end_idx}
        """,
    ]


_NULL_LABELS = (
    ", CAST(NULL AS INTEGER) AS bikes_t_h, CAST(NULL AS INTEGER) AS docks_t_h, "
    "CAST(NULL AS BOOLEAN) AS y_bikes, CAST(NULL AS BOOLEAN) AS y_docks"
)


def _label_columns(thr: int) -> str:
    return (
        ", s.bikes_ahead AS bikes_t_h, s.docks_ahead AS docks_t_h, "
        f"s.bikes_ahead <= {thr} AS y_bikes, s.docks_ahead <= {thr} AS y_docks"
    )
