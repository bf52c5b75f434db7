"""Views derived from the base tables, created on every lake connection after the base views."""

from __future__ import annotations

# name -> SELECT. Order matters: a view may use the ones before it.
DERIVED_VIEWS: dict[str, str] = {
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
}
