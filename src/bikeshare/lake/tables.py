"""Every table of the lake: where it lives, how it is partitioned, and its Arrow schema.

This is the one place that knows the layout. Stages name a :class:`TableSpec` and the
:class:`~bikeshare.lake.store.Lake` turns it into paths, atomic writes and DuckDB views.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")
# The time of a feed document: the last column of every normalised frame.
FEED_LAST_UPDATED = pa.field("last_updated", UTC_TS)


class Grain(StrEnum):
    """Granularity of a table's ``dt=`` partition value (always UTC)."""

    MINUTE = "minute"  # dt=YYYY-MM-DD-HH-mm
    DAY = "day"  # dt=YYYY-MM-DD


@dataclass(frozen=True)
class TableSpec:
    """A lake table: ``<prefix>/city=<city>/dt=<dt>/<file>.parquet``, exposed as view ``name``."""

    name: str
    prefix: str
    grain: Grain
    schema: pa.Schema
    description: str = ""
    feed_columns: tuple[str, ...] = ()
    """Raw feed tables: the per-station columns read from the GBFS feed, in order. Normalisation,
    the contract's Pandera schema, the recording format and the monitor's field lists derive
    their columns from them (:meth:`normalised_schema`)."""

    def select(self, names: Iterable[str]) -> pa.Schema:
        """The fields named ``names``, in that order."""
        return pa.schema([self.schema.field(name) for name in names])

    def feed_columns_of(self, arrow_type: pa.DataType) -> tuple[str, ...]:
        """The feed columns of one type (e.g. ``pa.int32()``: the counts of station_status)."""
        return tuple(f.name for f in self.select(self.feed_columns) if f.type == arrow_type)

    def normalised_schema(self, *extra: str) -> pa.Schema:
        """A normalised feed document: the feed columns, its ``last_updated``, then ``extra`` columns of the table."""
        return pa.schema([*self.select(self.feed_columns), FEED_LAST_UPDATED, *self.select(extra)])


def _feed_table(
    *,
    name: str,
    prefix: str,
    description: str,
    feed: list[tuple[str, pa.DataType]],
    after: list[tuple[str, pa.DataType]],
) -> TableSpec:
    """A raw feed table (minute grain): the ``feed`` columns (:attr:`TableSpec.feed_columns`), then ``after``."""
    return TableSpec(
        name=name,
        prefix=prefix,
        grain=Grain.MINUTE,
        schema=pa.schema([*feed, *after]),
        description=description,
        feed_columns=tuple(column for column, _ in feed),
    )


STATION_STATUS = _feed_table(
    name="station_status",
    prefix="raw/station_status",
    description="One row per station per feed snapshot, normalised from any GBFS version.",
    feed=[
        ("station_id", pa.string()),
        ("bikes", pa.int32()),
        ("ebikes", pa.int32()),
        ("docks", pa.int32()),
        ("bikes_disabled", pa.int32()),
        ("docks_disabled", pa.int32()),
        ("is_installed", pa.bool_()),
        ("is_renting", pa.bool_()),
        ("is_returning", pa.bool_()),
        ("last_reported", UTC_TS),
    ],
    after=[
        (FEED_LAST_UPDATED.name, FEED_LAST_UPDATED.type),
        ("fetched_at", UTC_TS),
        ("batch_id", pa.string()),
        # Row-level contract outcome: masked rows stay in the lake but are not scored.
        ("masked", pa.bool_()),
        ("mask_reasons", pa.string()),
    ],
)

STATION_INFORMATION = _feed_table(
    name="station_information_versions",
    prefix="raw/station_information",
    description="Slowly changing dimension: one partition per distinct content, dt = valid_from.",
    feed=[
        ("station_id", pa.string()),
        ("name", pa.string()),
        ("short_name", pa.string()),
        ("capacity", pa.int32()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("region_id", pa.string()),
    ],
    # valid_from is the document's last_updated; a version's content is its feed columns.
    after=[
        ("valid_from", UTC_TS),
        ("fetched_at", UTC_TS),
        ("batch_id", pa.string()),
        ("content_hash", pa.string()),
    ],
)

SYSTEM_INFORMATION = TableSpec(
    name="system_information_versions",
    prefix="raw/system_information",
    grain=Grain.MINUTE,
    description="The system's name, timezone and language, one partition per distinct content.",
    schema=pa.schema(
        [
            ("system_id", pa.string()),
            ("name", pa.string()),
            ("timezone", pa.string()),
            ("language", pa.string()),
            ("valid_from", UTC_TS),
            ("fetched_at", UTC_TS),
            ("content_hash", pa.string()),
        ]
    ),
)

INGEST_LOG = TableSpec(
    name="ingest_log",
    prefix="ingest_log",
    grain=Grain.DAY,
    description="One row per ingest batch: timings, counts, validation outcome, masked stations.",
    schema=pa.schema(
        [
            ("batch_id", pa.string()),
            ("feed", pa.string()),
            ("source", pa.string()),
            ("gbfs_version", pa.string()),
            ("fetched_at", UTC_TS),
            ("published_at", UTC_TS),  # the feed's last_updated
            ("committed_at", UTC_TS),
            ("ingest_latency_s", pa.float64()),  # published_at -> committed_at
            ("outcome", pa.string()),  # committed | duplicate | unchanged | quarantined | fetch_failed
            ("reason", pa.string()),
            ("rows_in", pa.int64()),
            ("rows_written", pa.int64()),
            ("rows_masked", pa.int64()),
            ("row_pass_rate", pa.float64()),
            ("masked_by_reason", pa.string()),  # JSON object: reason -> count
            ("path", pa.string()),
            ("converted_by_field", pa.string()),  # JSON object: field -> values converted ("5" -> 5)
        ]
    ),
)

QUARANTINE = TableSpec(
    name="quarantine",
    prefix="quarantine",
    grain=Grain.DAY,
    description="Rejected batches: the reason row here, the original payload beside it.",
    schema=pa.schema(
        [
            ("batch_id", pa.string()),
            ("feed", pa.string()),
            ("source", pa.string()),
            ("fetched_at", UTC_TS),
            ("published_at", UTC_TS),
            ("reason_code", pa.string()),
            ("reason", pa.string()),  # JSON: machine-readable details
            ("payload_path", pa.string()),
        ]
    ),
)

WEATHER = TableSpec(
    name="weather",
    prefix="weather",
    grain=Grain.DAY,
    description="Hourly Meteostat observations at the station nearest the system's centre.",
    schema=pa.schema(
        [
            ("time", UTC_TS),
            ("weather_station", pa.string()),
            ("temp_c", pa.float64()),
            ("precip_mm", pa.float64()),
            ("wind_kmh", pa.float64()),
            ("condition_code", pa.int32()),
        ]
    ),
)

# Bump when a feature's definition changes: models record the version they were trained on.
FEATURE_VERSION = "1"

_F32 = pa.float32()
FEATURES = TableSpec(
    name="features",
    prefix="features",
    grain=Grain.DAY,
    description=f"Model inputs and labels per station and 5-minute slot (feature_version {FEATURE_VERSION}); "
    "rebuilt per day by `bikeshare features build`.",
    schema=pa.schema(
        [
            ("station_id", pa.string()),
            ("slot", UTC_TS),
            # current state (as of the latest unmasked snapshot at or before the slot)
            ("bikes", pa.int32()),
            ("ebikes", pa.int32()),
            ("docks", pa.int32()),
            ("bikes_disabled", pa.int32()),
            ("docks_disabled", pa.int32()),
            ("capacity", pa.int32()),
            ("fill_ratio", _F32),
            ("ebike_share", _F32),
            ("snapshot_age_min", _F32),
            ("reported_age_min", _F32),
            # the station's recent past
            ("net_flow_15", _F32),
            ("net_flow_30", _F32),
            ("net_flow_60", _F32),
            ("net_flow_120", _F32),
            ("flow_accel_15", _F32),
            ("docks_change_15", _F32),
            ("docks_change_30", _F32),
            ("docks_change_60", _F32),
            ("ebike_flow_30", _F32),
            ("bikes_mean_60", _F32),
            ("bikes_std_60", _F32),
            ("bikes_min_60", _F32),
            ("bikes_max_60", _F32),
            ("bikes_trend_60", _F32),
            ("docks_trend_60", _F32),
            ("docks_mean_60", _F32),
            ("docks_std_60", _F32),
            ("docks_min_60", _F32),
            ("docks_max_60", _F32),
            ("slots_seen_60", _F32),
            ("short_bikes_slots_60", _F32),
            ("short_docks_slots_60", _F32),
            ("turnover_60", _F32),
            ("bikes_min_120", _F32),
            ("docks_min_120", _F32),
            ("turnover_120", _F32),
            ("bikes_mean_360", _F32),
            ("docks_mean_360", _F32),
            ("short_bikes_slots_360", _F32),
            ("short_docks_slots_360", _F32),
            # place
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("region_code", pa.int64()),
            ("geo_cell", pa.int64()),
            # neighbourhood within neighbour_radius_m at the same slot
            ("nb_count", _F32),
            ("nb_bikes", _F32),
            ("nb_docks", _F32),
            ("nb_bikes_w", _F32),
            ("nb_docks_w", _F32),
            ("nb_net_flow_30", _F32),
            ("nb_short_bikes", _F32),
            ("nb_short_docks", _F32),
            ("nb_fill_ratio", _F32),
            ("sys_net_flow_15", _F32),
            ("sys_net_flow_30", _F32),
            ("sys_fill_ratio", _F32),
            ("region_net_flow_30", _F32),
            ("cell_net_flow_30", _F32),
            ("cell_bikes", _F32),
            ("cell_docks", _F32),
            # the station's past days at this time of day
            ("hist_flow_h", _F32),
            ("hist_bikes_h", _F32),
            ("hist_docks_flow_h", _F32),
            ("hist_short_bikes_h", _F32),
            ("hist_short_docks_h", _F32),
            ("hist_any_short_bikes_h", _F32),
            ("hist_any_short_docks_h", _F32),
            ("hist_days", _F32),
            ("hist_smooth_flow_h", _F32),
            ("hist_smooth_docks_flow_h", _F32),
            ("hist_smooth_short_bikes_h", _F32),
            ("hist_smooth_short_docks_h", _F32),
            ("daytype_flow_h", _F32),
            ("daytype_short_bikes_h", _F32),
            ("daytype_short_docks_h", _F32),
            # simple projections of the count to t + horizon_min (trees add two inputs poorly)
            ("bikes_proj_trend", _F32),
            ("bikes_proj_flow", _F32),
            ("bikes_proj_hist", _F32),
            ("docks_proj_trend", _F32),
            ("docks_proj_flow", _F32),
            ("docks_proj_hist", _F32),
            # calendar (local time of the system) and weather
            ("hour_local", _F32),
            ("weekday", _F32),
            ("is_weekend", _F32),
            ("is_holiday", _F32),
            ("temp_c", _F32),
            ("precip_mm", _F32),
            ("wind_kmh", _F32),
            ("condition_code", _F32),
            # labels at slot + horizon_min (null when the station is missing then)
            ("bikes_t_h", pa.int32()),
            ("docks_t_h", pa.int32()),
            ("y_bikes", pa.bool_()),
            ("y_docks", pa.bool_()),
        ]
    ),
)

AUDIT = TableSpec(
    name="promotions",
    prefix="audit/promotions",
    grain=Grain.DAY,
    description="Append-only history of alias moves and gate verdicts (promote, refused, forced, rollback); "
    "one file per event, mirrored as model version tags.",
    schema=pa.schema(
        [
            ("event_id", pa.string()),
            ("at", UTC_TS),
            ("actor", pa.string()),  # --actor, else the OS user
            ("model_name", pa.string()),  # bikeshare-<city>-<target>
            ("target", pa.string()),
            ("version", pa.string()),  # the version the event is about (the new holder when it moved)
            ("alias", pa.string()),  # staging | production
            ("action", pa.string()),  # promote | refused | forced | rollback
            ("previous_version", pa.string()),  # holder before the event (null: none)
            ("verdict", pa.string()),  # pass | fail | none (rollback runs no gate)
            ("checks", pa.string()),  # JSON list of {name, passed, detail, observed, required}
            ("note", pa.string()),
            ("run_id", pa.string()),
        ]
    ),
)

# ---- monitoring (bikeshare.monitoring) -------------------------------------------------------

ALERT_EVENTS = TableSpec(
    name="alert_events",
    prefix="monitoring/alert_events",
    grain=Grain.DAY,
    description="Append-only alert log: lifecycle events and one 'routed' row per sink delivery attempt.",
    schema=pa.schema(
        [
            ("event_id", pa.string()),
            ("alert_id", pa.string()),
            ("event", pa.string()),  # pending|fired|escalated|deescalated|acknowledged|resolved|routed
            ("status", pa.string()),  # state after the event: pending|firing|acknowledged|resolved
            ("event_at", UTC_TS),
            ("recorded_at", UTC_TS),  # wall clock of the append
            ("seq", pa.int32()),  # order within one append
            ("rule", pa.string()),
            ("fingerprint", pa.string()),  # rule{label=value,...}: the alert identity
            ("signal", pa.string()),
            ("labels", pa.string()),  # JSON object
            ("severity", pa.string()),
            ("value", pa.float64()),
            ("threshold", pa.float64()),
            ("comparison", pa.string()),
            ("unit", pa.string()),
            ("message", pa.string()),
            ("runbook", pa.string()),
            ("observed_at", UTC_TS),
            ("started_at", UTC_TS),
            ("fired_at", UTC_TS),
            ("evaluations", pa.int32()),
            ("acknowledged_by", pa.string()),
            ("fault_started_at", UTC_TS),
            ("ttd_s", pa.float64()),  # fault_started_at -> fired_at (drills)
            ("mtta_s", pa.float64()),  # fired_at -> acknowledged
            ("sink", pa.string()),
            ("routed_event", pa.string()),
            ("routed_at", UTC_TS),
            ("ok", pa.bool_()),
            ("error", pa.string()),
            ("details", pa.string()),  # JSON object
        ]
    ),
)

FEATURE_BASELINES = TableSpec(
    name="feature_baselines",
    prefix="monitoring/baselines",
    grain=Grain.DAY,
    description="Training-time distribution of each feature and of the predicted probability, per model version.",
    schema=pa.schema(
        [
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("target", pa.string()),
            ("feature", pa.string()),
            ("kind", pa.string()),  # numeric | categorical
            ("rows", pa.int64()),
            ("missing", pa.int64()),
            ("created_at", UTC_TS),
            ("baseline", pa.string()),  # FeatureBaseline.to_dict() as JSON
        ]
    ),
)

DRIFT_SCORES = TableSpec(
    name="drift_scores",
    prefix="monitoring/drift",
    grain=Grain.DAY,
    description="PSI and KS per feature (and predicted probability) of a live window against the baseline.",
    schema=pa.schema(
        [
            ("evaluated_at", UTC_TS),
            ("window_start", UTC_TS),
            ("window_end", UTC_TS),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("target", pa.string()),
            ("feature", pa.string()),
            ("kind", pa.string()),
            ("psi", pa.float64()),
            ("ks_stat", pa.float64()),
            ("ks_pvalue", pa.float64()),
            ("live_rows", pa.int64()),
            ("missing_rate", pa.float64()),
            ("baseline_missing_rate", pa.float64()),
            ("drifting", pa.bool_()),
        ]
    ),
)

PLANS = TableSpec(
    name="plans",
    prefix="plans",
    grain=Grain.MINUTE,
    description="Rebalancing plans (dt = plan time): one 'summary' row per plan, then one row per truck stop "
    "of the optimised and the greedy routes (method).",
    schema=pa.schema(
        [
            ("plan_id", pa.string()),
            ("as_of", UTC_TS),
            ("created_at", UTC_TS),
            ("method", pa.string()),  # summary | optimised | greedy
            ("status", pa.string()),  # solver outcome: optimal | converged | time_limit | greedy_better | ...
            ("forecaster", pa.string()),
            ("truck", pa.int32()),
            ("stop_seq", pa.int32()),
            ("station_id", pa.string()),
            ("name", pa.string()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("action", pa.string()),  # load | unload
            ("quantity", pa.int32()),
            ("arrival", UTC_TS),
            ("departure", UTC_TS),
            ("load_after", pa.int32()),
            ("avoided_min", pa.float64()),  # expected stockout minutes this stop avoids
            ("depot_lat", pa.float64()),
            ("depot_lon", pa.float64()),
            ("trucks", pa.int32()),
            ("truck_capacity", pa.int32()),
            ("horizon_min", pa.int32()),
            ("time_limit_s", pa.float64()),
            ("solve_s", pa.float64()),
            ("travel_cost", pa.float64()),
            ("stockout_min_no_action", pa.float64()),
            ("stockout_min_plan", pa.float64()),
            ("stockout_min_greedy", pa.float64()),
            ("travel_min_plan", pa.float64()),
            ("travel_min_greedy", pa.float64()),
            ("bikes_moved_plan", pa.int32()),
            ("bikes_moved_greedy", pa.int32()),
            ("stations_in_need", pa.int32()),
        ]
    ),
)

# ---- inference and feedback (bikeshare.inference) --------------------------------------------

_PREDICTION_FIELDS: list[tuple[str, pa.DataType]] = [
    ("batch_id", pa.string()),
    ("prediction_time", UTC_TS),  # clock time of scoring (real or replayed)
    ("feature_time", UTC_TS),  # the feature slot t
    ("target_time", UTC_TS),  # t + horizon_min
    ("horizon_min", pa.int32()),
    ("station_id", pa.string()),
    ("target", pa.string()),  # bikes | docks
    ("alias", pa.string()),  # production | staging
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("probability", pa.float64()),
    ("decision", pa.bool_()),
    ("threshold", pa.float64()),
    ("current_count", pa.int32()),  # bikes (or docks) at t
    ("capacity", pa.int32()),
    ("shadow", pa.bool_()),  # true: an extra alias scored in shadow, not served
]

INFERENCE = TableSpec(
    name="inference",
    prefix="inference",
    grain=Grain.MINUTE,
    description="Batch predictions (dt = feature slot), long: one row per station x target x horizon x alias; "
    "one file per slot and alias.",
    schema=pa.schema(_PREDICTION_FIELDS),
)

FORECASTS = TableSpec(
    name="forecasts",
    prefix="forecasts",
    grain=Grain.MINUTE,
    description="Multi-horizon forecasts of the batch job (dt = feature slot): one row per station x horizon x "
    "alias, keyed like inference rows; one file per slot and alias.",
    schema=pa.schema(
        [
            ("batch_id", pa.string()),
            ("prediction_time", UTC_TS),
            ("feature_time", UTC_TS),
            ("target_time", UTC_TS),  # feature_time + horizon_min
            ("horizon_min", pa.int32()),
            ("station_id", pa.string()),
            ("alias", pa.string()),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("p_no_bikes", pa.float64()),
            ("p_no_docks", pa.float64()),
            ("expected_bikes", pa.float64()),
            ("bikes_lo", pa.float64()),  # 10% quantile
            ("bikes_hi", pa.float64()),  # 90% quantile
            ("current_bikes", pa.int32()),
            ("current_docks", pa.int32()),
            ("capacity", pa.int32()),
        ]
    ),
)

INFERENCE_BATCHES = TableSpec(
    name="inference_batches",
    prefix="inference_batches",
    grain=Grain.DAY,
    description="One row per inference batch and alias (dt = feature slot's day): outcome, timings, counts, "
    "and the forecast call's outcome.",
    schema=pa.schema(
        [
            ("batch_id", pa.string()),
            ("feature_time", UTC_TS),
            ("started_at", UTC_TS),
            ("finished_at", UTC_TS),
            ("duration_s", pa.float64()),
            ("status", pa.string()),  # ok | failed | skipped
            ("rows", pa.int64()),
            ("stations_scored", pa.int64()),
            ("stations_masked", pa.int64()),  # latest snapshot masked by the data contract
            ("stations_missing", pa.int64()),  # known stations without a usable snapshot
            ("attempts", pa.int32()),  # HTTP attempts made (retries included)
            ("error", pa.string()),
            ("endpoint", pa.string()),
            ("alias", pa.string()),
            ("shadow", pa.bool_()),
            ("model_versions", pa.string()),  # JSON object: target -> version
            # The forecast route's outcome for the slot (served alias only; null: not asked):
            # ok | failed | skipped (no forecast model, or the slot's forecasts already written).
            ("forecast_status", pa.string()),
            ("forecast_error", pa.string()),
        ]
    ),
)

QUALITY = TableSpec(
    name="quality",
    prefix="monitoring/quality",
    grain=Grain.DAY,
    description="Predictions joined with the counts observed at target_time (dt = target_time's day); "
    "status joined | missing.",
    schema=pa.schema(
        [
            *_PREDICTION_FIELDS,
            ("actual_count", pa.int32()),
            ("actual_label", pa.bool_()),  # actual_count <= shortage_threshold
            ("actual_time", UTC_TS),  # last_updated of the snapshot the count comes from
            ("status", pa.string()),  # joined | missing
            ("joined_at", UTC_TS),
        ]
    ),
)

JOB_RUNS = TableSpec(
    name="job_runs",
    prefix="monitoring/job_runs",
    grain=Grain.DAY,
    description="One row per run of a scheduled job (ingest, infer, actuals, monitor, retrain, plan).",
    schema=pa.schema(
        [
            ("run_id", pa.string()),
            ("job", pa.string()),
            ("scheduled_at", UTC_TS),  # the clock time the schedule asked for (replay or real)
            ("started_at", UTC_TS),
            ("finished_at", UTC_TS),
            ("duration_s", pa.float64()),  # wall seconds the run took
            ("lag_s", pa.float64()),  # started_at - scheduled_at, on the job clock
            ("status", pa.string()),  # ok | failed | skipped
            ("error", pa.string()),
            ("details", pa.string()),  # JSON summary from the job
        ]
    ),
)

ENDPOINT_METRICS = TableSpec(
    name="endpoint_metrics",
    prefix="monitoring/endpoint",
    grain=Grain.DAY,
    description="Endpoint latency and errors per monitoring window, scraped from its /metrics.",
    schema=pa.schema(
        [
            ("observed_at", UTC_TS),
            ("window_start", UTC_TS),
            ("window_end", UTC_TS),
            ("route", pa.string()),  # e.g. /invocations, or 'all'
            ("requests", pa.int64()),
            ("errors", pa.int64()),
            ("error_rate", pa.float64()),
            ("p50_ms", pa.float64()),
            ("p95_ms", pa.float64()),
            ("p99_ms", pa.float64()),
            ("model_versions", pa.string()),  # JSON: target/alias -> version
        ]
    ),
)

MONITORING_RUNS = TableSpec(
    name="monitoring_runs",
    prefix="monitoring/runs",
    grain=Grain.DAY,
    description="One row per monitor run: its window, the signals it passed to the alert rules, what it fired "
    "and routed, and the endpoint scrape the next run takes its deltas from.",
    schema=pa.schema(
        [
            ("run_id", pa.string()),
            ("evaluated_at", UTC_TS),  # the run's 'now' (replay or real clock)
            ("window_start", UTC_TS),
            ("window_end", UTC_TS),
            ("started_at", UTC_TS),  # wall clock
            ("duration_s", pa.float64()),
            ("status", pa.string()),  # ok | partial (a part could not be computed: see notes)
            ("signals", pa.string()),  # JSON list of {name, value, labels, observed_at}
            ("signals_measured", pa.int32()),
            ("signals_missing", pa.int32()),
            ("alerts_fired", pa.int32()),
            ("alerts_resolved", pa.int32()),
            ("routes_ok", pa.int32()),
            ("routes_failed", pa.int32()),
            ("notes", pa.string()),  # JSON list of strings: why a part was skipped or failed
            ("endpoint", pa.string()),  # /metrics URL scraped (null: not scraped)
            ("endpoint_scrape", pa.string()),  # JSON: cumulative counters of that scrape
            ("fault_started_at", UTC_TS),  # drills: when the injected fault began
        ]
    ),
)

MONITOR_METRICS = TableSpec(
    name="monitor_metrics",
    prefix="monitoring/metrics",
    grain=Grain.DAY,
    description="Long table of what each monitor run measured: data quality (per feed and field), model "
    "quality (24 h, per target and version), inference batches and job runs; one row per metric.",
    schema=pa.schema(
        [
            ("run_id", pa.string()),
            ("evaluated_at", UTC_TS),
            ("window_start", UTC_TS),
            ("window_end", UTC_TS),
            ("family", pa.string()),  # data_quality | model_quality | inference | jobs
            ("metric", pa.string()),
            ("subject", pa.string()),  # feed, field, job or target the metric is about ('' when global)
            ("target", pa.string()),
            ("alias", pa.string()),
            ("model_version", pa.string()),
            ("value", pa.float64()),
        ]
    ),
)

ALL_TABLES: tuple[TableSpec, ...] = (
    STATION_STATUS,
    STATION_INFORMATION,
    SYSTEM_INFORMATION,
    INGEST_LOG,
    QUARANTINE,
    WEATHER,
    PLANS,
    AUDIT,
    FEATURES,
    ALERT_EVENTS,
    FEATURE_BASELINES,
    DRIFT_SCORES,
    INFERENCE,
    INFERENCE_BATCHES,
    FORECASTS,
    QUALITY,
    JOB_RUNS,
    ENDPOINT_METRICS,
    MONITORING_RUNS,
    MONITOR_METRICS,
)
