"""The product API's data: the latest inference batch in the lake, cached between batches.

``bikeshare infer`` writes one partition per feature slot (``inference/city=<c>/dt=<slot>/``). The
reader lists the partitions at most every ``refresh_s`` seconds and re-reads (through DuckDB) only
when a newer partition or a new file appears, so the product routes answer from memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import TableSpec

LOOKBACK_PARTITIONS = 12  # newest partitions searched for a batch of the served alias


@dataclass(frozen=True)
class RiskSnapshot:
    """One inference batch, indexed by station and ranked per target."""

    dt: str
    batch_id: str
    alias: str
    horizon_min: int
    feature_time: datetime
    prediction_time: datetime
    stations: dict[str, dict[str, Any]] = field(repr=False)  # station_id -> document
    ranked: dict[str, list[dict[str, Any]]] = field(repr=False)  # target -> rows, riskiest first

    def header(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "batch_id": self.batch_id,
            "horizon_min": self.horizon_min,
            "feature_time": self.feature_time.isoformat(),
            "prediction_time": self.prediction_time.isoformat(),
        }


Snapshot = TypeVar("Snapshot")


class NewestBatchCache(Generic[Snapshot]):
    """Cached reader of the newest readable batch of a minute-partitioned table for one city.

    The lake is listed at most every ``refresh_s``; a partition is re-read only when its files
    changed. Subclasses say how a partition becomes a snapshot (``_read``; None: not usable).
    """

    def __init__(self, *, lake: Lake, city: str, table: TableSpec, refresh_s: float) -> None:
        self._lake = lake
        self._city = city
        self._table = table
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._key: tuple[str, tuple[str, ...]] | None = None
        self._snapshot: Snapshot | None = None

    def latest(self) -> Snapshot | None:
        """The newest batch (None before the first one), re-read only when the lake has a newer one."""
        if time.monotonic() - self._checked < self._refresh_s:
            return self._snapshot
        with self._lock:
            if time.monotonic() - self._checked >= self._refresh_s:
                self._reload()
                self._checked = time.monotonic()
            return self._snapshot

    def _reload(self) -> None:
        dts = self._lake.partitions(self._table, city=self._city)
        for dt in reversed(dts[-LOOKBACK_PARTITIONS:]):
            files = tuple(self._lake.files(self._table, city=self._city, dts=[dt]))
            key = (dt, files)
            if key == self._key:
                return
            snapshot = self._read(dt, key)
            if snapshot is not None:
                self._key, self._snapshot = key, snapshot
                return

    def _read(self, dt: str, key: tuple[str, tuple[str, ...]]) -> Snapshot | None:
        raise NotImplementedError


class LatestInference(NewestBatchCache["RiskSnapshot"]):
    """Cached reader of the newest inference batch of one city, alias and horizon."""

    def __init__(self, *, lake: Lake, city: str, alias: str, horizon_min: int, refresh_s: float) -> None:
        from bikeshare.lake.tables import INFERENCE

        super().__init__(lake=lake, city=city, table=INFERENCE, refresh_s=refresh_s)
        self._alias = alias
        self._horizon = horizon_min

    def _read(self, dt: str, key: tuple[str, tuple[str, ...]]) -> RiskSnapshot | None:
        import duckdb

        from bikeshare.lake.tables import INFERENCE

        source = self._lake.scan_sql(INFERENCE, city=self._city, dts=[dt])
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            if self._lake.is_remote:
                con.register_filesystem(self._lake.fs)
            rows = con.sql(
                f"""
                WITH src AS ({source}),
                mine AS (SELECT * FROM src WHERE NOT coalesce(shadow, false) AND alias = $alias
                                            AND horizon_min = $horizon),
                newest AS (SELECT batch_id FROM mine ORDER BY prediction_time DESC, batch_id DESC LIMIT 1)
                SELECT batch_id, prediction_time, feature_time, target_time, station_id, target, model_name,
                       model_version, probability, decision, threshold, current_count, capacity
                FROM mine WHERE batch_id = (SELECT batch_id FROM newest)
                ORDER BY station_id, target
                """,
                params={"alias": self._alias, "horizon": self._horizon},
            ).fetchall()
        finally:
            con.close()
        if not rows:
            return None
        return _snapshot(dt, self._alias, self._horizon, rows)


def _snapshot(dt: str, alias: str, horizon: int, rows: list[tuple[Any, ...]]) -> RiskSnapshot:
    stations: dict[str, dict[str, Any]] = {}
    ranked: dict[str, list[dict[str, Any]]] = {"bikes": [], "docks": []}
    batch_id, prediction_time, feature_time = rows[0][0], rows[0][1], rows[0][2]
    for _, _, _, target_time, station, target, name, version, proba, decision, threshold, count, capacity in rows:
        doc = stations.setdefault(station, {"station_id": station, "capacity": capacity})
        doc[target] = {
            "probability": proba,
            "short": bool(decision),
            "threshold": threshold,
            "current_count": count,
            "target_time": target_time.isoformat() if target_time is not None else None,
            "model": {"name": name, "version": version},
        }
        ranked.setdefault(target, []).append(
            {"station_id": station, "probability": proba, "short": bool(decision), "current_count": count,
             "capacity": capacity}
        )  # fmt: skip
    for items in ranked.values():
        items.sort(key=lambda r: (-(r["probability"] if r["probability"] is not None else -1.0), r["station_id"]))
    return RiskSnapshot(
        dt=dt,
        batch_id=batch_id,
        alias=alias,
        horizon_min=horizon,
        feature_time=feature_time,
        prediction_time=prediction_time,
        stations=stations,
        ranked=ranked,
    )
