"""Pandera schemas of the normalised frames, and the canonical dtypes they are checked in."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from bikeshare.contracts.rules import COUNT_COLUMNS, ContractRules

UTC_DTYPE = pd.DatetimeTZDtype("us", "UTC")

STATUS_DTYPES: dict[str, object] = {
    "station_id": pd.StringDtype(),
    "bikes": pd.Int32Dtype(),
    "ebikes": pd.Int32Dtype(),
    "docks": pd.Int32Dtype(),
    "bikes_disabled": pd.Int32Dtype(),
    "docks_disabled": pd.Int32Dtype(),
    "is_installed": pd.BooleanDtype(),
    "is_renting": pd.BooleanDtype(),
    "is_returning": pd.BooleanDtype(),
    "last_reported": UTC_DTYPE,
    "last_updated": UTC_DTYPE,
}

INFORMATION_DTYPES: dict[str, object] = {
    "station_id": pd.StringDtype(),
    "name": pd.StringDtype(),
    "short_name": pd.StringDtype(),
    "capacity": pd.Int32Dtype(),
    "lat": pd.Float64Dtype(),
    "lon": pd.Float64Dtype(),
    "region_id": pd.StringDtype(),
    "last_updated": UTC_DTYPE,
}

FUTURE_CHECK = "future_last_reported"


def status_schema(rules: ContractRules) -> pa.DataFrameSchema:
    """Types, non-negative counts, and last_reported no later than last_updated + skew.

    Required fields may be null here: their missing share is judged per batch, not per row.
    """
    skew = pd.Timedelta(seconds=rules.future_skew_s)
    columns: dict[str, pa.Column] = {
        "station_id": pa.Column(STATUS_DTYPES["station_id"], nullable=True),
        **{c: pa.Column(STATUS_DTYPES[c], pa.Check.ge(0), nullable=True) for c in COUNT_COLUMNS},
        **{c: pa.Column(STATUS_DTYPES[c], nullable=True) for c in ("is_installed", "is_renting", "is_returning")},
        "last_reported": pa.Column(UTC_DTYPE, nullable=True),
        "last_updated": pa.Column(UTC_DTYPE, nullable=False),
    }
    return pa.DataFrameSchema(
        columns,
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
    return pa.DataFrameSchema(
        {
            "station_id": pa.Column(INFORMATION_DTYPES["station_id"], nullable=True),
            "name": pa.Column(INFORMATION_DTYPES["name"], nullable=True),
            "short_name": pa.Column(INFORMATION_DTYPES["short_name"], nullable=True),
            "capacity": pa.Column(INFORMATION_DTYPES["capacity"], pa.Check.ge(0), nullable=True),
            "lat": pa.Column(INFORMATION_DTYPES["lat"], pa.Check.in_range(-90.0, 90.0), nullable=True),
            "lon": pa.Column(INFORMATION_DTYPES["lon"], pa.Check.in_range(-180.0, 180.0), nullable=True),
            "region_id": pa.Column(INFORMATION_DTYPES["region_id"], nullable=True),
            "last_updated": pa.Column(UTC_DTYPE, nullable=False),
        },
        strict=False,
        name="station_information",
    )
