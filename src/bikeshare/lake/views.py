"""Views derived from the base tables, created on every lake connection after the base views."""

from __future__ import annotations

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
}
