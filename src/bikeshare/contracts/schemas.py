"""Pandera schemas of the normalised frames, and the canonical dtypes they are checked in.

Columns and types come from the lake's table specs (:meth:`TableSpec.normalised_schema`); only the
checks are declared here.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pyarrow

from bikeshare.contracts.rules import COUNT_COLUMNS, ContractRules
from bikeshare.lake.tables import STATION_INFORMATION, STATION_STATUS

UTC_DTYPE = pd.DatetimeTZDtype("us", "UTC")


def pandas_dtype(arrow_type: pyarrow.DataType) -> object:
    """The pandas nullable dtype the contract works in for an Arrow column type of the lake."""
    if pyarrow.types.is_timestamp(arrow_type):
        return pd.DatetimeTZDtype(arrow_type.unit, arrow_type.tz)
    dtypes: dict[pyarrow.DataType, object] = {
        pyarrow.string(): pd.StringDtype(),
        pyarrow.int32(): pd.Int32Dtype(),
        pyarrow.bool_(): pd.BooleanDtype(),
        pyarrow.float64(): pd.Float64Dtype(),
    }
    return dtypes[arrow_type]


STATUS_DTYPES: dict[str, object] = {f.name: pandas_dtype(f.type) for f in STATION_STATUS.normalised_schema()}
INFORMATION_DTYPES: dict[str, object] = {f.name: pandas_dtype(f.type) for f in STATION_INFORMATION.normalised_schema()}

FUTURE_CHECK = "future_last_reported"


def _columns(dtypes: dict[str, object], checks: dict[str, pa.Check]) -> dict[str, pa.Column]:
    """One column per dtype with its check (if any); only the document's ``last_updated`` is never null.

    Required fields may be null here: their missing share is judged per batch, not per row.
    """
    return {name: pa.Column(dtype, checks.get(name), nullable=name != "last_updated") for name, dtype in dtypes.items()}


def status_schema(rules: ContractRules) -> pa.DataFrameSchema:
    """Types, non-negative counts, and last_reported no later than last_updated + skew."""
    skew = pd.Timedelta(seconds=rules.future_skew_s)
    return pa.DataFrameSchema(
        _columns(STATUS_DTYPES, dict.fromkeys(COUNT_COLUMNS, pa.Check.ge(0))),
        checks=[
            pa.Check(
                lambda df: ~(df["last_reported"] > df["last_updated"] + skew).fillna(False),
                name=FUTURE_CHECK,
            )
        ],
        strict=False,
        name="station_status",
    )


def information_schema() -> pa.DataFrameSchema:
    """Types, coordinates on the globe, and a non-negative capacity."""
    checks = {
        "capacity": pa.Check.ge(0),
        "lat": pa.Check.in_range(-90.0, 90.0),
        "lon": pa.Check.in_range(-180.0, 180.0),
    }
    return pa.DataFrameSchema(_columns(INFORMATION_DTYPES, checks), strict=False, name="station_information")
