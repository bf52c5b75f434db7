"""The ingest's view of the lake: names, partitions, dedupe lookups and quarantine payloads.

Every write goes through :class:`~bikeshare.lake.store.Lake` (atomic, idempotent by name), so a
re-run never duplicates a snapshot and a crash never leaves half a partition.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import (
    INGEST_LOG,
    QUARANTINE,
    STATION_INFORMATION,
    STATION_STATUS,
    SYSTEM_INFORMATION,
    Grain,
)

# A station_information version's content: its feed columns (not its last_updated).
INFORMATION_HASHED: tuple[str, ...] = STATION_INFORMATION.feed_columns
SYSTEM_HASHED: tuple[str, ...] = ("system_id", "name", "timezone", "language")


def stamp(ts: pd.Timestamp) -> str:
    """Compact UTC stamp used in file names and batch ids: 20230301T100512Z (with µs if any)."""
    ts = pd.Timestamp(ts).tz_convert("UTC")
    text = ts.strftime("%Y%m%dT%H%M%S")
    if ts.microsecond:
        text += f".{ts.microsecond:06d}"
    return text + "Z"


def status_batch_id(published_at: pd.Timestamp) -> str:
    """The id of a station_status snapshot: one per ``last_updated``, whatever fetched it."""
    return f"station_status-{stamp(published_at)}"


def quarantine_batch_id(feed: str, published_at: pd.Timestamp | None, payload: bytes) -> str:
    """Id of a rejected payload: the same bytes at the same time always give the same id."""
    when = stamp(published_at) if published_at is not None else "unknown"
    return f"{feed}-{when}-{hashlib.sha256(payload).hexdigest()[:12]}"


def information_content_hash(frame: pd.DataFrame) -> str:
    """Hash of a station_information version's content (its last_updated is left out)."""
    rows = frame.loc[:, list(INFORMATION_HASHED)].sort_values("station_id", kind="stable", na_position="last")
    records = [[None if pd.isna(v) else v for v in row] for row in rows.itertuples(index=False, name=None)]
    text = json.dumps(records, default=_json_scalar, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def system_content_hash(system: dict[str, Any]) -> str:
    """Hash of system_information's content (its last_updated is left out)."""
    text = json.dumps({k: system.get(k) for k in SYSTEM_HASHED}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _json_scalar(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


@dataclass(frozen=True)
class InformationVersion:
    """The station_information in force: canonical rows plus where it came from."""

    frame: pd.DataFrame  # station_id, name, short_name, capacity, lat, lon, region_id
    content_hash: str
    valid_from: pd.Timestamp


@dataclass(frozen=True)
class IngestSink:
    """Lake writes and lookups of the ingest for one city."""

    lake: Lake
    city: str

    # ---- station_status ------------------------------------------------------------------------
    def status_location(self, published_at: pd.Timestamp) -> tuple[str, str]:
        """(dt, name) of the snapshot's file: ``dt`` is its last_updated minute, the name its stamp."""
        return partition_value(published_at, Grain.MINUTE), f"station_status-{stamp(published_at)}"

    def has_status(self, published_at: pd.Timestamp) -> bool:
        dt, name = self.status_location(published_at)
        return self.lake.exists(STATION_STATUS, city=self.city, dt=dt, name=name)

    def existing_status(self) -> set[tuple[str, str]]:
        """Every (dt, name) already written, compacted days included, from one listing (for the backfill)."""
        return self.lake.written(STATION_STATUS, city=self.city)

    def write_status(self, rows: pd.DataFrame | pa.Table, published_at: pd.Timestamp) -> str | None:
        """Write one snapshot; None when it is already in the lake."""
        dt, name = self.status_location(published_at)
        return self.lake.write(STATION_STATUS, rows, city=self.city, dt=dt, name=name)

    # ---- station_information (slowly changing dimension) ------------------------------------
    def information_location(self, version: InformationVersion) -> tuple[str, str]:
        dt = partition_value(version.valid_from, Grain.MINUTE)
        return dt, f"station_information-{stamp(version.valid_from)}-{version.content_hash[:12]}"

    def write_information(self, version: InformationVersion, *, fetched_at: pd.Timestamp, batch_id: str) -> str | None:
        dt, name = self.information_location(version)
        rows = version.frame.loc[:, list(INFORMATION_HASHED)].assign(
            valid_from=version.valid_from,
            fetched_at=fetched_at,
            batch_id=batch_id,
            content_hash=version.content_hash,
        )
        return self.lake.write(STATION_INFORMATION, rows, city=self.city, dt=dt, name=name)

    def current_information(self) -> InformationVersion | None:
        """The latest version in the lake (by valid_from), read from its partition only."""
        dts = self.lake.partitions(STATION_INFORMATION, city=self.city)
        if not dts:
            return None
        table = self.lake.read(STATION_INFORMATION, city=self.city, dts=dts[-1:]).to_pandas(types_mapper=pd.ArrowDtype)
        latest = table["valid_from"].max()
        rows = table[table["valid_from"] == latest]
        content_hash = str(rows["content_hash"].iloc[0])
        rows = rows[rows["content_hash"] == content_hash]
        frame = _numpy_nullable(rows.loc[:, list(INFORMATION_HASHED)]).reset_index(drop=True)
        return InformationVersion(frame=frame, content_hash=content_hash, valid_from=pd.Timestamp(latest))

    def information_versions(self) -> set[tuple[str, str]]:
        """(dt, name) of every station_information version file, compacted days included."""
        return self.lake.written(STATION_INFORMATION, city=self.city)

    # ---- system_information ------------------------------------------------------------------
    def current_system_hash(self) -> str | None:
        dts = self.lake.partitions(SYSTEM_INFORMATION, city=self.city)
        if not dts:
            return None
        table = self.lake.read(SYSTEM_INFORMATION, city=self.city, dts=dts[-1:])
        rows = table.sort_by([("valid_from", "descending")]).slice(0, 1).to_pylist()
        return str(rows[0]["content_hash"]) if rows else None

    def write_system(self, system: dict[str, Any], *, fetched_at: pd.Timestamp) -> str | None:
        valid_from = pd.Timestamp(system["last_updated"])
        content_hash = system_content_hash(system)
        row = {k: system.get(k) for k in SYSTEM_HASHED}
        row.update(valid_from=valid_from, fetched_at=fetched_at, content_hash=content_hash)
        dt = partition_value(valid_from, Grain.MINUTE)
        name = f"system_information-{stamp(valid_from)}-{content_hash[:12]}"
        return self.lake.write(SYSTEM_INFORMATION, pd.DataFrame([row]), city=self.city, dt=dt, name=name)

    # ---- quarantine and log --------------------------------------------------------------------
    def quarantine(
        self,
        *,
        payload: bytes,
        batch_id: str,
        feed: str,
        source: str,
        fetched_at: pd.Timestamp,
        published_at: pd.Timestamp | None,
        reason_code: str,
        reason: str,
        by_fetch_day: bool = False,
    ) -> str:
        """Keep the original payload (gzip) and write its reason row; return the payload path.

        The partition is the UTC day of ``published_at`` (of ``fetched_at`` when it is unknown, or
        with ``by_fetch_day``: an implausible feed time names no useful day). Idempotent: a batch
        id already quarantined is left as it is.
        """
        day = fetched_at if published_at is None or by_fetch_day else published_at
        dt = partition_value(day, Grain.DAY)
        payload_path = f"{self.lake.partition_dir(QUARANTINE, city=self.city, dt=dt)}/{batch_id}.json.gz"
        if self.lake.exists(QUARANTINE, city=self.city, dt=dt, name=batch_id):
            return payload_path
        # Payload first: a reason row never points at a payload that is not there.
        self.lake.write_bytes(payload_path, gzip.compress(payload, mtime=0))
        row = {
            "batch_id": batch_id,
            "feed": feed,
            "source": source,
            "fetched_at": fetched_at,
            "published_at": published_at,
            "reason_code": reason_code,
            "reason": reason,
            "payload_path": payload_path,
        }
        self.lake.write(QUARANTINE, pd.DataFrame([row]), city=self.city, dt=dt, name=batch_id)
        return payload_path

    def remove_stale_tmp(self, *, older_than_s: float) -> int:
        """Delete ``*.tmp`` files (half-written by a killed writer) at least ``older_than_s`` old.

        Local lakes only: S3 objects are written in one PUT and leave no temporary file.
        """
        if self.lake.is_remote:
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for spec in (STATION_STATUS, STATION_INFORMATION, SYSTEM_INFORMATION, QUARANTINE, INGEST_LOG):
            for path in self.lake.fs.glob(f"{self.lake.table_root(spec)}/city={self.city}/dt=*/*.tmp"):
                with contextlib.suppress(FileNotFoundError):  # a live writer may have renamed it meanwhile
                    if self.lake.fs.info(path)["mtime"] <= cutoff:
                        self.lake.fs.rm_file(path)
                        removed += 1
        return removed

    def write_log(self, rows: list[dict[str, Any]], *, name: str) -> list[str]:
        """Append ingest_log rows (one file per day touched, named ``name``)."""
        if not rows:
            return []
        frame = pd.DataFrame(rows)
        days = frame["fetched_at"].map(lambda ts: partition_value(ts, Grain.DAY))
        paths = []
        for day, part in frame.groupby(days, sort=True):
            path = self.lake.write(INGEST_LOG, part.reset_index(drop=True), city=self.city, dt=str(day), name=name)
            if path:
                paths.append(path)
        return paths


def _numpy_nullable(frame: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed columns to the pandas nullable dtypes the contract works in."""
    return frame.convert_dtypes(dtype_backend="numpy_nullable")
