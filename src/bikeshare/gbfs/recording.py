"""The project's compact recording format, and the importer from the shared JSON Lines recordings.

A recording is a folder:

- ``manifest.json``: ``{format: "bikeshare-recording", format_version: 1, source, city,
  system_information, start, end, snapshots, ...}`` (times ISO UTC);
- ``station_status.parquet``: normalised status rows (:data:`STATUS_COLUMNS` + ``fetched_at``),
  zstd, sorted by ``last_updated, station_id``; one snapshot = all rows of one ``last_updated``;
- ``station_information.parquet``: normalised information rows, one full version per distinct
  content, ``last_updated`` = the version's valid_from (+ ``fetched_at``).

Rows are kept as recorded: stale ``last_reported``, stations unknown to information, stations
not installed. Defects are for the data contract to judge, not for the recording to hide.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bikeshare.gbfs.normalise import (
    INFORMATION_COLUMNS,
    STATUS_COLUMNS,
    FeedFormatError,
    feed_last_updated,
    normalise_station_information,
    normalise_station_status,
    normalise_system_information,
)
from bikeshare.lake.tables import STATION_INFORMATION, STATION_STATUS
from bikeshare.utc import parse_utc, to_utc

FORMAT = "bikeshare-recording"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STATUS_FILE = "station_status.parquet"
INFORMATION_FILE = "station_information.parquet"
SHIPPED_SLICE = "baywheels-2023-03-02_09"

# The recorded rows: the normalised frames of the lake's table specs plus when they were fetched.
STATUS_SCHEMA = STATION_STATUS.normalised_schema("fetched_at")
INFORMATION_SCHEMA = STATION_INFORMATION.normalised_schema("fetched_at")
_PANDAS_TYPES = {pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}


class RecordingError(ValueError):
    """A folder that is not a readable recording, or a source that cannot be imported."""


def default_recording_path() -> Path:
    """The real Bay Wheels slice shipped in the repository (``data/recordings/...``)."""
    return Path(__file__).resolve().parents[3] / "data" / "recordings" / SHIPPED_SLICE


def as_utc(value: pd.Timestamp | str | None) -> pd.Timestamp | None:
    """A time given to a recording in UTC: text by the rule for typed input (``utc.parse_utc``), an
    instant by ``utc.to_utc`` (naive refused); ``None`` stays ``None``."""
    if value is None:
        return None
    return parse_utc(value) if isinstance(value, str) else to_utc(value)


def _us(ts: pd.Timestamp) -> int:
    """Microseconds since the epoch (``Timestamp.value`` is always nanoseconds)."""
    return int(ts.value // 1000)


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas with nullable Int32/boolean columns and UTC microsecond timestamps."""
    frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for name, typ in zip(table.schema.names, table.schema.types, strict=True):
        if pa.types.is_timestamp(typ):
            frame[name] = frame[name].astype("datetime64[us, UTC]")
    return frame


class Recording:
    """A recording folder opened for reading. Status is read once and served from memory."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._status: pa.Table | None = None
        self._times: np.ndarray | None = None  # int64 microseconds, one per snapshot, ascending
        self._offsets: np.ndarray | None = None  # row offset of each snapshot, plus the end
        self._information: list[tuple[pd.Timestamp, pd.DataFrame]] | None = None
        self._lock = threading.Lock()  # the replay server reads from several threads

    @classmethod
    def open(cls, path: Path | str) -> Recording:
        """Open a recording folder; raise :class:`RecordingError` naming what is missing or wrong."""
        folder = Path(path)
        if not folder.is_dir():
            raise RecordingError(f"{folder}: no such recording folder")
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise RecordingError(f"{folder} is not a recording: it has no {MANIFEST}")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RecordingError(f"{manifest_path}: not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise RecordingError(f"{manifest_path}: format is not {FORMAT!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise RecordingError(
                f"{manifest_path}: format_version {manifest.get('format_version')!r} is not supported "
                f"(this code reads {FORMAT_VERSION})"
            )
        for name in (STATUS_FILE, INFORMATION_FILE):
            if not (folder / name).is_file():
                raise RecordingError(f"{folder} is not a complete recording: {name} is missing")
        return cls(folder, manifest)

    def __repr__(self) -> str:
        return f"Recording({str(self.path)!r}, {self.manifest.get('start')}..{self.manifest.get('end')})"

    # --- manifest ----------------------------------------------------------------------------

    @property
    def city(self) -> str:
        return str(self.manifest.get("city", ""))

    @property
    def system_information(self) -> dict[str, Any]:
        """system_id, name, timezone, language, last_updated (ISO) and the recorded extras."""
        return dict(self.manifest.get("system_information") or {})

    @property
    def start(self) -> pd.Timestamp:
        """``last_updated`` of the first snapshot."""
        return pd.Timestamp(self.manifest["start"]).tz_convert("UTC")

    @property
    def end(self) -> pd.Timestamp:
        """``last_updated`` of the last snapshot."""
        return pd.Timestamp(self.manifest["end"]).tz_convert("UTC")

    # --- status ------------------------------------------------------------------------------

    def _load_status(self) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        with self._lock:
            return self._load_status_locked()

    def _load_status_locked(self) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        if self._status is None:
            table = pq.read_table(self.path / STATUS_FILE)
            missing = [c for c in STATUS_SCHEMA.names if c not in table.schema.names]
            if missing:
                raise RecordingError(f"{self.path / STATUS_FILE}: missing columns {missing}")
            table = table.select(STATUS_SCHEMA.names).cast(STATUS_SCHEMA)
            stamps = table.column("last_updated").cast(pa.int64()).to_numpy()
            if len(stamps) and np.any(np.diff(stamps) < 0):
                raise RecordingError(f"{self.path / STATUS_FILE}: rows are not sorted by last_updated")
            times, starts = np.unique(stamps, return_index=True)
            self._status = table
            self._times = times
            self._offsets = np.append(starts, len(stamps))
        assert self._times is not None and self._offsets is not None
        return self._status, self._times, self._offsets

    def snapshot_times(self) -> pd.DatetimeIndex:
        """``last_updated`` of every snapshot, ascending."""
        _, times, _ = self._load_status()
        return pd.DatetimeIndex(pd.to_datetime(times, unit="us", utc=True), name="last_updated")

    def status_at(self, ts: pd.Timestamp | str) -> pd.DataFrame:
        """Rows of the latest snapshot with ``last_updated <= ts``; KeyError before the first one."""
        table, times, offsets = self._load_status()
        stamp = as_utc(ts)
        assert stamp is not None
        i = int(np.searchsorted(times, _us(stamp), side="right")) - 1
        if i < 0:
            first = self.snapshot_times()[0] if len(times) else None
            raise KeyError(f"no snapshot at or before {stamp.isoformat()} (the recording starts {first})")
        return arrow_to_frame(table.slice(offsets[i], offsets[i + 1] - offsets[i]))

    def iter_status(
        self,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
        chunk: int = 64,
    ) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
        """Yield ``(last_updated, rows)`` per snapshot with ``start <= last_updated < end``, in order.

        The Parquet file is read once; ``chunk`` snapshots at a time are converted to pandas.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        table, times, offsets = self._load_status()
        lo_ts, hi_ts = as_utc(start), as_utc(end)
        lo = 0 if lo_ts is None else int(np.searchsorted(times, _us(lo_ts), side="left"))
        hi = len(times) if hi_ts is None else int(np.searchsorted(times, _us(hi_ts), side="left"))
        for first in range(lo, hi, chunk):
            last = min(first + chunk, hi)
            base = offsets[first]
            frame = arrow_to_frame(table.slice(base, offsets[last] - base))
            for i in range(first, last):
                part = frame.iloc[offsets[i] - base : offsets[i + 1] - base].reset_index(drop=True)
                yield pd.Timestamp(times[i], unit="us", tz="UTC"), part

    def cut(
        self,
        dest: Path,
        *,
        start: pd.Timestamp | str,
        end: pd.Timestamp | str,
        later_information: bool = True,
    ) -> Recording:
        """A recording folder at ``dest`` with the snapshots whose ``start <= last_updated < end``.

        The station_information versions are copied whole; ``later_information=False`` drops the
        versions issued at or after ``end`` (a cut that knows nothing of its future).
        """
        import pyarrow.compute as pc

        lo, hi = as_utc(start), as_utc(end)
        assert lo is not None and hi is not None
        if lo >= hi:
            raise ValueError(f"a cut needs start < end, got {lo.isoformat()}..{hi.isoformat()}")
        table = pq.read_table(self.path / STATUS_FILE)
        stamps = table.column("last_updated")
        kept = table.filter(pc.and_(pc.greater_equal(stamps, lo.to_pydatetime()), pc.less(stamps, hi.to_pydatetime())))
        if kept.num_rows == 0:
            raise RecordingError(f"{self.path}: no snapshot within {lo.isoformat()}..{hi.isoformat()}")
        dest.mkdir(parents=True, exist_ok=True)
        pq.write_table(kept, dest / STATUS_FILE)
        if later_information:
            shutil.copyfile(self.path / INFORMATION_FILE, dest / INFORMATION_FILE)
        else:
            information = pq.read_table(self.path / INFORMATION_FILE)
            pq.write_table(
                information.filter(pc.less(information.column("last_updated"), hi.to_pydatetime())),
                dest / INFORMATION_FILE,
            )
        times = pd.to_datetime(kept.column("last_updated").to_pandas(), utc=True)
        manifest = {
            **self.manifest,
            "start": times.min().isoformat(),
            "end": times.max().isoformat(),
            "snapshots": int(times.nunique()),
            "status_rows": kept.num_rows,
            "window_start": lo.isoformat(),
            "window_end": hi.isoformat(),
        }
        (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return Recording.open(dest)

    # --- information -------------------------------------------------------------------------

    def information_versions(self) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
        """Every station_information version as ``(valid_from, rows)``, ascending."""
        with self._lock:
            return self._information_versions_locked()

    def _information_versions_locked(self) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
        if self._information is None:
            table = pq.read_table(self.path / INFORMATION_FILE)
            missing = [c for c in INFORMATION_SCHEMA.names if c not in table.schema.names]
            if missing:
                raise RecordingError(f"{self.path / INFORMATION_FILE}: missing columns {missing}")
            frame = arrow_to_frame(table.select(INFORMATION_SCHEMA.names).cast(INFORMATION_SCHEMA))
            self._information = [
                (pd.Timestamp(valid_from), rows.reset_index(drop=True))
                for valid_from, rows in frame.groupby("last_updated", sort=True)
            ]
        return list(self._information)

    def information_at(self, ts: pd.Timestamp | str) -> pd.DataFrame:
        """The station_information version in force at ``ts``; KeyError before the first version."""
        stamp = as_utc(ts)
        assert stamp is not None
        current: pd.DataFrame | None = None
        for valid_from, rows in self.information_versions():
            if valid_from > stamp:
                break
            current = rows
        if current is None:
            raise KeyError(f"no station_information version in force at {stamp.isoformat()}")
        return current


# --- import --------------------------------------------------------------------------------------


def _jsonl_documents(path: Path) -> Iterator[tuple[int, float | None, dict]]:
    """(line number, fetched_at, body) per line of a gzip JSON Lines recording file."""
    with gzip.open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise RecordingError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("body"), dict):
                raise RecordingError(f"{path}:{number}: expected an object with a 'body' document")
            fetched = record.get("fetched_at")
            yield number, fetched if isinstance(fetched, int | float) else None, record["body"]


def _fetched_ts(fetched_at: float | None, fallback: pd.Timestamp) -> pd.Timestamp:
    if fetched_at is None:
        return fallback
    return pd.Timestamp(round(fetched_at * 1_000_000), unit="us", tz="UTC")


def import_jsonl_recording(
    src: Path,
    dest: Path,
    *,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    city: str = "sf",
    overwrite: bool = False,
    timezone: str | None = None,
) -> Recording:
    """Convert a shared JSON Lines recording folder into a recording folder at ``dest``.

    Keeps snapshots with ``start <= last_updated < end`` and the station_information versions in
    force during that window. ``dest`` is written atomically (temp folder, then rename). A folder
    without ``system_information`` needs ``timezone`` (IANA); given, it overrides the recorded one.
    """
    src, dest = Path(src), Path(dest)
    files = {feed: src / f"{feed}.jsonl.gz" for feed in ("station_status", "station_information", "system_information")}
    for feed, path in files.items():
        if feed == "system_information" and timezone is not None:
            continue
        if feed == "system_information" and not path.is_file():
            raise RecordingError(
                f"{src} has no {path.name}, so the recording has no time zone: pass --timezone (IANA, e.g. "
                "Europe/Oslo) or set the city's timezone (a setting, or its table in the fleet file)"
            )
        if not path.is_file():
            raise RecordingError(f"{src} is not a JSON Lines recording: {path.name} ({feed}) is missing")
    lo, hi = as_utc(start), as_utc(end)
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError(f"end {hi.isoformat()} must be after start {lo.isoformat()}")
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise RecordingError(f"{dest} exists and is not empty; pass overwrite=True to replace it")

    status = _import_status(files["station_status"], lo, hi)
    if status.empty:
        raise RecordingError(f"{files['station_status']}: no snapshot between {lo} and {hi}")
    first, last = status["last_updated"].iloc[0], status["last_updated"].iloc[-1]
    if files["system_information"].is_file():
        system = _import_system_information(files["system_information"])
    else:
        system = {"system_id": city, "last_updated": first.isoformat()}
    if timezone is not None:
        system["timezone"] = timezone
    information = _import_information(files["station_information"], first, last)
    if information.empty:
        raise RecordingError(f"{files['station_information']}: no station_information in force at {first}")

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": str(src.name),
        "city": city,
        "system_information": system,
        "start": first.isoformat(),
        "end": last.isoformat(),
        "window_start": lo.isoformat() if lo is not None else None,
        "window_end": hi.isoformat() if hi is not None else None,
        "snapshots": int(status["last_updated"].nunique()),
        "status_rows": len(status),
        "stations": int(status["station_id"].nunique()),
        "information_versions": int(information["last_updated"].nunique()),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        _write_parquet(status, STATUS_SCHEMA, tmp / STATUS_FILE)
        _write_parquet(information, INFORMATION_SCHEMA, tmp / INFORMATION_FILE)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            dest.replace(old)
            tmp.replace(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Recording.open(dest)


def _import_system_information(path: Path) -> dict[str, Any]:
    for number, _, body in _jsonl_documents(path):
        try:
            info = normalise_system_information(body)
        except FeedFormatError as exc:
            raise RecordingError(f"{path}:{number}: {exc}") from exc
        extras = {k: v for k, v in body["data"].items() if isinstance(v, str) and k not in info}
        return {**extras, **info, "last_updated": info["last_updated"].isoformat()}
    raise RecordingError(f"{path}: no system_information document")


def _import_status(path: Path, lo: pd.Timestamp | None, hi: pd.Timestamp | None) -> pd.DataFrame:
    frames: list[pd.DataFrame] = []
    seen: set[pd.Timestamp] = set()
    for number, fetched_at, body in _jsonl_documents(path):
        try:
            stamp = feed_last_updated(body)
            if (lo is not None and stamp < lo) or (hi is not None and stamp >= hi) or stamp in seen:
                continue
            rows = normalise_station_status(body)
        except FeedFormatError as exc:
            raise RecordingError(f"{path}:{number}: {exc}") from exc
        seen.add(stamp)
        rows["fetched_at"] = _fetched_ts(fetched_at, stamp)
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=[*STATUS_COLUMNS, "fetched_at"])
    status = pd.concat(frames, ignore_index=True)
    return status.sort_values(["last_updated", "station_id"], kind="stable", ignore_index=True)


def _import_information(path: Path, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
    """Versions in force from ``first`` to ``last``; consecutive identical contents collapse to one."""
    content_cols = list(STATION_INFORMATION.feed_columns)
    versions: list[pd.DataFrame] = []
    previous: pd.DataFrame | None = None
    for number, fetched_at, body in _jsonl_documents(path):
        try:
            rows = normalise_station_information(body)
        except FeedFormatError as exc:
            raise RecordingError(f"{path}:{number}: {exc}") from exc
        stamp = feed_stamp = rows["last_updated"].iloc[0] if len(rows) else None
        if stamp is None or stamp > last:
            continue
        rows["fetched_at"] = _fetched_ts(fetched_at, feed_stamp)
        content = rows[content_cols].sort_values("station_id", ignore_index=True)
        if previous is not None and content.equals(previous):
            continue
        previous = content
        if stamp <= first and versions:
            versions.clear()  # only the latest version before the window is in force in it
        versions.append(rows)
    if not versions:
        return pd.DataFrame(columns=[*INFORMATION_COLUMNS, "fetched_at"])
    information = pd.concat(versions, ignore_index=True)
    return information.sort_values(["last_updated", "station_id"], kind="stable", ignore_index=True)


def _write_parquet(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=19,
        use_dictionary=["station_id", "name", "short_name", "region_id"],
        row_group_size=256 * 1024,
    )
