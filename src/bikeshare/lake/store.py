"""The lake: a folder or an S3 prefix of Hive-partitioned Parquet, written atomically.

Only this module and :mod:`bikeshare.lake.tables` know paths. Writes go to a temporary name
and are renamed into place (a single PUT on S3), so a reader never sees half a file and a crash
never leaves half a partition. DuckDB reads the same files through views (:meth:`Lake.connect`).
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bikeshare.lake.tables import ALL_TABLES, Grain, TableSpec
from bikeshare.utc import to_utc

PARQUET_COMPRESSION = "zstd"


def partition_value(ts: datetime | pd.Timestamp, grain: Grain) -> str:
    """The ``dt=`` value for a UTC instant at the table's grain."""
    ts = to_utc(ts, what="partition time")
    return ts.strftime("%Y-%m-%d-%H-%M" if grain is Grain.MINUTE else "%Y-%m-%d")


def parse_partition_value(value: str) -> pd.Timestamp:
    """Inverse of :func:`partition_value` for either grain."""
    fmt = "%Y-%m-%d-%H-%M" if value.count("-") == 4 else "%Y-%m-%d"
    return pd.Timestamp(datetime.strptime(value, fmt).replace(tzinfo=UTC))


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
            fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, skip_instance_cache=True)
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

        Returns ``None`` without writing when the file exists and ``overwrite`` is false, which is
        what makes re-runs idempotent.
        """
        path = self.file_path(spec, city=city, dt=dt, name=name)
        if not overwrite and self.fs.exists(path):
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
        return bool(self.fs.exists(self.file_path(spec, city=city, dt=dt, name=name)))

    def delete_partition(self, spec: TableSpec, *, city: str, dt: str) -> None:
        """Remove one partition (used to rebuild derived tables such as features)."""
        path = self.partition_dir(spec, city=city, dt=dt)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    # ---- reads -------------------------------------------------------------------------------
    def partitions(self, spec: TableSpec, *, city: str, dt_glob: str = "*") -> list[str]:
        """Sorted ``dt`` values that hold at least one file (``dt_glob`` narrows, e.g. ``2023-03-01*``)."""
        pattern = f"{self.table_root(spec)}/city={city}/dt={dt_glob}/*.parquet"
        values = {p.rsplit("/", 2)[-2].removeprefix("dt=") for p in self.fs.glob(pattern)}
        return sorted(values)

    def partition_dirs(self, spec: TableSpec, *, city: str) -> list[str]:
        """Sorted ``dt`` values of the partition folders of a city: one listing, no file globbing.

        A folder may (briefly) hold no file yet; :meth:`files` of its ``dt`` then finds none.
        """
        root = f"{self.table_root(spec)}/city={city}"
        if not self.fs.exists(root):
            return []
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(root, detail=False))
        return sorted(n.removeprefix("dt=") for n in names if n.startswith("dt="))

    def files(self, spec: TableSpec, *, city: str, dts: Iterable[str] | None = None) -> list[str]:
        if dts is None:
            return sorted(self.fs.glob(f"{self.table_root(spec)}/city={city}/dt=*/*.parquet"))
        out: list[str] = []
        for dt in dts:
            out.extend(self.fs.glob(f"{self.partition_dir(spec, city=city, dt=dt)}/*.parquet"))
        return sorted(out)

    def read(self, spec: TableSpec, *, city: str, dts: Iterable[str] | None = None) -> pa.Table:
        """Read a table's files for one city (optionally some partitions) into one Arrow table."""
        tables = []
        for path in self.files(spec, city=city, dts=dts):
            with self.fs.open(path, "rb") as handle:
                tables.append(conform(pq.read_table(handle), spec.schema))
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
        """SQL that scans a table (all of it, one city's partitions, or some partitions of one city)."""
        if city is not None and dts is not None:
            paths = sorted(self.files(spec, city=city, dts=dts))
            if not paths:
                return empty_select_sql(spec)
            source = "[" + ", ".join(_sql_str(self._duck_path(p)) for p in paths) + "]"
            edges = [paths[0], paths[-1]]
        else:
            edges = self._edge_files(spec, city=city)
            if not edges:
                return empty_select_sql(spec)
            pattern = self.glob(spec) if city is None else f"{self.table_root(spec)}/city={city}/dt=*/*.parquet"
            source = _sql_str(pattern)
        union = "false" if self._uniform(edges) else "true"
        return (
            f"SELECT * FROM read_parquet({source}, hive_partitioning = true, union_by_name = {union}, "
            "hive_types = {'city': VARCHAR, 'dt': VARCHAR})"
        )

    def _edge_files(self, spec: TableSpec, *, city: str | None) -> list[str]:
        """The first and the last file (in ``dt`` order) of each city's partitions; empty: no file.

        Folder listings only, never a glob of every file: a table can hold tens of thousands.
        """
        if city is not None:
            cities = [city]
        elif self.fs.exists(self.table_root(spec)):
            names = (p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.table_root(spec), detail=False))
            cities = sorted(n.removeprefix("city=") for n in names if n.startswith("city="))
        else:
            cities = []
        edges: list[str] = []
        for name in cities:
            dts = self.partition_dirs(spec, city=name)
            for order, pick in ((dts, 0), (dts[::-1], -1)):
                for dt in order:
                    found = self.files(spec, city=name, dts=[dt])
                    if found:
                        edges.append(found[pick])
                        break
        return edges

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


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
