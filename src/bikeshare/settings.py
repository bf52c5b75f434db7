"""One typed settings object for the whole system.

Values come, highest priority first, from: explicit keyword arguments, environment variables
prefixed ``BIKESHARE_``, a ``.env`` file, and an optional TOML config file named by
``BIKESHARE_CONFIG`` (or passed to :func:`load_settings`). Build it once at start-up and pass it down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Public GBFS discovery URLs for the cities that ship as presets. Any other gbfs.json URL works
# through ``feed_url``.
CITY_FEED_PRESETS: dict[str, str] = {
    "sf": "https://gbfs.baywheels.com/gbfs/gbfs.json",
    "nyc": "https://gbfs.citibikenyc.com/gbfs/gbfs.json",
    "paris": "https://velib-metropole-opendata.smovengo.cloud/opendata/Velib_Metropole/gbfs.json",
}

CONFIG_ENV_VAR = "BIKESHARE_CONFIG"

# Days each lake table keeps by default (docs/lake.md, Retention). Tables not named are kept forever:
# the promotion audit and the feature baselines (a registered model version needs its baseline).
DEFAULT_RETENTION_DAYS: dict[str, int] = {
    # raw minute data and what the ingest rejected
    "station_status": 90,
    "station_information_versions": 90,  # the version valid at the cut-off is always kept
    "system_information_versions": 90,
    "quarantine": 90,
    # features are rebuilt from raw data; weather is small and feeds them
    "features": 60,
    "weather": 400,
    # predictions, their quality, plans and the loop's own records
    "inference": 400,
    "forecasts": 400,
    "inference_batches": 400,
    "quality": 400,
    "plans": 400,
    "ingest_log": 400,
    "job_runs": 400,
    "alert_events": 400,
    "drift_scores": 400,
    "endpoint_metrics": 400,
    "monitoring_runs": 400,
    "monitor_metrics": 400,
}


class Settings(BaseSettings):
    """Every tunable of the system, typed and documented in one place."""

    model_config = SettingsConfigDict(
        env_prefix="BIKESHARE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    # --- where things live -------------------------------------------------------------------
    city: str = Field("sf", pattern=r"^[a-z0-9_-]+$", description="City key used in lake partitions and model names.")
    feed_url: str | None = Field(None, description="gbfs.json discovery URL; defaults to the city's preset.")
    timezone: str | None = Field(
        None,
        description="IANA time zone of the city, for a feed without system_information (else the feed's own).",
    )
    recording_path: Path | None = Field(
        None, description="Recording folder for replay and backfill; defaults to the slice shipped in data/recordings."
    )
    replay_port: int = Field(8765, ge=0, le=65535, description="Port of `bikeshare replay serve` on 127.0.0.1.")
    replay_speed: float = Field(60.0, gt=0, description="Replay speed: recorded seconds per real second.")
    replay_gbfs_version: str = Field(
        "2.3", pattern=r"^(1\.1|2\.3|3\.0)$", description="GBFS version the replay server renders."
    )
    lake_uri: str = Field("./lake", description="Root of the Parquet lake: a folder or an s3:// URI.")
    state_dir: Path = Field(Path("./.bikeshare"), description="Local state: MLflow SQLite store, caches, pid files.")
    s3_endpoint_url: str | None = Field(None, description="Custom S3 endpoint (MinIO, moto) for an s3:// lake.")
    mlflow_tracking_uri: str | None = Field(None, description="Defaults to a SQLite store under state_dir.")
    mlflow_http_max_retries: int = Field(
        2, ge=0, description="Retries of a request to a remote MLflow server before the registry counts as unavailable."
    )
    mlflow_http_timeout_s: int = Field(10, ge=1, description="Timeout of one request to a remote MLflow server.")

    # --- ingest ------------------------------------------------------------------------------
    poll_interval_s: float = Field(
        60.0, gt=0, description="Seconds between feed polls (the feed's ttl can only lengthen it)."
    )
    http_timeout_s: float = Field(10.0, gt=0)
    retry_attempts: int = Field(4, ge=1, description="Attempts per request before a batch is given up.")
    retry_base_delay_s: float = Field(0.5, ge=0, description="First back-off delay; doubles per attempt, with jitter.")
    retry_max_delay_s: float = Field(30.0, ge=0)
    breaker_failure_threshold: int = Field(3, ge=1, description="Failed batches in a row that open the circuit.")
    breaker_reset_s: float = Field(120.0, ge=0, description="Seconds an open circuit waits before a trial request.")
    backfill_workers: int = Field(4, ge=1, description="Threads writing partitions during a backfill.")

    # --- data contract -----------------------------------------------------------------------
    contract_max_missing_frac: float = Field(
        0.05, ge=0, le=1, description="Missing share of a required field that rejects a batch."
    )
    contract_capacity_slack: int = Field(
        5, ge=0, description="bikes+docks may exceed capacity by this much before it is out of range."
    )
    contract_max_over_capacity_frac: float = Field(
        0.05, ge=0, le=1, description="Share of stations far over capacity that rejects a batch."
    )
    contract_future_skew_s: float = Field(
        300.0, ge=0, description="Allowed clock skew for last_reported ahead of last_updated."
    )
    contract_max_snapshot_age_s: float = Field(
        86400.0,
        gt=0,
        description="A snapshot whose last_updated is more than this before its fetch time is rejected "
        "(implausible_time); replay and backfill compare with the recorded fetch time.",
    )
    contract_snapshot_future_skew_s: float = Field(
        300.0,
        ge=0,
        description="A snapshot whose last_updated is more than this after its fetch time is rejected "
        "(implausible_time): the allowed clock skew between the feed and the ingest.",
    )
    stale_report_s: float = Field(
        3600.0, gt=0, description="A station whose last_reported lags last_updated by more is stale and masked."
    )

    # --- weather -----------------------------------------------------------------------------
    weather_enabled: bool = Field(True, description="Fetch hourly weather; off means empty weather columns.")
    meteostat_hourly_endpoint: str | None = Field(
        None,
        description="Sets MS_HOURLY_ENDPOINT: URL or path template with {year} and {station}; "
        "defaults to the mirror's, else Meteostat's own.",
    )
    meteostat_stations_db_endpoint: str | None = Field(
        None,
        description="URL or local path of the Meteostat stations.db; sets MS_STATIONS_DB_ENDPOINTS.",
    )
    meteostat_mirror: str | None = Field(
        None,
        description="Base URL or folder of a Meteostat mirror (stations.db, hourly/<year>/<station>.csv.gz); "
        "fills whichever endpoint is unset.",
    )
    meteostat_cache_dir: Path | None = Field(None, description="Sets MS_CACHE_DIRECTORY; defaults under state_dir.")
    meteostat_cache_enabled: bool = Field(
        True, description="Sets MS_CACHE_ENABLE; Meteostat re-reads a cached year file at most daily."
    )
    meteostat_radius_km: float = Field(50.0, gt=0, description="Weather stations farther from the centre are ignored.")
    meteostat_max_stations: int = Field(
        3, ge=1, description="Nearest weather stations tried in turn until one has data."
    )
    meteostat_max_retries: int = Field(
        1, ge=0, description="Sets MS_NETWORK_MAX_RETRIES (stations.db download; back-off 1 s, 2 s, ...)."
    )

    # --- features and labels ------------------------------------------------------------------
    grid_minutes: int = Field(5, ge=1, le=60)
    max_snapshot_age_min: int = Field(30, ge=1, description="A grid slot whose latest snapshot is older is missing.")
    horizon_min: int = Field(30, ge=1, description="Prediction horizon of the KPI model.")
    shortage_threshold: int = Field(2, ge=0, description="A station is short when bikes (or docks) <= this.")
    neighbour_radius_m: float = Field(500.0, gt=0)
    forecast_horizons_min: list[int] = Field(default_factory=lambda: [15, 30, 60, 90, 120])
    forecast_train_max_rows: int = Field(
        600_000, ge=1_000, description="Training rows (one random horizon each) the forecast models fit on at most."
    )
    forecast_num_trees: int = Field(200, ge=1, description="Boosting rounds of each multi-horizon forecast model.")
    pipeline_train_forecast: bool = Field(
        True, description="The training pipeline also trains the multi-horizon forecast model and gates it for staging."
    )
    forecast_max_age_min: int = Field(
        30, ge=1, description="Stored forecasts older than this (feature time) are stale: planning falls back."
    )
    history_days: int = Field(
        7, ge=7, le=28, description="Past days whose same time of day feeds the station-history features."
    )
    holiday_country: str | None = Field(
        None,
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 country whose public holidays are flagged; defaults to the country of the "
        "system's time zone (system_information).",
    )
    features_skip_masked: bool = Field(
        True,
        description="Treat station_status rows the contract masked (stale, not renting, ...) as missing; false "
        "keeps them, only to compare with evaluations that did not mask (bench/evaluate.py --keep-masked).",
    )
    features_chunk_days: int = Field(
        7, ge=1, le=31, description="Days `features build` computes at once (memory grows with it)."
    )
    duckdb_memory_limit: str = Field(
        "4GB", description="DuckDB memory limit of a feature build; larger intermediates spill to disk."
    )
    duckdb_threads: int = Field(2, ge=1, description="DuckDB threads of a feature build.")

    # --- training, gate ----------------------------------------------------------------------
    fbeta: float = Field(1.0, gt=0, description="Beta of the F-score the decision threshold maximises on validation.")
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="Share of the slots that hold rows, at the end, that `train` tests on."
    )
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the slots before the test part that validates (calibration, threshold)."
    )
    class_weight: str = Field(
        "sqrt",
        pattern=r"^(none|sqrt|balanced)$",
        description="Weight of positive rows: 1, sqrt(negatives/positives), or negatives/positives.",
    )
    train_num_trees: int = Field(300, ge=1, description="Boosting rounds.")
    train_learning_rate: float = Field(0.05, gt=0, le=1)
    train_num_leaves: int = Field(31, ge=2, description="Leaves per tree; more overfits (63 scored below persistence).")
    train_min_rows_per_leaf: int = Field(500, ge=1, description="Rows a leaf needs at least: the main regulariser.")
    train_subsample: float = Field(0.5, gt=0, le=1, description="Share of rows each tree sees.")
    train_feature_fraction: float = Field(0.8, gt=0, le=1, description="Share of features each tree sees.")
    train_l2: float = Field(1.0, ge=0, description="L2 penalty on leaf values.")
    train_max_bin: int = Field(63, ge=15, le=255, description="Histogram bins per feature.")
    train_threads: int = Field(2, ge=1, description="Threads of the learner while training.")
    refit_on_validation: bool = Field(
        True,
        description="After calibration and threshold are chosen on validation, refit the booster on train + "
        "validation (same settings) so the most recent days count.",
    )
    train_easy_negative_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of easy negatives (label negative, count far above the shortage threshold) kept for "
        "training, each weighted 1/rate so probabilities stay calibrated; 1: no sampling.",
    )
    kpi_min_pr_auc: float = Field(0.70, ge=0, le=1)
    kpi_min_f1: float = Field(0.55, ge=0, le=1)
    max_overfit_gap: float = Field(0.1, ge=0, description="Largest allowed train-minus-validation PR-AUC.")
    gate_max_holder_drop: float = Field(
        0.0,
        ge=0,
        le=1,
        description="PR-AUC (overall and on onsets) a candidate may lose against the current alias holder "
        "scored on the same test window before the gate refuses it.",
    )
    random_seed: int = 7

    # --- serving -----------------------------------------------------------------------------
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(8080, ge=0, le=65535)
    serve_alias: str = Field("production", pattern=r"^(production|staging)$")
    serve_api_key: str | None = Field(
        None,
        description="When set, every route but /ping and /healthz needs X-API-Key; without it the state-changing "
        "routes (alert ack) are disabled (403).",
    )
    serve_allow_unauthenticated: bool = Field(
        False,
        description="Let the endpoint start on a non-loopback host without serve_api_key (the SageMaker image does: "
        "InvokeEndpoint is authenticated by IAM). Without it such a start is refused.",
    )
    serve_canary_share: float = Field(0.0, ge=0, le=1, description="Share of requests answered by the staging model.")
    serve_max_batch_rows: int = Field(5000, ge=1)
    serve_model_poll_s: float = Field(10.0, gt=0, description="How often the endpoint checks whether its alias moved.")
    serve_threads_per_worker: int = Field(1, ge=1, description="LightGBM threads per request worker.")
    serve_workers: int = Field(1, ge=1, le=64, description="Endpoint worker processes sharing the port.")
    serve_model_dir: Path | None = Field(
        None,
        description="Serve bundle folders (<dir>/bikes, <dir>/docks; SageMaker's /opt/ml/model) instead of "
        "registry aliases.",
    )
    serve_max_body_mb: float = Field(
        32.0, gt=0, description="Largest request body accepted on any route, chunked or not (413 above)."
    )
    serve_keep_alive_s: int = Field(
        75, ge=1, description="Idle keep-alive timeout; above the load balancer's (SageMaker's is 60 s)."
    )
    serve_access_log: bool = Field(False, description="Log every request (costs latency at high rates).")
    serve_risk_refresh_s: float = Field(
        5.0, gt=0, description="How often the product API looks for a newer inference batch in the lake."
    )
    serve_parallel_min_rows: int = Field(
        64,
        ge=0,
        description="Requests with at least this many rows score bikes and docks on two threads at once "
        "(LightGBM releases the GIL); 0 scores them one after the other.",
    )
    endpoint_url: str | None = Field(
        None, description="Endpoint the batch job calls; defaults to serve_host:serve_port."
    )

    # --- batch inference and actuals (bikeshare.inference) ----------------------------------
    infer_timeout_s: float = Field(10.0, gt=0, description="Timeout of one call of the batch job to the endpoint.")
    infer_retry_attempts: int = Field(
        4, ge=1, description="Endpoint calls per batch (connect errors, timeouts, 5xx are retried) before it fails."
    )
    infer_retry_base_delay_s: float = Field(
        0.5, ge=0, description="First back-off before an endpoint retry; doubles per attempt, with jitter."
    )
    infer_retry_max_delay_s: float = Field(8.0, ge=0, description="Longest back-off between endpoint retries.")
    infer_shadow_aliases: list[str] = Field(
        default_factory=list,
        description="Aliases also scored in shadow (rows shadow=true) when their versions differ from the "
        "served alias's, e.g. ['staging'].",
    )
    infer_alias_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="Endpoint base URL per alias when each alias has its own endpoint (SageMaker does not "
        "forward X-Bikeshare-Alias), e.g. {'staging': 'https://...'}; other aliases use endpoint_url.",
    )
    actuals_interval_min: int = Field(5, ge=1, description="Minutes between two runs of `bikeshare actuals`.")
    actuals_settle_min: int = Field(
        2, ge=0, description="Minutes after target_time before a prediction is joined with the observed counts."
    )
    actuals_max_wait_min: int = Field(
        60,
        ge=0,
        description="Minutes after target_time a prediction waits for a late snapshot before it is "
        "recorded as status 'missing'.",
    )
    actuals_lookback_h: int = Field(
        48, ge=1, description="Hours of predictions (by feature time) each actuals run looks at for pending rows."
    )

    # --- schedules ---------------------------------------------------------------------------
    infer_interval_min: int = Field(5, ge=1)
    monitor_interval_min: int = Field(60, ge=1)
    retrain_interval_h: int = Field(24, ge=1)
    staging_min_online_hours: float = Field(
        24.0, ge=0, description="Online quality hours staging needs before production."
    )

    # --- loop runner, pipeline, demo (bikeshare.orchestration; docs/architecture.md) ---------
    run_jobs: list[str] = Field(
        default_factory=lambda: ["ingest", "infer", "actuals", "monitor", "retrain", "plan", "compact", "retention"],
        description="Jobs `bikeshare run` schedules (ingest every poll_interval_s, infer every infer_interval_min, "
        "actuals every actuals_interval_min, monitor every monitor_interval_min, retrain every retrain_interval_h, "
        "plan every rebalance_interval_min, compact every compact_interval_min, retention daily).",
    )
    run_shadow_aliases: list[str] = Field(
        default_factory=lambda: ["staging"],
        description="Aliases the runner's inference also scores in shadow (rows shadow=true) whenever their "
        "versions differ from the served alias's; infer_shadow_aliases, when set, wins.",
    )
    run_record_flush_s: float = Field(
        10.0, gt=0, description="Real seconds the runner buffers job_runs rows before writing them as one file."
    )
    run_stop_timeout_s: float = Field(
        60.0, ge=0, description="Real seconds a shutdown waits for running jobs to finish before abandoning them."
    )
    pipeline_train_days: float | None = Field(
        28.0,
        gt=0,
        description="Days of stored features, ending at the newest, the pipeline trains on (bounded, so a "
        "retrain does not grow with the lake's age); unset (null): all.",
    )
    demo_dir: Path = Field(Path("./demo"), description="Workspace of `bikeshare demo`: lake, state, logs.")
    demo_live_start: str = Field(
        "2023-03-08T12:00:00Z",
        description=(
            "Virtual time the demo's live loop starts at (ISO; without Z or an offset it is UTC): the shipped "
            "slice before it is backfilled."
        ),
    )
    demo_live_hours: float | None = Field(
        8.0, gt=0, description="Hours of the slice the demo replays live after the staging soak; unset: to its end."
    )
    demo_speed: float = Field(120.0, gt=0, description="Replay speed of the demo: virtual seconds per real second.")

    # --- alerts ------------------------------------------------------------------------------
    alert_rules_path: Path | None = Field(
        None, description="YAML/TOML alert rules; defaults to the built-in seed rules."
    )
    alert_webhook_url: str | None = Field(None, description="Slack-compatible webhook URL; unset: no webhook.")
    alert_webhook_retries: int = Field(1, ge=0, le=5, description="Webhook retries after a network error or 5xx.")
    alert_smtp_host: str | None = Field(None, description="SMTP relay for alert email; unset: no email sink.")
    alert_smtp_port: int = Field(25, ge=1, le=65535)
    alert_email_from: str = "bikeshare-alerts@localhost"
    alert_email_to: list[str] = Field(default_factory=list, description="Alert email recipients; empty: no email.")
    alert_sink_timeout_s: float = Field(5.0, gt=0, description="Connect/read timeout of the webhook and SMTP sinks.")
    alert_runbook_url: str = Field(
        "docs/monitoring_runbook.md", description="Base of the runbook links in notifications (#anchor is added)."
    )

    # --- drift -------------------------------------------------------------------------------
    drift_bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric feature baseline (PSI).")
    drift_ks_sample_size: int = Field(
        1000, ge=10, description="Sorted reference values kept per feature baseline for KS."
    )

    # --- monitor job (docs/monitoring_runbook.md) --------------------------------------------
    monitor_window_min: int | None = Field(
        None,
        ge=1,
        description="Minutes of live data one monitor run evaluates (drift, data quality, endpoint, batches); "
        "default monitor_interval_min.",
    )
    monitor_drift_features: list[str] = Field(
        default_factory=lambda: [
            "bikes",
            "ebikes",
            "docks",
            "bikes_disabled",
            "docks_disabled",
            "capacity",
            "fill_ratio",
            "ebike_share",
            "bikes_mean_60",
            "docks_mean_60",
            "bikes_min_60",
            "docks_min_60",
            "bikes_max_60",
            "docks_max_60",
            "nb_bikes",
            "nb_docks",
            "nb_fill_ratio",
        ],
        description="Features whose PSI raises feature_drift alerts (all baselined features are scored and "
        "stored); station-state features whose spread over an hour does not depend on the time of day.",
    )
    monitor_drift_min_rows: int = Field(
        200, ge=1, description="Live rows a target needs before its drift is scored (fewer: not measured)."
    )
    monitor_quality_min_rows: int = Field(
        500, ge=1, description="Joined predictions a target needs in 24 h before PR-AUC/F1 signals are raised."
    )
    monitor_latency_min_requests: int = Field(
        20, ge=1, description="Requests a route needs in the window before its latency quantiles raise signals."
    )
    monitor_endpoint_url: str | None = Field(
        None, description="Endpoint whose /metrics the monitor scrapes; default: endpoint_url (serve_host:serve_port)."
    )
    monitor_scrape_timeout_s: float = Field(5.0, gt=0, description="Timeout of one /metrics scrape.")

    # --- drills (bikeshare drill ...) --------------------------------------------------------
    drill_cycle_min: int = Field(15, ge=5, description="Replay minutes between two monitor evaluations in a drill.")
    drill_warmup_cycles: int = Field(2, ge=1, description="Fault-free evaluations before a drill injects its fault.")
    drill_max_cycles: int = Field(
        4, ge=1, description="Evaluations a drill waits for the alert (after the fault) and for its resolution."
    )

    # --- rebalancing (docs/optimization_extension.md) ----------------------------------------
    rebalance_trucks: int = Field(3, ge=1, description="Trucks available to a rebalancing plan.")
    rebalance_truck_capacity: int = Field(20, ge=1, description="Bikes one truck can carry.")
    rebalance_truck_start_load_frac: float = Field(
        0.5, ge=0, le=1, description="Share of its capacity each truck carries when a plan starts."
    )
    rebalance_horizon_min: int = Field(60, ge=5, description="Minutes a plan looks ahead and its routes may last.")
    rebalance_interval_min: int = Field(60, ge=5, description="Minutes between two plans of the loop runner.")
    rebalance_band_low: float = Field(0.2, ge=0, lt=1, description="Lowest safe fill (bikes / usable docks).")
    rebalance_band_high: float = Field(0.8, gt=0, le=1, description="Highest safe fill (bikes / usable docks).")
    rebalance_depot_lat: float | None = Field(None, ge=-90, le=90, description="Depot; default: stations' centroid.")
    rebalance_depot_lon: float | None = Field(None, ge=-180, le=180)
    rebalance_region_ids: list[str] = Field(
        default_factory=list, description="Regions the trucks serve (station_information region_id); empty: all."
    )
    rebalance_speed_kmh: float = Field(18.0, gt=0, description="Average truck speed in the city.")
    rebalance_road_factor: float = Field(1.35, ge=1, description="Road distance / straight-line distance.")
    rebalance_service_min: float = Field(3.0, ge=0, description="Fixed minutes spent at each stop (park, unlock).")
    rebalance_handling_s_per_bike: float = Field(15.0, ge=0, description="Seconds to load or unload one bike.")
    rebalance_shift_start: str = Field(
        "06:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Shift start, local time of the system."
    )
    rebalance_shift_end: str = Field(
        "22:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", description="Shift end, local time of the system."
    )
    rebalance_travel_cost: float = Field(
        0.2, ge=0, description="lambda: expected stockout station-minutes one truck-minute of travel must save."
    )
    rebalance_time_limit_s: float = Field(10.0, gt=0, description="Wall-clock limit of one OR-Tools solve.")
    rebalance_min_move: int = Field(2, ge=1, description="Fewest bikes worth a stop.")
    rebalance_helper_neighbours: int = Field(
        4, ge=0, description="In-band stations near each station in need offered as bike sources or sinks."
    )
    rebalance_sigma_floor: float = Field(
        0.75, gt=0, description="Smallest forecast standard deviation (bikes) used for stockout probabilities."
    )
    rebalance_history_days: int = Field(
        21, ge=1, description="Past days the interim flow-profile forecaster averages over."
    )

    # --- dashboard (docs/dashboard.md) -------------------------------------------------------
    dashboard_port: int = Field(8501, ge=0, le=65535, description="Port of `bikeshare dashboard` on 127.0.0.1.")
    dashboard_cache_ttl_s: float = Field(
        30.0, gt=0, description="Seconds the dashboard reuses a query result before it reads the lake again."
    )
    dashboard_top_n: int = Field(25, ge=1, le=1000, description="Rows of the Top-N risk table by default.")
    dashboard_target_fill: float = Field(
        0.5, ge=0, le=1, description="Fill (bikes / (bikes + docks)) the suggested dispatch quantity aims at."
    )
    dashboard_history_days: int = Field(
        3, ge=1, le=90, description="Days of history the charts over time show by default (a page selector widens it)."
    )
    dashboard_recent_hours: int = Field(
        24, ge=1, le=168, description="Hours of the ingest log and of job runs the dashboard lists."
    )
    dashboard_refresh_s: float = Field(
        60.0, ge=0, description="Seconds between two automatic re-reads of an open dashboard page; 0: only the button."
    )
    dashboard_clock: Literal["auto", "wall", "lake"] = Field(
        "auto",
        description="What the dashboard measures ages against: the wall clock (a live lake), the lake's newest "
        "fetch or job run (a replayed lake), or auto (replayed when the newest ingest source is not a live feed).",
    )
    dashboard_map_style: str | None = Field(
        None,
        description="Basemap style URL of the map (e.g. a Carto or MapLibre style JSON); unset: a plain background "
        "with a scale, which needs no network.",
    )

    # --- compaction and retention (bikeshare.lake.compaction, bikeshare.lake.retention) ----------
    compact_interval_min: int = Field(60, ge=1, description="Minutes between two runs of the compact job.")
    compaction_settle_h: float = Field(
        1.0,
        ge=0,
        description="Hours after a UTC day closes before its minute files are compacted (late snapshots land first); "
        "inference waits actuals_lookback_h, as the actuals job reads its files by name.",
    )
    compaction_remove_after_s: float = Field(
        600.0,
        ge=0,
        description="Real seconds the minute files folded into a day file stay (readers that listed them just "
        "before finish); a later compact run removes them.",
    )
    retention_days: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_RETENTION_DAYS),
        description="Days each lake table keeps (by partition day; a table not named is kept forever). The "
        "retention job deletes older partitions unless a production model's training window names them; "
        "the S3 lifecycle rules in infra/terraform expire the same tables later (retention_s3_grace_days).",
    )
    retention_s3_grace_days: int = Field(
        30, ge=0, description="Days the S3 lifecycle rules wait beyond retention_days (a backstop to the job)."
    )

    @model_validator(mode="after")
    def _resolve_defaults(self) -> Settings:
        from bikeshare.lake.tables import ALL_TABLES

        unknown = sorted(set(self.retention_days) - {spec.name for spec in ALL_TABLES})
        if unknown:
            raise ValueError(f"retention_days names unknown tables {unknown}")
        if any(days < 1 for days in self.retention_days.values()):
            raise ValueError("retention_days must be at least 1 day per table")
        if self.feed_url is None and self.city in CITY_FEED_PRESETS:
            self.feed_url = CITY_FEED_PRESETS[self.city]
        if self.feed_url is not None and not _is_http_url(self.feed_url):
            raise ValueError(f"feed_url must be an http(s):// URL with a host, got {self.feed_url!r}")
        if self.timezone is not None and not _is_time_zone(self.timezone):
            raise ValueError(f"timezone must be an IANA time zone such as Europe/Oslo, got {self.timezone!r}")
        if self.horizon_min % self.grid_minutes:
            raise ValueError(
                f"horizon_min ({self.horizon_min}) must be a multiple of grid_minutes ({self.grid_minutes})"
            )
        return self

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the configured one, or SQLite under the state folder."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> str:
        """Where MLflow keeps artifacts when it runs embedded."""
        return (self.state_dir / "mlartifacts").resolve().as_uri()

    @property
    def resolved_endpoint_url(self) -> str:
        return self.endpoint_url or f"http://{self.serve_host}:{self.serve_port}"

    def with_values(self, **values: Any) -> Settings:
        """A validated copy with ``values`` changed (``model_copy(update=...)`` would skip validation)."""
        unknown = sorted(set(values) - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return Settings(**{**self.model_dump(), **values})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_path = settings_cls.model_config.get("toml_file") or os.environ.get(CONFIG_ENV_VAR)
        if config_path:
            path = Path(str(config_path))
            if not path.is_file():
                raise FileNotFoundError(f"{CONFIG_ENV_VAR}={config_path}: no such config file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once at start-up; ``config_file`` is a TOML file of field names.

    Priority, highest first: ``overrides``, ``BIKESHARE_*`` variables, ``.env``, the config file.
    """
    if config_file is None:
        return Settings(**overrides)
    if not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")
    # a subclass bound to the file reads it as the lowest source; the result is a plain Settings
    bound = type("SettingsFromFile", (Settings,), {"model_config": {**Settings.model_config, "toml_file": config_file}})
    return Settings(**bound(**overrides).model_dump())
