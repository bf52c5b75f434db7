"""Write a local Meteostat mirror: the files Meteostat 2 downloads, built from plain tables.

Layout (what :class:`~bikeshare.weather.meteostat_source.MeteostatConfig` points ``MS_*`` at)::

    <dest>/stations.db                          SQLite: stations, names, identifiers, inventory
    <dest>/hourly/<year>/<station>.csv.gz       year,month,day,hour,<param>,<param>_source,...

Serve the folder over HTTP or use it as a folder (``meteostat_mirror``); both work offline.
"""

from __future__ import annotations

import gzip
import io
import sqlite3
import uuid
from pathlib import Path

import pandas as pd

# Hourly parameters of Meteostat's own provider, in the order its files use.
HOURLY_PARAMETERS: tuple[str, ...] = (
    "temp",
    "dwpt",
    "rhum",
    "prcp",
    "snwd",
    "wdir",
    "wspd",
    "wpgt",
    "pres",
    "tsun",
    "cldc",
    "coco",
)
# Parameters Meteostat types as integers (its schema rounds them); written without a decimal point.
INTEGER_PARAMETERS = frozenset({"rhum", "snwd", "wdir", "tsun", "cldc", "coco"})

STATION_COLUMNS: tuple[str, ...] = ("id", "name", "country", "region", "latitude", "longitude", "elevation", "timezone")
IDENTIFIER_COLUMNS: tuple[str, ...] = ("icao", "wmo", "usaf", "national", "ghcn")

_SCHEMA_SQL = """
CREATE TABLE stations (
    id TEXT PRIMARY KEY, country TEXT, region TEXT,
    latitude REAL, longitude REAL, elevation INTEGER, timezone TEXT
);
CREATE TABLE names (station TEXT, language TEXT, name TEXT);
CREATE TABLE identifiers (station TEXT, key TEXT, value TEXT);
CREATE TABLE inventory (
    station TEXT, provider TEXT, parameter TEXT, start TEXT, "end" TEXT, completeness REAL
);
"""


def build_mirror(dest: Path, *, stations: pd.DataFrame, hourly: pd.DataFrame) -> list[Path]:
    """Write ``stations.db`` and ``hourly/<year>/<station>.csv.gz`` under ``dest``; return the files.

    ``stations`` has one row per station (columns :data:`STATION_COLUMNS`, optional identifier
    columns such as ``icao``/``wmo``). ``hourly`` has ``station``, ``time`` (UTC), ``source`` and
    any of :data:`HOURLY_PARAMETERS`. Every file is written to a temporary name and renamed.
    """
    stations = _checked_stations(stations)
    hourly = _checked_hourly(hourly, known=set(stations["id"]))
    dest.mkdir(parents=True, exist_ok=True)
    written = [_write_stations_db(dest / "stations.db", stations, hourly)]
    params = [p for p in HOURLY_PARAMETERS if p in hourly.columns]
    years = hourly["time"].dt.year
    for (station, year), rows in hourly.groupby([hourly["station"], years], sort=True):
        path = dest / "hourly" / str(year) / f"{station}.csv.gz"
        _atomic_write(path, _hourly_csv_gz(rows, params))
        written.append(path)
    return written


def _checked_stations(stations: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in STATION_COLUMNS if c not in stations.columns]
    if missing:
        raise ValueError(f"stations table lacks columns {missing}; it needs {list(STATION_COLUMNS)}")
    out = stations.copy()
    out["id"] = out["id"].astype(str)
    if out["id"].duplicated().any():
        raise ValueError(f"stations table repeats ids {sorted(out.loc[out['id'].duplicated(), 'id'])}")
    bad = out[~out["latitude"].between(-90, 90) | ~out["longitude"].between(-180, 180)]
    if len(bad):
        raise ValueError(f"stations {list(bad['id'])} have latitude/longitude out of range")
    return out


def _checked_hourly(hourly: pd.DataFrame, *, known: set[str]) -> pd.DataFrame:
    missing = [c for c in ("station", "time", "source") if c not in hourly.columns]
    if missing:
        raise ValueError(f"hourly table lacks columns {missing}")
    unknown = sorted(set(hourly.columns) - {"station", "time", "source", *HOURLY_PARAMETERS})
    if unknown:
        raise ValueError(f"hourly table has columns {unknown} that are not Meteostat hourly parameters")
    out = hourly.copy()
    out["station"] = out["station"].astype(str)
    strays = sorted(set(out["station"]) - known)
    if strays:
        raise ValueError(f"hourly rows name stations {strays} that the stations table does not have")
    time = pd.to_datetime(out["time"], utc=True)
    if (time != time.dt.floor("h")).any():
        raise ValueError("hourly times must fall on the full hour")
    out["time"] = time
    if out.duplicated(["station", "time"]).any():
        raise ValueError("hourly table repeats a (station, time) pair")
    return out.sort_values(["station", "time"], ignore_index=True)


def _write_stations_db(path: Path, stations: pd.DataFrame, hourly: pd.DataFrame) -> Path:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    con = sqlite3.connect(tmp)
    try:
        con.executescript(_SCHEMA_SQL)
        for row in stations.itertuples(index=False):
            con.execute(
                "INSERT INTO stations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.country,
                    row.region,
                    float(row.latitude),
                    float(row.longitude),
                    None if pd.isna(row.elevation) else int(row.elevation),
                    row.timezone,
                ),
            )
            con.execute("INSERT INTO names VALUES (?, 'en', ?)", (row.id, row.name))
        for key in IDENTIFIER_COLUMNS:
            if key not in stations.columns:
                continue
            for station, value in zip(stations["id"], stations[key], strict=True):
                if pd.notna(value) and str(value):
                    con.execute("INSERT INTO identifiers VALUES (?, ?, ?)", (station, key, str(value)))
        for param in (p for p in HOURLY_PARAMETERS if p in hourly.columns):
            present = hourly.dropna(subset=[param])
            for station, rows in present.groupby("station", sort=True):
                con.execute(
                    "INSERT INTO inventory VALUES (?, 'hourly', ?, ?, ?, ?)",
                    (
                        station,
                        param,
                        rows["time"].min().strftime("%Y-%m-%d"),
                        rows["time"].max().strftime("%Y-%m-%d"),
                        round(len(rows) / len(hourly[hourly["station"] == station]), 2),
                    ),
                )
        con.commit()
    finally:
        con.close()
    tmp.replace(path)
    return path


def _hourly_csv_gz(rows: pd.DataFrame, params: list[str]) -> bytes:
    time = rows["time"].dt.tz_convert("UTC")
    table = pd.DataFrame({"year": time.dt.year, "month": time.dt.month, "day": time.dt.day, "hour": time.dt.hour})
    for param in params:
        values = pd.to_numeric(rows[param])
        if param in INTEGER_PARAMETERS:
            values = values.round().astype("Int64")
        table[param] = values.to_numpy()
        table[f"{param}_source"] = rows["source"].where(values.notna()).to_numpy()
    text = table.to_csv(index=False, lineterminator="\n")
    buffer = io.BytesIO()
    # mtime=0 keeps the bytes identical across rebuilds of the same data.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    return buffer.getvalue()


def _atomic_write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)


def build_mirror_from_csv(dest: Path, *, stations_csv: Path, hourly_csv: Path) -> list[Path]:
    """:func:`build_mirror` from two CSV files (same columns as its tables; ``time`` in ISO 8601)."""
    for path in (stations_csv, hourly_csv):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
    stations = pd.read_csv(stations_csv, dtype=dict.fromkeys(("id", *IDENTIFIER_COLUMNS), "string"))
    hourly = pd.read_csv(hourly_csv, dtype={"station": "string", "source": "string"})
    return build_mirror(dest, stations=stations, hourly=hourly)
