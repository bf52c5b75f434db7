from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.contracts.rules import ContractRules, RejectCode
from bikeshare.contracts.validate import check_station_information

T0 = pd.Timestamp("2023-03-01 10:00:00", tz="UTC")


def information(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "station_id": [f"s{i}" for i in range(n)],
            "name": [f"Station {i}" for i in range(n)],
            "short_name": [f"S-{i}" for i in range(n)],
            "capacity": pd.array([20] * n, dtype="Int32"),
            "lat": [37.7 + i / 1000 for i in range(n)],
            "lon": [-122.4 - i / 1000 for i in range(n)],
            "region_id": ["3"] * n,
            "last_updated": pd.Series([T0] * n).astype("datetime64[us, UTC]"),
        }
    )


def test_clean_information_is_accepted() -> None:
    check = check_station_information(information(), rules=ContractRules())
    assert check.verdict.accepted
    assert check.verdict.published_at == T0
    assert str(check.frame["capacity"].dtype) == "Int32"


@pytest.mark.parametrize("column", ["station_id", "name", "capacity", "lat", "lon"])
def test_missing_required_fields_beyond_the_threshold_reject(column: str) -> None:
    frame = information()
    frame[column] = frame[column].astype("object")
    frame.loc[:2, column] = None  # 3 of 40 = 7.5%
    verdict = check_station_information(frame, rules=ContractRules()).verdict
    assert [(r.code, r.field) for r in verdict.rejections] == [(RejectCode.MISSING_REQUIRED, column)]


def test_one_missing_name_is_tolerated() -> None:
    frame = information()
    frame.loc[0, "name"] = None
    assert check_station_information(frame, rules=ContractRules()).verdict.accepted


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("lat", 91.0, RejectCode.COORDINATES),
        ("lon", -180.5, RejectCode.COORDINATES),
        ("capacity", -1, RejectCode.NEGATIVE_CAPACITY),
    ],
)
def test_out_of_range_values_reject(column: str, value: float, code: RejectCode) -> None:
    frame = information()
    frame.loc[5, column] = value
    verdict = check_station_information(frame, rules=ContractRules()).verdict
    assert [(r.code, r.field, r.examples) for r in verdict.rejections] == [(code, column, ("s5",))]


def test_duplicate_station_ids_reject() -> None:
    frame = pd.concat([information(), information(1)], ignore_index=True)
    verdict = check_station_information(frame, rules=ContractRules()).verdict
    assert [r.code for r in verdict.rejections] == [RejectCode.DUPLICATE_STATION]
    assert verdict.rejections[0].examples == ("s0", "s0")


def test_empty_information_is_rejected() -> None:
    verdict = check_station_information(information(0), rules=ContractRules()).verdict
    assert [r.code for r in verdict.rejections] == [RejectCode.EMPTY]


def test_a_capacity_of_the_wrong_type_is_reported_as_wrong_type() -> None:
    frame = information()
    frame.loc[:2, "capacity"] = pd.NA  # 3 of 40, as read from "big"
    wrong = {"capacity": {0: "big", 1: "big", 2: "big"}}
    verdict = check_station_information(frame, rules=ContractRules(), wrong_type=wrong).verdict
    assert [(r.code, r.field, r.values) for r in verdict.rejections] == [
        (RejectCode.WRONG_TYPE, "capacity", ('"big"',))
    ]
