"""Views derived from the base tables, created on every lake connection after the base views, and
the read-only guard of the SQL layer (``bikeshare sql``, the dashboard): :func:`lock_down` and
:func:`read_only_frame`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    import pandas as pd

# name -> SELECT. Order matters: a view may use the ones before it.
DERIVED_VIEWS: dict[str, str] = {
    # Rebalancing plans (bikeshare.rebalancing): one row per plan, and the truck stops.
    "plan_summary": """
        SELECT city, dt, plan_id, as_of, created_at, status, forecaster, trucks, truck_capacity, horizon_min,
               time_limit_s, solve_s, travel_cost, depot_lat, depot_lon, stations_in_need,
               stockout_min_no_action, stockout_min_plan, stockout_min_greedy,
               stockout_min_no_action - stockout_min_plan AS avoided_vs_no_action,
               stockout_min_greedy - stockout_min_plan AS avoided_vs_greedy,
               travel_min_plan, travel_min_greedy, bikes_moved_plan, bikes_moved_greedy
        FROM plans WHERE method = 'summary'
    """,
    "plan_stops": """
        SELECT city, dt, plan_id, as_of, method, truck, stop_seq, station_id, name, lat, lon, action, quantity,
               arrival, departure, load_after, avoided_min, depot_lat, depot_lon
        FROM plans WHERE method <> 'summary'
    """,
    "plan_stops_latest": """
        SELECT * FROM plan_stops
        QUALIFY as_of = max(as_of) OVER (PARTITION BY city)
    """,
    # Each station_information version is a full snapshot of the stations in force from its
    # valid_from until the next version of the same city (valid_to NULL: still in force).
    "station_information": """
        WITH versions AS (
            SELECT city, valid_from,
                   lead(valid_from) OVER (PARTITION BY city ORDER BY valid_from) AS valid_to
            FROM (SELECT DISTINCT city, valid_from FROM station_information_versions)
        )
        SELECT s.*, versions.valid_to
        FROM station_information_versions s JOIN versions USING (city, valid_from)
    """,
    "station_information_current": """
        SELECT * EXCLUDE (valid_to) FROM station_information WHERE valid_to IS NULL
    """,
    "system_information": """
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY city ORDER BY valid_from DESC) AS rn
            FROM system_information_versions
        ) WHERE rn = 1
    """,
    # ---- monitoring: alerts (bikeshare.monitoring) -------------------------------------------
    # Current state of each alert, folded from the append-only alert_events log. The status ladder
    # uses "any event of this kind", so an ack appended concurrently with an evaluation still counts.
    "alerts": """
        WITH life AS (
            SELECT * FROM alert_events WHERE event <> 'routed'
        ), first_event AS (
            SELECT * FROM life
            QUALIFY row_number() OVER (PARTITION BY city, alert_id ORDER BY event_at, recorded_at, seq) = 1
        ), latest_eval AS (
            SELECT * FROM life
            WHERE event IN ('pending', 'fired', 'escalated', 'deescalated', 'resolved')
            QUALIFY row_number() OVER (
                PARTITION BY city, alert_id ORDER BY event_at DESC, recorded_at DESC, seq DESC) = 1
        ), latest_value AS (
            SELECT city, alert_id, value FROM life
            WHERE event IN ('pending', 'fired', 'escalated', 'deescalated', 'resolved') AND value IS NOT NULL
            QUALIFY row_number() OVER (
                PARTITION BY city, alert_id ORDER BY event_at DESC, recorded_at DESC, seq DESC) = 1
        ), agg AS (
            SELECT city, alert_id,
                   min(coalesce(started_at, event_at)) AS started_at,
                   min(event_at) FILTER (WHERE event = 'fired') AS fired_at,
                   min(event_at) FILTER (WHERE event = 'acknowledged') AS acknowledged_at,
                   arg_min(acknowledged_by, event_at) FILTER (WHERE event = 'acknowledged') AS acknowledged_by,
                   arg_min(mtta_s, event_at) FILTER (WHERE event = 'acknowledged') AS mtta_s,
                   min(event_at) FILTER (WHERE event = 'resolved') AS resolved_at,
                   arg_min(fault_started_at, event_at) FILTER (WHERE event = 'fired') AS fault_started_at,
                   arg_min(ttd_s, event_at) FILTER (WHERE event = 'fired') AS ttd_s,
                   count(*) FILTER (WHERE event = 'escalated') AS escalations,
                   max(event_at) AS updated_at
            FROM life GROUP BY city, alert_id
        ), routes AS (
            SELECT city, alert_id,
                   min(routed_at) FILTER (WHERE routed_event = 'fired' AND ok) AS routed_at,
                   count(*) FILTER (WHERE ok) AS routes_ok,
                   count(*) FILTER (WHERE NOT ok) AS routes_failed
            FROM alert_events WHERE event = 'routed' GROUP BY city, alert_id
        )
        SELECT agg.city, agg.alert_id,
               CASE WHEN agg.resolved_at IS NOT NULL THEN 'resolved'
                    WHEN agg.acknowledged_at IS NOT NULL THEN 'acknowledged'
                    WHEN agg.fired_at IS NOT NULL THEN 'firing'
                    ELSE 'pending' END AS status,
               l.severity, f.rule, f.fingerprint, f.signal, f.labels, v.value, l.threshold, f.unit,
               l.message, f.runbook, agg.started_at, agg.fired_at, agg.acknowledged_at, agg.acknowledged_by,
               agg.resolved_at, agg.updated_at, l.evaluations, agg.escalations, agg.fault_started_at,
               agg.ttd_s, agg.mtta_s, r.routed_at,
               epoch(r.routed_at - agg.fired_at) AS time_to_route_s,
               coalesce(r.routes_ok, 0) AS routes_ok, coalesce(r.routes_failed, 0) AS routes_failed
        FROM agg
        JOIN first_event f USING (city, alert_id)
        LEFT JOIN latest_eval l USING (city, alert_id)
        LEFT JOIN latest_value v USING (city, alert_id)
        LEFT JOIN routes r USING (city, alert_id)
    """,
    "alert_routes": """
        SELECT city, alert_id, fingerprint, routed_event, sink, routed_at, ok, error, fired_at,
               epoch(routed_at - fired_at) AS since_fired_s
        FROM alert_events WHERE event = 'routed'
    """,
    # The newest drift evaluation per city and target.
    "drift_latest": """
        SELECT * FROM drift_scores
        QUALIFY evaluated_at = max(evaluated_at) OVER (PARTITION BY city, target)
    """,
    # What the newest monitor run per city measured (data quality, model quality, batches, jobs).
    "monitor_metrics_latest": """
        SELECT * FROM monitor_metrics
        QUALIFY run_id = arg_max(run_id, evaluated_at) OVER (PARTITION BY city)
    """,
    # ---- inference and feedback (bikeshare.inference) ----------------------------------------
    # The rows of the newest scored slot per city (served alias only, shadow rows left out).
    "inference_latest": """
        SELECT * FROM inference WHERE NOT shadow
        QUALIFY feature_time = max(feature_time) OVER (PARTITION BY city)
    """,
    # The multi-horizon curves of the newest forecast slot per city and alias.
    "forecasts_latest": """
        SELECT * FROM forecasts
        QUALIFY feature_time = max(feature_time) OVER (PARTITION BY city, alias)
    """,
    # Batch outcomes per UTC day and alias; success_rate = ok / (ok + failed), skipped not counted.
    "inference_success": """
        SELECT city, date_trunc('day', feature_time) AS day, alias, shadow,
               count(*) AS batches,
               count(*) FILTER (WHERE status = 'ok') AS ok,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'skipped') AS skipped,
               count(*) FILTER (WHERE status = 'ok') / nullif(count(*) FILTER (WHERE status IN ('ok', 'failed')), 0)
                   AS success_rate,
               quantile_cont(duration_s, 0.95) FILTER (WHERE status = 'ok') AS p95_duration_s,
               sum(rows) AS rows
        FROM inference_batches GROUP BY ALL
    """,
    # Joined predictions per hour of target_time, probability rounded to 0.001: the counts the
    # PR-AUC (average precision over the rounded scores) and F1 views add up.
    "quality_hourly_bins": """
        SELECT city, target, alias, model_name, model_version, shadow,
               date_trunc('hour', target_time) AS hour, round(probability, 3) AS score,
               count(*) FILTER (WHERE actual_label) AS pos,
               count(*) FILTER (WHERE NOT actual_label) AS neg,
               count(*) FILTER (WHERE decision AND actual_label) AS tp,
               count(*) FILTER (WHERE decision AND NOT actual_label) AS fp,
               count(*) FILTER (WHERE NOT decision AND actual_label) AS fn,
               sum((probability - CAST(actual_label AS DOUBLE)) ** 2) AS sq_err
        FROM quality WHERE status = 'joined'
        GROUP BY ALL
    """,
    "quality_by_version": """
        WITH bins AS (
            SELECT city, target, alias, model_name, model_version, shadow, score,
                   sum(pos) AS pos, sum(neg) AS neg
            FROM quality_hourly_bins GROUP BY ALL
        ), cum AS (
            SELECT *, sum(pos) OVER w AS tp_at, sum(pos + neg) OVER w AS n_at
            FROM bins
            WINDOW w AS (PARTITION BY city, target, alias, model_name, model_version, shadow
                         ORDER BY score DESC ROWS UNBOUNDED PRECEDING)
        ), ap AS (
            SELECT city, target, alias, model_name, model_version, shadow,
                   sum(pos * tp_at / n_at) / nullif(sum(pos), 0) AS pr_auc
            FROM cum GROUP BY ALL
        ), counts AS (
            SELECT city, target, alias, model_name, model_version, shadow,
                   count(*) AS predictions,
                   count(*) FILTER (WHERE status = 'joined') AS joined,
                   count(*) FILTER (WHERE status = 'missing') AS missing,
                   count(*) FILTER (WHERE status = 'joined' AND actual_label) AS positives,
                   count(*) FILTER (WHERE status = 'joined' AND decision AND actual_label) AS tp,
                   count(*) FILTER (WHERE status = 'joined' AND decision AND NOT actual_label) AS fp,
                   count(*) FILTER (WHERE status = 'joined' AND NOT decision AND actual_label) AS fn,
                   avg((probability - CAST(actual_label AS DOUBLE)) ** 2) FILTER (WHERE status = 'joined') AS brier,
                   min(target_time) AS first_target_time, max(target_time) AS last_target_time
            FROM quality GROUP BY ALL
        )
        SELECT c.*, ap.pr_auc,
               2.0 * tp / nullif(2 * tp + fp + fn, 0) AS f1,
               1.0 * tp / nullif(tp + fp, 0) AS precision,
               1.0 * tp / nullif(tp + fn, 0) AS recall
        FROM counts c LEFT JOIN ap USING (city, target, alias, model_name, model_version, shadow)
    """,
    # PR-AUC and F1 over the 24 h ending at each hour that has joined rows (window_end exclusive).
    "quality_rolling_24h": """
        WITH hours AS (
            SELECT DISTINCT city, target, alias, model_name, model_version, shadow, hour FROM quality_hourly_bins
        ), win AS (
            SELECT h.city, h.target, h.alias, h.model_name, h.model_version, h.shadow,
                   h.hour + INTERVAL 1 HOUR AS window_end, b.score,
                   sum(b.pos) AS pos, sum(b.neg) AS neg, sum(b.tp) AS tp, sum(b.fp) AS fp, sum(b.fn) AS fn,
                   sum(b.sq_err) AS sq_err
            FROM hours h JOIN quality_hourly_bins b
              ON b.city = h.city AND b.target = h.target AND b.alias = h.alias AND b.model_name = h.model_name
             AND b.model_version = h.model_version AND b.shadow = h.shadow
             AND b.hour > h.hour - INTERVAL 24 HOUR AND b.hour <= h.hour
            GROUP BY ALL
        ), cum AS (
            SELECT *, sum(pos) OVER w AS tp_at, sum(pos + neg) OVER w AS n_at
            FROM win
            WINDOW w AS (PARTITION BY city, target, alias, model_name, model_version, shadow, window_end
                         ORDER BY score DESC ROWS UNBOUNDED PRECEDING)
        )
        SELECT city, target, alias, model_name, model_version, shadow,
               window_end - INTERVAL 24 HOUR AS window_start, window_end,
               sum(pos + neg) AS rows, sum(pos) AS positives,
               sum(pos * tp_at / n_at) / nullif(sum(pos), 0) AS pr_auc,
               2.0 * sum(tp) / nullif(2 * sum(tp) + sum(fp) + sum(fn), 0) AS f1,
               1.0 * sum(tp) / nullif(sum(tp) + sum(fp), 0) AS precision,
               1.0 * sum(tp) / nullif(sum(tp) + sum(fn), 0) AS recall,
               sum(sq_err) / sum(pos + neg) AS brier
        FROM cum GROUP BY ALL
    """,
}


# ---- the read-only guard ---------------------------------------------------------------------
# Two layers. DuckDB's own configuration (lock_down) keeps a connection to the lake's files: no other
# file, no extension, no setting change. It cannot tell a read of the lake from a write into it, so
# the statements are checked too (check_read_only): only SELECT (with DESCRIBE, SHOW, SUMMARIZE,
# which parse as SELECT) and EXPLAIN of one pass.

# Query nodes a reading SELECT is made of; anything else (INSERT_QUERY_NODE, COPY_QUERY_NODE, ...) is a
# data-modifying WITH, which DuckDB runs even inside a SELECT.
_READING_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_EXPLAIN = re.compile(r"EXPLAIN\s+(?:ANALY[SZ]E\s+|\([^)]*\)\s*)?", re.I)
_COPY = re.compile(r"COPY\s+(?:\(.*\)|[^\s(]+(?:\s*\([^)]*\))?)\s+(TO|FROM)\b", re.I | re.S)
_CREATE_MODIFIERS = frozenset({"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "PERSISTENT", "IF", "NOT", "EXISTS"})
# Settings frozen on a read-only connection, after allowed_directories (lock_configuration last).
_LOCKED_SETTINGS = (
    "autoinstall_known_extensions = false",
    "autoload_known_extensions = false",
    "allow_community_extensions = false",
    "allow_persistent_secrets = false",
    "enable_external_access = false",
    "lock_configuration = true",
)


class ReadOnlyQueryError(ValueError):
    """A query the read-only SQL layer refuses: it would write, attach, install, reconfigure, or read
    a file outside the lake."""


def lock_down(con: duckdb.DuckDBPyConnection, *, readable: Sequence[str]) -> None:
    """Let ``con`` open only files under ``readable`` (folder or ``s3://`` prefixes, ending in ``/``),
    load no extension and change no setting from now on. Views can still be created afterwards."""
    folders = ", ".join("'" + path.replace("'", "''") + "'" for path in readable)
    con.execute(f"SET allowed_directories = [{folders}]")
    for setting in _LOCKED_SETTINGS:
        con.execute(f"SET {setting}")


def check_read_only(con: duckdb.DuckDBPyConnection, query: str, *, who: str = "bikeshare sql") -> None:
    """Raise :class:`ReadOnlyQueryError` naming the first statement of ``query`` that is not a read."""
    for kind in _refused_kinds(con, query):
        raise ReadOnlyQueryError(f"{who} is read-only: {kind} is not allowed")


def read_only_frame(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None, *, who: str = "bikeshare sql"
) -> pd.DataFrame:
    """Run a query that only reads (checked first) on a :func:`lock_down` connection; its rows as a frame.

    A read of a file outside the lake (DuckDB's permission error) is a :class:`ReadOnlyQueryError` too.
    """
    import pandas as pd

    check_read_only(con, query, who=who)
    try:
        relation = con.execute(query, params).df() if params else con.sql(query)
    except duckdb.PermissionException as exc:
        raise ReadOnlyQueryError(f"{who} reads only the lake: {str(exc).strip().splitlines()[0]}") from exc
    if isinstance(relation, pd.DataFrame):
        return relation
    return relation.df() if relation is not None else pd.DataFrame()


def _refused_kinds(con: duckdb.DuckDBPyConnection, query: str) -> Iterator[str]:
    for statement in duckdb.extract_statements(query):  # a syntax error raises DuckDB's own message
        kind = _refused_kind(con, statement)
        if kind is not None:
            yield kind


def _refused_kind(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> str | None:
    text = _LEADING_COMMENTS.sub("", statement.query)
    try:
        statement_type = statement.type
    except ValueError:  # a statement kind this duckdb module has no name for (e.g. UPDATE EXTENSIONS)
        return _first_word(text)
    if statement_type == duckdb.StatementType.EXPLAIN:
        prefix = _EXPLAIN.match(text)
        inner = text[prefix.end() :] if prefix else ""
        kinds = list(_refused_kinds(con, inner)) if inner.strip() else ["EXPLAIN"]
        return kinds[0] if kinds else None
    if statement_type != duckdb.StatementType.SELECT:
        return _statement_label(statement_type, text)
    [(serialized,)] = con.execute("SELECT json_serialize_sql(?)", [statement.query]).fetchall()
    doc = json.loads(serialized)
    if doc.get("error"):  # e.g. a PIVOT inside: what cannot be inspected is not run
        return "a SELECT that cannot be checked"
    for node in _query_nodes(doc["statements"]):
        if node.get("type") not in _READING_NODES:
            name = str(node.get("type", "")).removesuffix("_QUERY_NODE")
            if name == "COPY":
                name = "COPY ... FROM" if node.get("info", {}).get("is_from") else "COPY ... TO"
            return f"{name} inside WITH"
    return None


def _query_nodes(doc: Any) -> Iterator[dict[str, Any]]:
    """Every query node of a serialized statement (dicts whose ``type`` ends in ``_NODE``)."""
    if isinstance(doc, dict):
        kind = doc.get("type")
        if isinstance(kind, str) and kind.endswith("_NODE"):
            yield doc
        for value in doc.values():
            yield from _query_nodes(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _query_nodes(value)


def _statement_label(kind: duckdb.StatementType, text: str) -> str:
    """The statement's kind as a reader knows it: ``COPY ... TO``, ``CREATE TABLE``, ``INSTALL``, ..."""
    if kind == duckdb.StatementType.MULTI:  # a PIVOT, which DuckDB runs as several statements (types first)
        return "PIVOT"
    if kind == duckdb.StatementType.COPY:
        direction = _COPY.match(text)
        return f"COPY ... {direction.group(1).upper()}" if direction else "COPY"
    words = text.split()
    if words and words[0].upper() == "CREATE":
        rest = [w.upper() for w in words[1:] if w.upper() not in _CREATE_MODIFIERS]
        return f"CREATE {rest[0]}" if rest else "CREATE"
    return _first_word(text)


def _first_word(text: str) -> str:
    words = _LEADING_COMMENTS.sub("", text).split()
    return words[0].upper().rstrip(";") if words else "this statement"
