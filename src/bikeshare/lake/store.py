"""The lake: a folder or an S3 prefix of Hive-partitioned Parquet, written atomically.

Only this module and :mod:`bikeshare.lake.tables` know paths. Writes go to a temporary name
and are renamed into place (a single PUT on S3), so a reader never sees half a file and a crash
never leaves half a partition. DuckDB reads the same files through views (:meth:`Lake.connect`).

Minute-grain tables are compacted (:mod:`bikeshare.lake.compaction`): a closed UTC day of one city
becomes ``<prefix>/city=<c>/day=YYYY-MM-DD/part.parquet``, whose rows keep their minute ``dt`` as a
column and whose footer lists the ``(dt, name)`` of every minute file it holds (its manifest). The
day file is written atomically, so it is its own commit marker: from then on every reader here takes
the rows of those minutes from it and skips any minute file still left beside it, so the compacted
and the open minutes read as one table and a half-finished compaction never counts a row twice.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bikeshare.lake.tables import ALL_TABLES, Grain, TableSpec
from bikeshare.utc import to_utc

PARQUET_COMPRESSION = "zstd"
COMPACTED_FILE = "part.parquet"
"""Name of the one file of a compacted day (``day=YYYY-MM-DD/part.parquet``)."""
COMPACTED_ROW_GROUP_ROWS = 65_536
"""Rows per row group of a compacted day: small enough for DuckDB to skip groups by their statistics."""
_MANIFEST_KEY = b"bikeshare.compacted"


def partition_value(ts: datetime | pd.Timestamp, grain: Grain) -> str:
    """The ``dt=`` value for a UTC instant at the table's grain."""
    ts = to_utc(ts, what="partition time")
    return ts.strftime("%Y-%m-%d-%H-%M" if grain is Grain.MINUTE else "%Y-%m-%d")


def parse_partition_value(value: str) -> pd.Timestamp:
    """Inverse of :func:`partition_value` for either grain."""
    fmt = "%Y-%m-%d-%H-%M" if value.count("-") == 4 else "%Y-%m-%d"
    return pd.Timestamp(datetime.strptime(value, fmt).replace(tzinfo=UTC))


@dataclass(frozen=True)
class _Layout:
    """A city's folders of one table, as readers take them."""

    minutes: tuple[str, ...]  # dt= folders read as minute files
    days: tuple[str, ...]  # committed compacted days
    hidden: frozenset[str]  # dt= folders left beside the compacted day that holds them (skipped)


@dataclass(frozen=True)
class Lake:
    """Hive-partitioned Parquet tables under one root URI (local path or ``s3://``)."""

    root: str
    fs: fsspec.AbstractFileSystem

    @classmethod
    def open(cls, uri: str, *, s3_endpoint_url: str | None = None) -> Lake:
        """Open a lake at a folder path or an ``s3://bucket/prefix`` URI."""
        if uri.startswith("s3://"):
            import s3fs

            client_kwargs = {"endpoint_url": s3_endpoint_url} if s3_endpoint_url else {}
            # No listings cache: other processes add and (compaction, retention) remove objects.
            fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, skip_instance_cache=True, use_listings_cache=False)
            return cls(root=uri.rstrip("/"), fs=fs)
        if "://" in uri and not uri.startswith("file://"):
            raise ValueError(f"unsupported lake URI {uri!r}: use a folder path or s3://bucket/prefix")
        local = uri.removeprefix("file://")
        fs = fsspec.filesystem("file")
        root = fs._strip_protocol(local)
        fs.makedirs(root, exist_ok=True)
        return cls(root=root.rstrip("/") or "/", fs=fs)

    @property
    def is_remote(self) -> bool:
        return self.root.startswith("s3://")

    def for_city(self, city: str) -> CityLake:
        """This lake bound to one city: its methods need no ``city=``."""
        return CityLake(lake=self, city=city)

    # ---- paths -------------------------------------------------------------------------------
    def table_root(self, spec: TableSpec) -> str:
        return f"{self.root}/{spec.prefix}"

    def partition_dir(self, spec: TableSpec, *, city: str, dt: str) -> str:
        return f"{self.table_root(spec)}/city={city}/dt={dt}"

    def file_path(self, spec: TableSpec, *, city: str, dt: str, name: str) -> str:
        return f"{self.partition_dir(spec, city=city, dt=dt)}/{name}.parquet"

    def glob(self, spec: TableSpec) -> str:
        return f"{self.table_root(spec)}/city=*/dt=*/*.parquet"

    def compacted_path(self, spec: TableSpec, *, city: str, day: str) -> str:
        """The file of one compacted day of a minute-grain table."""
        return f"{self.table_root(spec)}/city={city}/day={day}/{COMPACTED_FILE}"

    # ---- writes ------------------------------------------------------------------------------
    def write(
        self,
        spec: TableSpec,
        data: pd.DataFrame | pa.Table,
        *,
        city: str,
        dt: str,
        name: str,
        overwrite: bool = False,
    ) -> str | None:
        """Write one Parquet file into a partition atomically; return its path.

        Returns ``None`` without writing when the file exists (as a minute file or in the manifest of
        its compacted day) and ``overwrite`` is false, which is what makes re-runs idempotent.
        """
        path = self.file_path(spec, city=city, dt=dt, name=name)
        if not overwrite and self.exists(spec, city=city, dt=dt, name=name):  # a compacted day's file too
            return None
        table = conform(data, spec.schema)
        self.write_bytes(path, _parquet_bytes(table))
        return path

    def write_bytes(self, path: str, payload: bytes) -> None:
        """Put bytes at ``path`` so that readers see all of them or nothing."""
        if self.is_remote:
            with self.fs.open(path, "wb") as handle:  # one PUT: S3 objects appear whole
                handle.write(payload)
            return
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with self.fs.open(tmp, "wb") as handle:
            handle.write(payload)
        self.fs.mv(tmp, path)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open(path, "rb") as handle:
            return handle.read()

    def exists(self, spec: TableSpec, *, city: str, dt: str, name: str) -> bool:
        """True when the file was written, as a minute file or into a compacted day."""
        if self.fs.exists(self.file_path(spec, city=city, dt=dt, name=name)):
            return True
        return spec.grain is Grain.MINUTE and (dt, name) in self.compacted_entries(spec, city=city, day=dt[:10])

    def written(self, spec: TableSpec, *, city: str) -> set[tuple[str, str]]:
        """``(dt, name)`` of every file written for a city, the compacted ones included (from their manifests)."""
        out = {_dt_name(path) for path in self.fs.glob(f"{self.table_root(spec)}/city={city}/dt=*/*.parquet")}
        for day in self.compacted_days(spec, city=city):
            out |= self.compacted_entries(spec, city=city, day=day)
        return out

    def drop_day(self, spec: TableSpec, *, city: str, day: str) -> None:
        """Remove every partition of one UTC day (retention): its minute folders, then its compacted file."""
        if spec.grain is not Grain.MINUTE:
            self.delete_partition(spec, city=city, dt=day)
            return
        for dt in self._listing(spec, city=city)[0]:
            if dt[:10] == day:
                self.delete_partition(spec, city=city, dt=dt)
        folder = self.compacted_path(spec, city=city, day=day).rsplit("/", 1)[0]
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)

    # ---- compacted days (bikeshare.lake.compaction) ------------------------------------------
    def compacted_days(self, spec: TableSpec, *, city: str) -> list[str]:
        """Sorted days of a city whose compacted file is committed."""
        return sorted(self._listing(spec, city=city)[1])

    def compacted_entries(self, spec: TableSpec, *, city: str, day: str) -> frozenset[tuple[str, str]]:
        """The manifest of a compacted day: ``(dt, name)`` of the minute files it holds (empty: not compacted)."""
        if spec.grain is not Grain.MINUTE:
            return frozenset()
        try:
            with self.fs.open(self.compacted_path(spec, city=city, day=day), "rb") as handle:
                meta = pq.read_schema(handle).metadata or {}
        except FileNotFoundError:
            return frozenset()
        return frozenset((dt, name) for dt, name in json.loads(meta.get(_MANIFEST_KEY, b"[]")))

    def minute_files(self, spec: TableSpec, *, city: str) -> dict[str, list[str]]:
        """Every minute file on disk by ``dt`` (names without ``.parquet``), compacted or not: what compaction reads."""
        out: dict[str, list[str]] = {}
        for path in sorted(self.fs.glob(f"{self.table_root(spec)}/city={city}/dt=*/*.parquet")):
            dt, name = _dt_name(path)
            out.setdefault(dt, []).append(name)
        return out

    def write_compacted(
        self, spec: TableSpec, table: pa.Table, *, city: str, day: str, entries: Iterable[tuple[str, str]]
    ) -> str:
        """Commit one compacted day: ``table`` (the spec's columns plus the minute ``dt``) in one atomic write.

        Rows are sorted by station (when the table has one) then ``dt``, in bounded row groups with
        statistics; the footer records ``entries``, the minute files the day now holds.
        """
        if spec.grain is not Grain.MINUTE:
            raise ValueError(f"{spec.name} is not a minute-grain table: nothing to compact")
        dts = table.column("dt").cast(pa.string())
        body = conform(table.drop_columns(["dt"]), spec.schema).append_column("dt", dts)
        keys = [("station_id", "ascending")] if "station_id" in spec.schema.names else []
        body = body.sort_by([*keys, ("dt", "ascending")])
        manifest = json.dumps(sorted([dt, name] for dt, name in set(entries))).encode()
        body = body.replace_schema_metadata({_MANIFEST_KEY: manifest})
        buffer = io.BytesIO()
        pq.write_table(
            body,
            buffer,
            compression=PARQUET_COMPRESSION,
            row_group_size=COMPACTED_ROW_GROUP_ROWS,
            write_statistics=True,
        )
        path = self.compacted_path(spec, city=city, day=day)
        if not self.is_remote:  # temporary files of a writer killed mid-write (a live one renames within seconds)
            cutoff = time.time() - 60
            for stale in self.fs.glob(f"{path}.*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if self.fs.info(stale)["mtime"] <= cutoff:
                        self.fs.rm_file(stale)
        self.write_bytes(path, buffer.getvalue())
        return path

    def read_compacted(self, spec: TableSpec, *, city: str, day: str) -> pa.Table:
        """A compacted day's rows with their minute ``dt`` column (empty when the day is not compacted)."""
        path = self.compacted_path(spec, city=city, day=day)
        if not self.fs.exists(path):
            return spec.schema.empty_table().append_column("dt", pa.array([], pa.string()))
        with self.fs.open(path, "rb") as handle:
            table = pq.read_table(handle)
        return conform(table.drop_columns(["dt"]), spec.schema).append_column("dt", table.column("dt"))

    def remove_minute_files(self, spec: TableSpec, *, city: str, dt: str, names: Iterable[str]) -> int:
        """Delete some files of one minute partition (the folder too once empty); return how many went."""
        removed = 0
        for name in names:
            path = self.file_path(spec, city=city, dt=dt, name=name)
            try:
                self.fs.rm_file(path)
                removed += 1
            except FileNotFoundError:
                pass
        folder = self.partition_dir(spec, city=city, dt=dt)
        if not self.is_remote and self.fs.exists(folder) and not self.fs.ls(folder, detail=False):
            self.fs.rmdir(folder)
        return removed

    def delete_partition(self, spec: TableSpec, *, city: str, dt: str) -> None:
        """Remove one partition (used to rebuild derived tables such as features)."""
        path = self.partition_dir(spec, city=city, dt=dt)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    # ---- reads -------------------------------------------------------------------------------
    def partitions(self, spec: TableSpec, *, city: str, dt_glob: str = "*") -> list[str]:
        """Sorted ``dt`` values that hold at least one file (``dt_glob`` narrows, e.g. ``2023-03-01*``).

        The minutes of a compacted day are listed too, from its manifest.
        """
        pattern = f"{self.table_root(spec)}/city={city}/dt={dt_glob}/*.parquet"
        values = {p.rsplit("/", 2)[-2].removeprefix("dt=") for p in self.fs.glob(pattern)}
        if spec.grain is not Grain.MINUTE:
            return sorted(values)
        head = re.split(r"[*?\[]", dt_glob, maxsplit=1)[0]
        days = [head[:10]] if len(head) >= 10 else [d for d in self._listing(spec, city=city)[1] if d.startswith(head)]
        values |= {dt for dt in self._compacted_dts(spec, city=city, days=days) if fnmatch.fnmatchcase(dt, dt_glob)}
        return sorted(values)

    def partition_dirs(self, spec: TableSpec, *, city: str) -> list[str]:
        """Sorted ``dt`` values of the partition folders of a city: one listing, no file globbing.

        A folder may (briefly) hold no file yet; :meth:`files` of its ``dt`` then finds none. The
        minutes of a compacted day are listed too, from its manifest.
        """
        minutes, days = self._listing(spec, city=city)
        return sorted(set(minutes) | self._compacted_dts(spec, city=city, days=days))

    def files(self, spec: TableSpec, *, city: str, dts: Iterable[str] | None = None) -> list[str]:
        """Paths holding a city's rows (of some ``dt``): minute files, and the file of any compacted day asked."""
        if dts is None:
            layout = self._layout(spec, city=city) if spec.grain is Grain.MINUTE else _Layout((), (), frozenset())
            found = self.fs.glob(f"{self.table_root(spec)}/city={city}/dt=*/*.parquet")
            out = [p for p in found if _dt_name(p)[0] not in layout.hidden]
            return sorted(out) + [self.compacted_path(spec, city=city, day=d) for d in layout.days]
        dts = list(dict.fromkeys(dts))
        out, compacted = [], []
        held = self._held(spec, city=city, dts=dts) if spec.grain is Grain.MINUTE else set()
        for dt in dts:
            if dt in held:
                path = self.compacted_path(spec, city=city, day=dt[:10])
                if path not in compacted:
                    compacted.append(path)
            else:
                out.extend(self.fs.glob(f"{self.partition_dir(spec, city=city, dt=dt)}/*.parquet"))
        return sorted(out) + sorted(compacted)

    def read(self, spec: TableSpec, *, city: str, dts: Iterable[str] | None = None) -> pa.Table:
        """Read a table's files for one city (optionally some partitions) into one Arrow table."""
        wanted = None if dts is None else list(dts)
        tables = []
        for path in self.files(spec, city=city, dts=wanted):
            with self.fs.open(path, "rb") as handle:
                table = pq.read_table(handle)
            if _is_compacted(path):
                if wanted is not None:
                    table = table.filter(pc.is_in(table.column("dt"), pa.array(wanted, pa.string())))
                table = table.drop_columns(["dt"])
            tables.append(conform(table, spec.schema))
        if not tables:
            return spec.schema.empty_table()
        return pa.concat_tables(tables)

    # ---- DuckDB ------------------------------------------------------------------------------
    def connect(self, *, views: Iterable[str] | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per lake table (our Athena).

        ``views`` limits it to those views and the views they read (binding a view over thousands of
        files takes a moment; a reader that needs a few can skip the others).
        """
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        if self.is_remote:
            con.register_filesystem(self.fs)
        self.refresh_views(con, views=views)
        return con

    def connect_read_only(self, *, views: Iterable[str] | None = None) -> duckdb.DuckDBPyConnection:
        """:meth:`connect`, then locked to reading this lake (``bikeshare sql``, the dashboard).

        DuckDB opens no file outside the lake root, loads no extension and changes no setting
        (:func:`~bikeshare.lake.views.lock_down`); run queries through
        :func:`~bikeshare.lake.views.read_only_frame`, which also refuses statements that write.
        """
        from bikeshare.lake.views import lock_down

        con = self.connect(views=views)
        lock_down(con, readable=[self._duck_path(self.root).rstrip("/") + "/"])
        return con

    def refresh_views(self, con: duckdb.DuckDBPyConnection, *, views: Iterable[str] | None = None) -> None:
        """(Re)create every view (or ``views`` and what they read); a table without files is an empty view."""
        from bikeshare.lake.views import DERIVED_VIEWS

        wanted = None if views is None else view_closure(views)
        for spec in ALL_TABLES:
            if wanted is None or spec.name in wanted:
                con.execute(f"CREATE OR REPLACE VIEW {spec.name} AS {self.scan_sql(spec)}")
        for name, sql in DERIVED_VIEWS.items():
            if wanted is None or name in wanted:
                con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")

    def scan_sql(self, spec: TableSpec, *, city: str | None = None, dts: Iterable[str] | None = None) -> str:
        """SQL that scans a table (all of it, one city's partitions, or some partitions of one city).

        Compacted days come from their day files (their rows keep the minute ``dt``); a minute folder
        left beside its compacted day is skipped, so every row is read once.
        """
        if city is not None and dts is not None:
            wanted = list(dict.fromkeys(dts))
            paths = self.files(spec, city=city, dts=wanted)
            minutes = [p for p in paths if not _is_compacted(p)]
            days = [p for p in paths if _is_compacted(p)]
            minute_source = "[" + ", ".join(_sql_str(self._duck_path(p)) for p in minutes) + "]"
            day_source = "[" + ", ".join(_sql_str(self._duck_path(p)) for p in days) + "]"
            held = sorted(dt for dt in wanted if dt[:10] in {p.rsplit("/", 2)[-2].removeprefix("day=") for p in days})
            day_filter = f"dt IN ({', '.join(_sql_str(dt) for dt in held)})"
            return self._union_sql(
                spec, minute_source if minutes else None, [minutes[0], minutes[-1]] if minutes else [],
                day_source if days else None, [days[0], days[-1]] if days else [], day_filter,
            )  # fmt: skip
        cities = [city] if city is not None else self._cities(spec)
        layouts = {name: self._layout(spec, city=name) for name in cities} if spec.grain is Grain.MINUTE else {}
        compacted = {name for name, layout in layouts.items() if layout.days}
        if not compacted:  # as before compaction: one glob (DuckDB lists the files at each query)
            edges = self._edge_files(spec, cities=cities, layouts=layouts)
            minute_glob = self.glob(spec) if city is None else f"{self.table_root(spec)}/city={city}/dt=*/*.parquet"
            return self._union_sql(spec, _sql_str(minute_glob) if edges else None, edges, None, [], "")
        # A city with compacted days: its open days by pattern and its day files by path, so the view
        # never names a minute file a compacted day holds (compaction may be removing it).
        plain = [name for name in cities if name not in compacted]
        edges = self._edge_files(spec, cities=plain, layouts=layouts)
        patterns = [f"{self.table_root(spec)}/city={name}/dt=*/*.parquet" for name in plain] if edges else []
        days: list[str] = []
        for name in sorted(compacted):
            layout = layouts[name]
            open_patterns, open_edges = self._open_patterns(spec, city=name, layout=layout)
            patterns += open_patterns
            edges += open_edges
            days += [self.compacted_path(spec, city=name, day=day) for day in layout.days]
        minute_source = "[" + ", ".join(_sql_str(self._duck_path(p)) for p in patterns) + "]" if patterns else None
        day_source = "[" + ", ".join(_sql_str(self._duck_path(p)) for p in days) + "]"
        day_edges = list(dict.fromkeys([days[0], days[-1]]))
        return self._union_sql(spec, minute_source, edges, day_source, day_edges, "")

    def _open_patterns(self, spec: TableSpec, *, city: str, layout: _Layout) -> tuple[list[str], list[str]]:
        """Globs of a compacted city's open minutes (one per open day; one per minute beside a compacted day)
        that each match a file, and the first and last file they match."""
        by_day: dict[str, list[str]] = {}
        for dt in layout.minutes:
            by_day.setdefault(dt[:10], []).append(dt)
        patterns, found = [], []
        for day, dts in sorted(by_day.items()):
            if day in layout.days:  # minutes written after the day was compacted: name each
                groups = [(f"{self.partition_dir(spec, city=city, dt=dt)}/*.parquet", [dt]) for dt in dts]
            else:
                groups = [(f"{self.table_root(spec)}/city={city}/dt={day}-*/*.parquet", dts)]
            for pattern, members in groups:
                first = next((f for dt in members for f in self._dir_files(spec, city=city, dt=dt)), None)
                if first is not None:
                    patterns.append(pattern)
                    found.append(first)
        return patterns, found[:1] + found[-1:]

    def _dir_files(self, spec: TableSpec, *, city: str, dt: str) -> list[str]:
        return sorted(self.fs.glob(f"{self.partition_dir(spec, city=city, dt=dt)}/*.parquet"))

    def _union_sql(
        self,
        spec: TableSpec,
        minute_source: str | None,
        minute_edges: list[str],
        day_source: str | None,
        day_edges: list[str],
        day_filter: str,
    ) -> str:
        """Minute files and compacted days as one ``SELECT`` (schema columns, then ``city``, ``dt``)."""
        parts = []
        if minute_source is not None:
            union = "false" if self._uniform(minute_edges) else "true"
            sql = (
                f"SELECT * FROM read_parquet({minute_source}, hive_partitioning = true, union_by_name = {union}, "
                "hive_types = {'city': VARCHAR, 'dt': VARCHAR})"
            )
            parts.append(sql)
        if day_source is not None:
            union = "false" if self._uniform(day_edges) else "true"
            sql = (
                f"SELECT * EXCLUDE (day, city, dt), city, dt FROM read_parquet({day_source}, hive_partitioning = true, "
                f"union_by_name = {union}, hive_types = {{'city': VARCHAR, 'day': VARCHAR}})"
            )
            parts.append(f"{sql} WHERE {day_filter}" if day_filter else sql)
        if not parts:
            return empty_select_sql(spec)
        return parts[0] if len(parts) == 1 else f"{parts[0]} UNION ALL BY NAME {parts[1]}"

    def _cities(self, spec: TableSpec) -> list[str]:
        if not self.fs.exists(self.table_root(spec)):
            return []
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.table_root(spec), detail=False))
        return sorted(n.removeprefix("city=") for n in names if n.startswith("city="))

    def _edge_files(self, spec: TableSpec, *, cities: list[str], layouts: dict[str, _Layout]) -> list[str]:
        """The first and the last minute file (in ``dt`` order) of each city's partitions; empty: no file.

        Folder listings only, never a glob of every file: a table can hold tens of thousands.
        """
        edges: list[str] = []
        for name in cities:
            dts = list(layouts[name].minutes) if name in layouts else self._listing(spec, city=name)[0]
            for order, pick in ((dts, 0), (dts[::-1], -1)):
                for dt in order:
                    found = sorted(self.fs.glob(f"{self.partition_dir(spec, city=name, dt=dt)}/*.parquet"))
                    if found:
                        edges.append(found[pick])
                        break
        return edges

    def _listing(self, spec: TableSpec, *, city: str) -> tuple[list[str], set[str]]:
        """One listing of a city's folder: its ``dt=`` folders and its committed compacted days."""
        root = f"{self.table_root(spec)}/city={city}"
        if not self.fs.exists(root):
            return [], set()
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(root, detail=False)]
        minutes = sorted(n.removeprefix("dt=") for n in names if n.startswith("dt="))
        days = {n.removeprefix("day=") for n in names if n.startswith("day=")}
        if days and not self.is_remote:  # a local day folder may hold only the temporary file of a killed writer
            days = {d for d in days if self.fs.exists(self.compacted_path(spec, city=city, day=d))}
        return minutes, days

    def _layout(self, spec: TableSpec, *, city: str) -> _Layout:
        """A city's minute folders that readers use, its compacted days, and the folders those days hold."""
        minutes, days = self._listing(spec, city=city)
        if not days or spec.grain is not Grain.MINUTE:
            return _Layout(tuple(minutes), (), frozenset())
        beside = sorted({dt[:10] for dt in minutes} & days)
        hidden = frozenset(self._compacted_dts(spec, city=city, days=beside)) & set(minutes)
        return _Layout(tuple(dt for dt in minutes if dt not in hidden), tuple(sorted(days)), hidden)

    def _compacted_dts(self, spec: TableSpec, *, city: str, days: Iterable[str]) -> set[str]:
        return {dt for day in days for dt, _ in self.compacted_entries(spec, city=city, day=day)}

    def _held(self, spec: TableSpec, *, city: str, dts: list[str]) -> set[str]:
        """Those of ``dts`` whose rows are in a compacted day (one manifest read per day asked, no listing)."""
        return self._compacted_dts(spec, city=city, days=sorted({dt[:10] for dt in dts})) & set(dts)

    def _uniform(self, paths: list[str]) -> bool:
        """True when the edge files (first and last of a table) have the same columns, as ``write`` makes them.

        ``union_by_name`` makes DuckDB read every file footer each time a view is bound (seconds
        over thousands of minute partitions), so it is only asked for when a table's schema moved
        between its first and its last file, e.g. after a spec gained a column.
        """
        names = []
        for path in dict.fromkeys(paths):
            with self.fs.open(path, "rb") as handle:
                names.append(pq.read_schema(handle).names)
        return all(n == names[0] for n in names)

    def _duck_path(self, path: str) -> str:
        if self.is_remote and not path.startswith("s3://"):
            return f"s3://{path}"
        return path


@dataclass(frozen=True)
class CityLake:
    """One city's partitions of a :class:`Lake`; the lake-wide views stay on :attr:`lake`."""

    lake: Lake
    city: str

    @property
    def root(self) -> str:
        return self.lake.root

    @property
    def is_remote(self) -> bool:
        return self.lake.is_remote

    def partition_dir(self, spec: TableSpec, *, dt: str) -> str:
        return self.lake.partition_dir(spec, city=self.city, dt=dt)

    def file_path(self, spec: TableSpec, *, dt: str, name: str) -> str:
        return self.lake.file_path(spec, city=self.city, dt=dt, name=name)

    def write(
        self, spec: TableSpec, data: pd.DataFrame | pa.Table, *, dt: str, name: str, overwrite: bool = False
    ) -> str | None:
        """:meth:`Lake.write` into this city's partition."""
        return self.lake.write(spec, data, city=self.city, dt=dt, name=name, overwrite=overwrite)

    def exists(self, spec: TableSpec, *, dt: str, name: str) -> bool:
        return self.lake.exists(spec, city=self.city, dt=dt, name=name)

    def delete_partition(self, spec: TableSpec, *, dt: str) -> None:
        self.lake.delete_partition(spec, city=self.city, dt=dt)

    def partitions(self, spec: TableSpec, *, dt_glob: str = "*") -> list[str]:
        return self.lake.partitions(spec, city=self.city, dt_glob=dt_glob)

    def partition_dirs(self, spec: TableSpec) -> list[str]:
        return self.lake.partition_dirs(spec, city=self.city)

    def files(self, spec: TableSpec, *, dts: Iterable[str] | None = None) -> list[str]:
        return self.lake.files(spec, city=self.city, dts=dts)

    def read(self, spec: TableSpec, *, dts: Iterable[str] | None = None) -> pa.Table:
        return self.lake.read(spec, city=self.city, dts=dts)

    def scan_sql(self, spec: TableSpec, *, dts: Iterable[str] | None = None) -> str:
        return self.lake.scan_sql(spec, city=self.city, dts=dts)

    def written(self, spec: TableSpec) -> set[tuple[str, str]]:
        return self.lake.written(spec, city=self.city)

    def compacted_days(self, spec: TableSpec) -> list[str]:
        return self.lake.compacted_days(spec, city=self.city)

    def drop_day(self, spec: TableSpec, *, day: str) -> None:
        self.lake.drop_day(spec, city=self.city, day=day)


def view_closure(views: Iterable[str]) -> set[str]:
    """``views`` plus every view they read, transitively (names of tables and derived views)."""
    from bikeshare.lake.views import DERIVED_VIEWS

    known = {spec.name for spec in ALL_TABLES} | set(DERIVED_VIEWS)
    todo, out = list(views), set()
    while todo:
        name = todo.pop()
        if name not in known:
            raise ValueError(f"no lake view named {name!r}")
        if name in out:
            continue
        out.add(name)
        sql = DERIVED_VIEWS.get(name, "")
        todo.extend(other for other in known if other != name and re.search(rf"\b{other}\b", sql))
    return out


def conform(data: pd.DataFrame | pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a frame to the table's schema: same columns, same order, same types.

    Columns the schema does not name are refused, so nothing is written silently out of contract.
    """
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    table = table.drop_columns([c for c in ("city", "dt") if c in table.column_names and c not in schema.names])
    extra = sorted(set(table.column_names) - set(schema.names))
    if extra:
        raise ValueError(f"columns {extra} are not in the table schema {schema.names}")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            if column.type != field.type:
                try:
                    column = column.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ValueError(f"column {field.name!r} cannot be stored as {field.type}: {exc}") from exc
            columns.append(column)
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def empty_select_sql(spec: TableSpec) -> str:
    """A typed zero-row SELECT so that views exist before the first write."""
    cols = ", ".join(f"CAST(NULL AS {duck_type(f.type)}) AS {f.name}" for f in spec.schema)
    return f"SELECT {cols}, CAST(NULL AS VARCHAR) AS city, CAST(NULL AS VARCHAR) AS dt WHERE false"


def duck_type(arrow_type: pa.DataType) -> str:
    """DuckDB type name of an Arrow type used in our schemas."""
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    mapping = {
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.bool_(): "BOOLEAN",
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.date32(): "DATE",
    }
    if arrow_type in mapping:
        return mapping[arrow_type]
    raise TypeError(f"no DuckDB type for Arrow type {arrow_type}")


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=PARQUET_COMPRESSION)
    return buffer.getvalue()


def _dt_name(path: str) -> tuple[str, str]:
    """``(dt, name)`` of a minute file's path."""
    dt_part, file_name = path.rsplit("/", 2)[-2:]
    return dt_part.removeprefix("dt="), file_name.removesuffix(".parquet")


def _is_compacted(path: str) -> bool:
    return path.endswith(f"/{COMPACTED_FILE}") and path.rsplit("/", 2)[-2].startswith("day=")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
