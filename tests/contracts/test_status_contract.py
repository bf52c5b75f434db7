from __future__ import annotations

import json

import pandas as pd
import pytest

from bikeshare.contracts.rules import ContractRules, RejectCode, rejection_json
from bikeshare.contracts.validate import ContractSchemaError, check_station_status

T0 = pd.Timestamp("2023-03-01 10:00:00", tz="UTC")
RULES = ContractRules(
    max_missing_frac=0.05, capacity_slack=5, max_over_capacity_frac=0.05, future_skew_s=300, stale_report_s=3600
)


def snapshot(n: int = 40, *, at: pd.Timestamp = T0, prefix: str = "s") -> pd.DataFrame:
    """A clean normalised station_status snapshot of ``n`` stations, 10 bikes + 10 docks each."""
    return pd.DataFrame(
        {
            "station_id": pd.array([f"{prefix}{i}" for i in range(n)], dtype="string"),
            "bikes": pd.array([10] * n, dtype="Int32"),
            "ebikes": pd.array([2] * n, dtype="Int32"),
            "docks": pd.array([10] * n, dtype="Int32"),
            "bikes_disabled": pd.array([0] * n, dtype="Int32"),
            "docks_disabled": pd.array([0] * n, dtype="Int32"),
            "is_installed": pd.array([True] * n, dtype="boolean"),
            "is_renting": pd.array([True] * n, dtype="boolean"),
            "is_returning": pd.array([True] * n, dtype="boolean"),
            "last_reported": pd.Series([at - pd.Timedelta(minutes=1)] * n).astype("datetime64[us, UTC]"),
            "last_updated": pd.Series([at] * n).astype("datetime64[us, UTC]"),
        }
    )


def information(n: int = 40, *, capacity: int = 20, prefix: str = "s") -> pd.DataFrame:
    return pd.DataFrame({"station_id": [f"{prefix}{i}" for i in range(n)], "capacity": [capacity] * n})


def only_verdict(check):  # type: ignore[no-untyped-def]
    assert len(check.verdicts) == 1
    return next(iter(check.verdicts.values()))


def test_clean_snapshot_is_accepted_without_masks() -> None:
    check = check_station_status(snapshot(), information=information(), rules=RULES)
    verdict = only_verdict(check)
    assert verdict.accepted
    assert verdict.rows_in == 40 and verdict.rows_masked == 0 and verdict.row_pass_rate == 1.0
    assert not check.frame["masked"].any()
    assert check.frame["mask_reasons"].isna().all()


def test_ten_percent_missing_bikes_rejects_the_batch_with_details() -> None:
    frame = snapshot()
    frame.loc[:3, "bikes"] = pd.NA  # 4 of 40 = 10%
    verdict = only_verdict(check_station_status(frame, information=information(), rules=RULES))
    assert not verdict.accepted
    rejection = verdict.rejections[0]
    assert rejection.code is RejectCode.MISSING_REQUIRED
    assert rejection.field == "bikes"
    assert rejection.share == pytest.approx(0.10)
    assert rejection.threshold == 0.05
    assert rejection.examples == ("s0", "s1", "s2", "s3")
    details = json.loads(rejection_json(verdict.rejections, feed="station_status"))
    assert details["rejections"][0]["code"] == "missing_required"
    assert details["rejections"][0]["examples"] == ["s0", "s1", "s2", "s3"]


def test_missing_share_at_the_threshold_is_masked_not_rejected() -> None:
    frame = snapshot()
    frame.loc[:1, "docks"] = pd.NA  # 2 of 40 = 5%: not more than the threshold
    check = check_station_status(frame, information=information(), rules=RULES)
    verdict = only_verdict(check)
    assert verdict.accepted
    assert verdict.masked_by_reason == {"missing_docks": 2}
    assert check.frame.loc[:1, "mask_reasons"].tolist() == ["missing_docks", "missing_docks"]


def test_missing_station_ids_count_as_missing_required() -> None:
    frame = snapshot()
    frame.loc[:4, "station_id"] = pd.NA
    verdict = only_verdict(check_station_status(frame, information=information(), rules=RULES))
    assert [r.field for r in verdict.rejections] == ["station_id"]


@pytest.mark.parametrize("column", ["bikes", "docks", "ebikes", "bikes_disabled", "docks_disabled"])
def test_a_negative_count_rejects_the_batch(column: str) -> None:
    frame = snapshot()
    frame.loc[7, column] = -1
    verdict = only_verdict(check_station_status(frame, information=information(), rules=RULES))
    codes = [(r.code, r.field) for r in verdict.rejections]
    assert codes == [(RejectCode.NEGATIVE_COUNT, column)]
    assert verdict.rejections[0].examples == ("s7",)


def test_last_reported_in_the_future_beyond_the_skew_rejects() -> None:
    frame = snapshot()
    frame.loc[3, "last_reported"] = T0 + pd.Timedelta(seconds=301)
    frame.loc[4, "last_reported"] = T0 + pd.Timedelta(seconds=299)  # within the skew: fine
    verdict = only_verdict(check_station_status(frame, information=information(), rules=RULES))
    assert [r.code for r in verdict.rejections] == [RejectCode.FUTURE_LAST_REPORTED]
    assert verdict.rejections[0].examples == ("s3",)


def test_few_stations_over_capacity_are_masked_many_reject() -> None:
    frame = snapshot()
    frame.loc[0, "bikes"] = 16  # 16 + 10 = 26 > 20 + 5
    frame.loc[1, "bikes"] = 15  # 25: at the slack, fine
    check = check_station_status(frame, information=information(), rules=RULES)
    verdict = only_verdict(check)
    assert verdict.accepted
    assert verdict.masked_by_reason == {"over_capacity": 1}
    assert check.frame.loc[0, "mask_reasons"] == "over_capacity"

    frame.loc[:2, "bikes"] = 40  # 3 of 40 = 7.5% > 5%
    verdict = only_verdict(check_station_status(frame, information=information(), rules=RULES))
    assert [r.code for r in verdict.rejections] == [RejectCode.OVER_CAPACITY]
    assert verdict.rejections[0].share == pytest.approx(0.075)


def test_row_defects_are_masked_with_every_reason() -> None:
    frame = snapshot()
    frame.loc[0, "last_reported"] = T0 - pd.Timedelta(hours=2)
    frame.loc[0, "is_renting"] = False
    frame.loc[1, "is_installed"] = False
    frame = pd.concat([frame, snapshot(1, prefix="ghost")], ignore_index=True)
    check = check_station_status(frame, information=information(), rules=RULES)
    verdict = only_verdict(check)
    assert verdict.accepted
    assert verdict.rows_in == 41 and verdict.rows_masked == 3
    assert verdict.masked_by_reason == {"stale": 1, "not_renting": 1, "not_installed": 1, "unknown_station": 1}
    reasons = dict(zip(check.frame["station_id"], check.frame["mask_reasons"], strict=True))
    assert reasons["s0"] == "stale,not_renting"
    assert reasons["s1"] == "not_installed"
    assert reasons["ghost0"] == "unknown_station"
    assert verdict.row_pass_rate == pytest.approx(38 / 41)


def test_duplicate_station_rows_are_kept_and_masked() -> None:
    frame = pd.concat([snapshot(), snapshot(1)], ignore_index=True)
    check = check_station_status(frame, information=information(), rules=RULES)
    assert only_verdict(check).masked_by_reason == {"duplicate": 1}
    assert len(check.frame) == 41


def test_without_information_the_capacity_and_unknown_rules_are_skipped() -> None:
    frame = snapshot()
    frame.loc[:9, "bikes"] = 100
    verdict = only_verdict(check_station_status(frame, information=None, rules=RULES))
    assert verdict.accepted and verdict.rows_masked == 0


def test_many_snapshots_are_judged_one_by_one_against_the_version_in_force() -> None:
    t1 = T0 + pd.Timedelta(minutes=10)
    bad = snapshot(at=t1)
    bad.loc[:3, "bikes"] = pd.NA
    frame = pd.concat([snapshot(), bad, snapshot(at=T0 + pd.Timedelta(minutes=20))], ignore_index=True)
    versions = pd.concat(
        [
            information().assign(valid_from=T0 - pd.Timedelta(days=1)),
            information(39).assign(valid_from=T0 + pd.Timedelta(minutes=15)),  # s39 removed
        ],
        ignore_index=True,
    )
    check = check_station_status(frame, information=versions, rules=RULES)
    verdicts = [check.verdicts[t] for t in sorted(check.verdicts)]
    assert [v.accepted for v in verdicts] == [True, False, True]
    assert verdicts[0].masked_by_reason == {}
    assert verdicts[2].masked_by_reason == {"unknown_station": 1}


def test_snapshots_before_the_first_version_use_the_first_version() -> None:
    versions = information().assign(valid_from=T0 + pd.Timedelta(days=1))
    versions = pd.concat([versions, information(39).assign(valid_from=T0 + pd.Timedelta(days=2))])
    verdict = only_verdict(check_station_status(snapshot(), information=versions, rules=RULES))
    assert verdict.masked_by_reason == {}


def test_frames_that_do_not_fit_the_types_raise_a_named_error() -> None:
    frame = snapshot()
    frame["last_updated"] = frame["last_updated"].dt.tz_localize(None)
    with pytest.raises(ContractSchemaError, match="last_updated"):
        check_station_status(frame, information=None, rules=RULES)
    with pytest.raises(ContractSchemaError, match="'docks' is absent"):
        check_station_status(snapshot().drop(columns="docks"), information=None, rules=RULES)
    text = snapshot()
    text["bikes"] = "many"
    with pytest.raises(ContractSchemaError, match="'bikes'"):
        check_station_status(text, information=None, rules=RULES)


def test_other_timezones_and_units_are_read_as_utc() -> None:
    frame = snapshot()
    frame["last_updated"] = frame["last_updated"].dt.tz_convert("America/Los_Angeles").dt.as_unit("ns")
    check = check_station_status(frame, information=None, rules=RULES)
    assert str(check.frame["last_updated"].dtype) == "datetime64[us, UTC]"
    assert list(check.verdicts) == [T0]


def test_wrong_types_are_told_apart_from_missing_values() -> None:
    frame = snapshot()
    frame.loc[:3, "bikes"] = pd.NA  # 4 of 40 = 10%: as read from "many", true, 2.5 and "many"
    wrong = {"bikes": {0: "many", 1: True, 2: 2.5, 3: "many"}}
    verdict = only_verdict(check_station_status(frame, information=information(), rules=RULES, wrong_type=wrong))
    [rejection] = verdict.rejections
    assert rejection.code is RejectCode.WRONG_TYPE and rejection.field == "bikes"
    assert rejection.share == pytest.approx(0.10) and rejection.count == 4
    assert rejection.values == ('"many"', "true", "2.5")  # distinct, as JSON
    assert rejection.examples == ("s0", "s1", "s2", "s3")
    assert rejection.message == '10.0% of bikes has the wrong type (e.g. "many"; more than 5.0%)'
    details = json.loads(rejection_json(verdict.rejections, feed="station_status"))["rejections"][0]
    assert details["values"] == ['"many"', "true", "2.5"]


def test_a_few_wrong_types_are_masked_and_a_missing_value_next_to_them_stays_missing() -> None:
    frame = snapshot()
    frame.loc[0, "docks"] = pd.NA  # wrong type
    frame.loc[1, "docks"] = pd.NA  # absent
    frame.loc[2, "ebikes"] = pd.NA  # an optional field of the wrong type masks the row too
    wrong = {"docks": {0: "lots"}, "ebikes": {2: [1]}}
    check = check_station_status(frame, information=information(), rules=RULES, wrong_type=wrong)
    verdict = only_verdict(check)
    assert verdict.accepted
    assert verdict.masked_by_reason == {"wrong_type": 2, "missing_docks": 1}
    assert check.frame.loc[:2, "mask_reasons"].tolist() == ["wrong_type", "missing_docks", "wrong_type"]


def test_no_rejection_without_wrong_types_is_unchanged() -> None:
    frame = snapshot()
    frame.loc[:3, "bikes"] = pd.NA
    verdict = only_verdict(check_station_status(frame, information=information(), rules=RULES, wrong_type={}))
    assert [r.code for r in verdict.rejections] == [RejectCode.MISSING_REQUIRED]


@pytest.mark.parametrize(
    ("last_updated", "where"),
    [
        (pd.Timestamp("1970-01-01 01:00", tz="UTC"), "before"),
        (T0 - pd.Timedelta(days=1, seconds=1), "before"),
        (T0 + pd.Timedelta(seconds=301), "after"),
        (pd.Timestamp("2100-01-01", tz="UTC"), "after"),
    ],
)
def test_a_snapshot_time_far_from_its_fetch_time_is_implausible(last_updated: pd.Timestamp, where: str) -> None:
    frame = snapshot(at=last_updated)
    verdict = only_verdict(check_station_status(frame, information=information(), rules=RULES, fetched_at=T0))
    assert verdict.rejections[0].code is RejectCode.IMPLAUSIBLE_TIME
    assert verdict.rejections[0].field == "last_updated"
    assert f"s {where} the fetch at {T0.isoformat()}" in verdict.rejections[0].message
    assert verdict.reason_code == "implausible_time"


def test_snapshot_times_within_the_window_pass_and_each_snapshot_has_its_own_fetch_time() -> None:
    near = [T0 - pd.Timedelta(days=1), T0 + pd.Timedelta(seconds=300)]
    frame = pd.concat([snapshot(at=t) for t in near], ignore_index=True)
    check = check_station_status(frame, information=information(), rules=RULES, fetched_at=T0)
    assert all(v.accepted for v in check.verdicts.values())

    old = pd.Timestamp("2001-09-09", tz="UTC")
    frame = pd.concat([snapshot(at=old), snapshot(at=T0)], ignore_index=True)
    fetched = pd.Series([old + pd.Timedelta(seconds=5)] * 40 + [pd.Timestamp("2001-09-10", tz="UTC")] * 40)
    check = check_station_status(frame, information=information(), rules=RULES, fetched_at=fetched)
    assert check.verdicts[old].accepted  # an old recording judged against its recorded fetch time
    assert check.verdicts[T0].reason_code == "implausible_time"  # 22 years after that fetch
