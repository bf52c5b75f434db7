"""Actuals: join each prediction with the count observed at its target time -> the ``quality`` table.

The observed count follows the label rule of the feature SQL (features/sql.py, the ``_grid``
step): the station's latest UNMASKED snapshot with ``last_updated <= target_time`` and no older
than ``max_snapshot_age_min``; several rows of one snapshot time keep the last fetched. So an
actual is exactly the ``bikes_t_h`` / ``docks_t_h`` label training sees for the same slot.

A prediction is looked at once ``target_time <= now - actuals_settle_min``. Its count is final
only once the lake holds a snapshot at or after ``target_time`` (before that a later snapshot may
still be on its way). Found and final: status ``joined``. Otherwise (the feed is late, or the
station went dark) the row waits and is tried again on later runs until ``actuals_max_wait_min``
after its target time, then it is written with status ``missing`` and null actuals.

Rows are written once: each run skips predictions that already have a quality row. Quality files
are named ``<feature dt>_<alias>_<digest>[_final]``; ``_final`` marks the last file of a prediction
file, whose rows are then all resolved, so later runs do not read that prediction file again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bikeshare.inference.snapshots import connect_window, minute_partitions
from bikeshare.lake.store import Lake, conform, partition_value
from bikeshare.lake.tables import INFERENCE, QUALITY, Grain
from bikeshare.settings import Settings
from bikeshare.utc import to_utc

log = logging.getLogger(__name__)

FINAL = "final"
KEY = ["feature_time", "station_id", "target", "horizon_min", "alias", "shadow"]


class QualityStatus:
    JOINED = "joined"
    MISSING = "missing"


@dataclass(frozen=True)
class ActualsReport:
    """What one actuals run did."""

    prediction_files: int  # prediction files (slot x alias) read
    due: int  # predictions past target_time + settle without a quality row before the run
    joined: int
    missing: int
    waiting: int  # due but not found yet: tried again on the next run
    files_written: int
    duration_s: float

    def summary(self) -> str:
        return (
            f"{self.due} predictions due from {self.prediction_files} prediction files: {self.joined} joined, "
            f"{self.missing} missing, {self.waiting} waiting for a late snapshot; "
            f"{self.files_written} quality files written in {self.duration_s:.2f}s"
        )


def observed_counts(
    *, lake: Lake, city: str, keys: pd.DataFrame, max_age_min: int, until: pd.Timestamp
) -> pd.DataFrame:
    """For each ``(station_id, target_time)`` of ``keys``, the counts the label rule sees.

    Returns the keys with ``actual_time``, ``bikes``, ``docks``: null when no unmasked snapshot of
    the station lies in ``[target_time - max_age_min, target_time]``, and ``arrived``: whether the
    lake already holds a snapshot (of any station) at or after ``target_time`` and up to ``until``.
    Before that the as-of count is not final (a later snapshot may still be on its way), so a row
    that has not ``arrived`` is not joined.
    """
    columns = ["station_id", "target_time", "actual_time", "bikes", "docks", "arrived"]
    if keys.empty:
        return pd.DataFrame(columns=columns)
    keys = keys[["station_id", "target_time"]].drop_duplicates().reset_index(drop=True)
    age = pd.Timedelta(minutes=max_age_min)
    lo, hi = keys["target_time"].min() - age, max(keys["target_time"].max(), until)
    con = connect_window(lake, city=city, lo=lo, hi=hi)
    try:
        con.register("_keys", pa.Table.from_pandas(keys, preserve_index=False))
        found = con.execute(
            """
            WITH snaps AS (
                SELECT station_id, last_updated, bikes, docks
                FROM status_window
                WHERE NOT coalesce(masked, false) AND station_id IS NOT NULL
                  AND bikes IS NOT NULL AND docks IS NOT NULL AND last_updated BETWEEN ? AND ?
                QUALIFY row_number() OVER (
                    PARTITION BY station_id, last_updated ORDER BY fetched_at DESC NULLS LAST) = 1
            ), frontier AS (
                SELECT max(last_updated) AS newest FROM status_window WHERE last_updated BETWEEN ? AND ?
            )
            SELECT k.station_id, k.target_time, s.last_updated AS actual_time, s.bikes, s.docks,
                   coalesce((SELECT newest FROM frontier) >= k.target_time, false) AS arrived
            FROM _keys k ASOF LEFT JOIN snaps s
              ON k.station_id = s.station_id AND k.target_time >= s.last_updated
            """,
            [lo.to_pydatetime(), hi.to_pydatetime(), lo.to_pydatetime(), until.to_pydatetime()],
        ).df()
    finally:
        con.close()
    unknown = ~found["arrived"] | (found["actual_time"].notna() & (found["target_time"] - found["actual_time"] > age))
    found.loc[unknown, ["actual_time", "bikes", "docks"]] = None
    return found[columns]


def run_actuals(*, lake: Lake, settings: Settings, now: pd.Timestamp) -> ActualsReport:
    """Join the predictions whose horizon has passed with the observed counts; write ``quality`` rows."""
    started = time.perf_counter()
    now = to_utc(now, what="actuals time")
    city = settings.city
    due_before = now - pd.Timedelta(minutes=settings.actuals_settle_min)
    give_up_before = now - pd.Timedelta(minutes=settings.actuals_max_wait_min)
    lo = now - pd.Timedelta(hours=settings.actuals_lookback_h)

    quality_days = [partition_value(d, Grain.DAY) for d in pd.date_range(lo.floor("D"), now, freq="D")]
    written: dict[tuple[str, str], list[str]] = {}
    for path in lake.files(QUALITY, city=city, dts=quality_days):
        name = path.rsplit("/", 1)[-1].removesuffix(".parquet")
        parts = name.split("_")
        if len(parts) >= 3:
            written.setdefault((parts[0], parts[1]), []).append(path)
    final = {key for key, paths in written.items() if any(p.endswith(f"_{FINAL}.parquet") for p in paths)}

    files: list[tuple[str, str, str]] = []  # (dt, alias, path)
    for dt in minute_partitions(lake, INFERENCE, city=city, lo=lo, hi=due_before):
        for path in lake.files(INFERENCE, city=city, dts=[dt]):
            alias = path.rsplit("/", 1)[-1].removesuffix(".parquet")
            if (dt, alias) not in final:
                files.append((dt, alias, path))

    pending: list[tuple[str, str, int, pd.DataFrame]] = []  # (dt, alias, unresolved rows, due rows)
    for dt, alias, path in files:
        predictions = _read(lake, path, INFERENCE.schema)
        done = _resolved_keys(lake, written.get((dt, alias), []))
        if not done.empty:
            predictions = predictions.merge(done, on=KEY, how="left", indicator=True)
            predictions = predictions[predictions["_merge"] == "left_only"].drop(columns="_merge")
        due = predictions[predictions["target_time"] <= due_before]
        if not due.empty:
            pending.append((dt, alias, len(predictions), due))
    all_due = pd.concat([due for *_, due in pending], ignore_index=True) if pending else pd.DataFrame()
    found = observed_counts(lake=lake, city=city, keys=all_due, max_age_min=settings.max_snapshot_age_min, until=now)

    joined = missing = waiting = files_written = 0
    for dt, alias, unresolved, due in pending:
        rows = due.merge(found, on=["station_id", "target_time"], how="left", validate="many_to_one")
        count = rows["bikes"].where(rows["target"] == "bikes", rows["docks"])
        rows["actual_count"] = count.astype("Int32")
        rows["actual_label"] = (rows["actual_count"] <= settings.shortage_threshold).astype("boolean")
        has_actual = rows["actual_count"].notna()
        rows["status"] = QualityStatus.JOINED
        rows.loc[~has_actual, "status"] = QualityStatus.MISSING
        rows["joined_at"] = now
        resolve = has_actual | (rows["target_time"] <= give_up_before)
        out = rows.loc[resolve].drop(columns=["bikes", "docks", "arrived"])
        joined += int(has_actual.sum())
        missing += int((~has_actual & resolve).sum())
        waiting += int((~resolve).sum())
        if out.empty:
            continue
        is_final = len(out) == unresolved
        for day, part in out.groupby(out["target_time"].dt.strftime("%Y-%m-%d"), sort=True):
            name = f"{dt}_{alias}_{_digest(part)}" + (f"_{FINAL}" if is_final else "")
            if lake.write(QUALITY, part, city=city, dt=str(day), name=name) is not None:
                files_written += 1
    return ActualsReport(
        prediction_files=len(files),
        due=len(all_due),
        joined=joined,
        missing=missing,
        waiting=waiting,
        files_written=files_written,
        duration_s=time.perf_counter() - started,
    )


def _read(lake: Lake, path: str, schema: pa.Schema) -> pd.DataFrame:
    table = conform(pq.read_table(io.BytesIO(lake.read_bytes(path))), schema)
    return table.to_pandas()


def _resolved_keys(lake: Lake, paths: list[str]) -> pd.DataFrame:
    if not paths:
        return pd.DataFrame()
    frames = [_read(lake, p, QUALITY.schema)[KEY] for p in paths]
    return pd.concat(frames, ignore_index=True).drop_duplicates()


def _digest(rows: pd.DataFrame) -> str:
    keys = sorted(
        f"{r.station_id}|{r.target}|{r.horizon_min}|{r.status}"
        for r in rows[["station_id", "target", "horizon_min", "status"]].itertuples(index=False)
    )
    return hashlib.sha1("\n".join(keys).encode(), usedforsecurity=False).hexdigest()[:12]
