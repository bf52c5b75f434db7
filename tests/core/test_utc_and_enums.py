"""The one UTC rule and the shared enums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from bikeshare.enums import Alias, Target
from bikeshare.utc import to_utc


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
