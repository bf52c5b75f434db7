"""Plans written to the lake, read back, and seen through the plan views."""

from __future__ import annotations

import pandas as pd
import pytest

from bikeshare.lake.store import Lake
from bikeshare.lake.tables import PLANS
from bikeshare.rebalancing.plan import make_plan
from bikeshare.rebalancing.storage import read_plan, write_plan

from .conftest import AS_OF, exact_params, hand_instance, line_fleet


@pytest.fixture
def plan():
    stations, forecast = hand_instance()
    return make_plan(
        stations, forecast, fleet=line_fleet(loads=(8,)), params=exact_params(time_limit_s=1.0), as_of=AS_OF
    )


def test_a_plan_is_written_and_read_back(lake: Lake, plan) -> None:
    path = write_plan(lake, plan, city="sf")
    assert path is not None and path.endswith("plans/city=sf/dt=2023-03-08-12-00/plan.parquet")
    stored = read_plan(lake, city="sf")
    assert stored is not None and stored.dt == "2023-03-08-12-00"
    for method in ("optimised", "greedy"):
        expected = plan.routes(method)
        got = stored.routes(method)
        assert got["station_id"].tolist() == expected["station_id"].tolist()
        assert got["quantity"].tolist() == expected["quantity"].tolist()
        assert got["action"].tolist() == expected["action"].tolist()
        assert got["arrival"].tolist() == expected["arrival"].tolist()
    assert stored.summary["stockout_min_plan"] == pytest.approx(plan.summary.stockout_min_plan)
    assert stored.summary["stockout_min_greedy"] == pytest.approx(plan.summary.stockout_min_greedy)
    assert stored.summary["status"] == plan.status
    assert stored.summary["as_of"] == AS_OF


def test_writing_again_keeps_the_stored_plan_unless_asked(lake: Lake, plan) -> None:
    assert write_plan(lake, plan, city="sf") is not None
    assert write_plan(lake, plan, city="sf") is None
    assert write_plan(lake, plan, city="sf", overwrite=True) is not None
    assert lake.partitions(PLANS, city="sf") == ["2023-03-08-12-00"]


def test_views_give_the_summary_and_the_latest_stops(lake: Lake, plan) -> None:
    write_plan(lake, plan, city="sf")
    later = make_plan(
        *hand_instance(),
        fleet=line_fleet(loads=(16,)),
        params=exact_params(time_limit_s=1.0),
        as_of=AS_OF + pd.Timedelta(minutes=30),
    )
    write_plan(lake, later, city="sf")
    con = lake.connect()
    summary = con.sql("SELECT * FROM plan_summary ORDER BY as_of").df()
    assert len(summary) == 2
    assert summary["avoided_vs_no_action"].tolist() == pytest.approx([110.0, 210.0], abs=1e-6)
    assert summary["avoided_vs_greedy"].iloc[0] == pytest.approx(50.0, abs=1e-6)
    latest = con.sql("SELECT * FROM plan_stops_latest WHERE method = 'optimised' ORDER BY stop_seq").df()
    assert latest["quantity"].tolist() == [4, 4, 4, 4]
    assert (latest["as_of"] == AS_OF + pd.Timedelta(minutes=30)).all()


def test_empty_lake_has_no_plan_and_typed_empty_views(lake: Lake) -> None:
    assert read_plan(lake, city="sf") is None
    con = lake.connect()
    assert con.sql("SELECT count(*) FROM plan_summary").fetchall() == [(0,)]
    params = exact_params(time_limit_s=0.5)
    write_plan(lake, make_plan(*hand_instance(), fleet=line_fleet(), params=params, as_of=AS_OF), city="sf")
    with pytest.raises(KeyError, match="no plan"):
        read_plan(lake, city="sf", dt="2023-01-01-00-00")
