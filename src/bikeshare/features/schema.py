"""The feature table's contract: column groups, pandas dtypes, a Pandera schema, missing rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow

from bikeshare.lake.tables import FEATURE_VERSION, FEATURES

KEY_COLUMNS: tuple[str, ...] = ("station_id", "slot")
LABEL_COLUMNS: tuple[str, ...] = ("bikes_t_h", "docks_t_h", "y_bikes", "y_docks")
WEATHER_COLUMNS: tuple[str, ...] = ("temp_c", "precip_mm", "wind_kmh", "condition_code")
# Every other column of the table is a model input.
FEATURE_COLUMNS: tuple[str, ...] = tuple(
    name for name in FEATURES.schema.names if name not in KEY_COLUMNS and name not in LABEL_COLUMNS
)
# Missing values are expected here (no weather source, first days of history, empty neighbourhood).
OPTIONAL_COLUMNS: frozenset[str] = frozenset(WEATHER_COLUMNS)
MAX_MISSING_RATE = 0.01

__all__ = [
    "FEATURE_COLUMNS",
    "FEATURE_VERSION",
    "KEY_COLUMNS",
    "LABEL_COLUMNS",
    "MAX_MISSING_RATE",
    "feature_matrix",
    "feature_schema",
    "features_frame",
    "missing_rates",
]

_PANDAS_TYPES = {
    pyarrow.int32(): pd.Int32Dtype(),
    pyarrow.int64(): pd.Int64Dtype(),
    pyarrow.bool_(): pd.BooleanDtype(),
}


def features_frame(table: pyarrow.Table, *, release: bool = False) -> pd.DataFrame:
    """Arrow feature rows as pandas: nullable Int32/Int64/boolean, float32/float64 with NaN.

    ``release``: free each Arrow column once converted (the caller must not use ``table`` after),
    so the conversion needs about one copy of the rows, not two.
    """
    if release:
        return table.to_pandas(types_mapper=_PANDAS_TYPES.get, self_destruct=True, split_blocks=True)
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def feature_matrix(frame: pd.DataFrame, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The float32 matrix a model scores: columns ``names`` in order, NaN for missing."""
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"feature rows lack columns {missing}")
    out = np.empty((len(frame), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        out[:, j] = frame[name].to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def missing_rates(frame: pd.DataFrame) -> pd.Series:
    """Share of missing values per model-input column, highest first."""
    return frame[list(FEATURE_COLUMNS)].isna().mean().sort_values(ascending=False)


def overall_missing_rate(frame: pd.DataFrame) -> float:
    """Share of missing cells over the model inputs that are not optional (weather)."""
    cols = [c for c in FEATURE_COLUMNS if c not in OPTIONAL_COLUMNS]
    if frame.empty:
        return 0.0
    return float(frame[cols].isna().to_numpy().mean())


def feature_schema() -> pa.DataFrameSchema:
    """Pandera schema of feature rows (as returned by ``build_features``)."""
    count = pa.Check.ge(0)
    share = pa.Check.in_range(0.0, 1.0)

    def col(dtype: object, *checks: pa.Check, nullable: bool = True) -> pa.Column:
        return pa.Column(dtype, list(checks), nullable=nullable)

    columns: dict[str, pa.Column] = {
        "station_id": col(str, nullable=False),
        "slot": col(pd.DatetimeTZDtype("us", "UTC"), nullable=False),
        "bikes": col(pd.Int32Dtype(), count, nullable=False),
        "docks": col(pd.Int32Dtype(), count, nullable=False),
        "ebikes": col(pd.Int32Dtype(), count),
        "bikes_disabled": col(pd.Int32Dtype(), count),
        "docks_disabled": col(pd.Int32Dtype(), count),
        "capacity": col(pd.Int32Dtype(), count),
        "fill_ratio": col("float32", share),
        "snapshot_age_min": col("float32", pa.Check.ge(0), nullable=False),
        "lat": col("float64", pa.Check.in_range(-90.0, 90.0)),
        "lon": col("float64", pa.Check.in_range(-180.0, 180.0)),
        "region_code": col(pd.Int64Dtype()),
        "geo_cell": col(pd.Int64Dtype()),
        "hour_local": col("float32", pa.Check.in_range(0.0, 24.0, include_max=False), nullable=False),
        "weekday": col("float32", pa.Check.in_range(1.0, 7.0), nullable=False),
        "is_weekend": col("float32", pa.Check.isin([0.0, 1.0]), nullable=False),
        "is_holiday": col("float32", pa.Check.isin([0.0, 1.0]), nullable=False),
        "bikes_t_h": col(pd.Int32Dtype(), count),
        "docks_t_h": col(pd.Int32Dtype(), count),
        "y_bikes": col(pd.BooleanDtype()),
        "y_docks": col(pd.BooleanDtype()),
    }
    for name in FEATURE_COLUMNS:
        if name in columns:
            continue
        checks = [share] if name.startswith(("hist_short", "hist_any_short", "daytype_short")) else []
        if name.startswith(("nb_count", "nb_short", "slots_seen", "short_", "turnover", "hist_days")):
            checks = [count]
        columns[name] = col("float32", *checks)
    ordered = {name: columns[name] for name in FEATURES.schema.names}
    return pa.DataFrameSchema(
        ordered,
        strict=True,
        ordered=True,
        unique=list(KEY_COLUMNS),
        name=f"features v{FEATURE_VERSION}",
    )
