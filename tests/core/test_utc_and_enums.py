"""The one UTC rule and the shared enums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from bikeshare.enums import ALIAS_NAMES, TARGET_NAMES, Alias, Target
from bikeshare.utc import parse_utc, to_utc


def test_aware_values_convert_to_utc() -> None:
    oslo = timezone(timedelta(hours=2))
    assert to_utc(datetime(2023, 6, 1, 12, tzinfo=oslo)) == pd.Timestamp("2023-06-01T10:00Z")
    assert to_utc("2023-06-01T12:00+02:00") == pd.Timestamp("2023-06-01T10:00Z")
    assert str(to_utc(datetime(2023, 6, 1, tzinfo=UTC)).tz) == "UTC"


@pytest.mark.parametrize("naive", ["2023-06-01 12:00", datetime(2023, 6, 1, 12), pd.Timestamp("2023-06-01")])
def test_naive_values_are_refused_with_what_they_were(naive: object) -> None:
    with pytest.raises(ValueError, match=r"window start .* has no timezone"):
        to_utc(naive, what="window start")


def test_enums_are_strings() -> None:
    assert [str(t) for t in Target] == ["bikes", "docks"]
    assert Alias("staging") is Alias.STAGING
    assert f"bikeshare-sf-{Target.DOCKS}" == "bikeshare-sf-docks"
    with pytest.raises(ValueError):
        Alias("canary")


def test_an_unknown_name_says_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"unknown target 'scooters': expected bikes or docks"):
        Target("scooters")
    with pytest.raises(ValueError, match=r"unknown alias 'canary': expected production or staging"):
        Alias("canary")
    assert TARGET_NAMES == ("bikes", "docks") and ALIAS_NAMES == ("production", "staging")
    assert all(type(name) is str for name in (*TARGET_NAMES, *ALIAS_NAMES))  # plain strings, for JSON keys


def test_text_typed_by_a_person_is_read_as_utc_at_the_boundary() -> None:
    assert parse_utc("2023-03-07T16:22") == pd.Timestamp("2023-03-07T16:22Z")
    assert parse_utc("2023-03-07T18:22+02:00") == pd.Timestamp("2023-03-07T16:22Z")
    assert str(parse_utc("2023-03-07").tz) == "UTC"
    for bad in ("yesterday-ish", ""):
        with pytest.raises(ValueError, match="--at: not a time"):
            parse_utc(bad, what="--at")
