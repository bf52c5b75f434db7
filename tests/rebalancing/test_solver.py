"""The planners: a hand-solved instance, the time limit, and route feasibility."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from bikeshare.rebalancing.fleet import Fleet
from bikeshare.rebalancing.greedy import greedy_routes
from bikeshare.rebalancing.instance import build_instance
from bikeshare.rebalancing.need import build_curves
from bikeshare.rebalancing.plan import PlanParams, make_plan
from bikeshare.rebalancing.solver import solve_routes

from .conftest import AS_OF, exact_params, flat_forecast, hand_instance, line_fleet, random_city, station


def test_hand_solved_instance_optimum_is_found_and_beats_greedy() -> None:
    stations, forecast = hand_instance()
    plan = make_plan(stations, forecast, fleet=line_fleet(loads=(8,)), params=exact_params(), as_of=AS_OF)

    routes = plan.routes("optimised")
    assert routes["station_id"].tolist()[0] == "A"
    assert routes["station_id"].tolist()[1] in {"B1", "B2", "B3"}
    assert routes["action"].tolist() == ["unload", "unload"]
    assert routes["quantity"].tolist() == [4, 4]
    assert routes["arrival"].tolist() == [AS_OF + pd.Timedelta(minutes=1), AS_OF + pd.Timedelta(minutes=12)]
    assert routes["avoided_min"].tolist() == pytest.approx([60.0, 50.0], abs=1e-6)

    greedy = plan.routes("greedy")
    assert greedy["station_id"].tolist() == ["A"] and greedy["quantity"].tolist() == [8]

    s = plan.summary
    assert s.stockout_min_no_action == pytest.approx(240.0, abs=1e-6)  # 4 stations short all hour
    assert s.stockout_min_plan == pytest.approx(130.0, abs=1e-6)
    assert s.stockout_min_greedy == pytest.approx(180.0, abs=1e-6)
    assert s.travel_min_plan == pytest.approx(12.0, abs=0.05)
    assert plan.status in {"optimal", "converged", "time_limit"}


def test_with_more_bikes_on_board_the_optimum_changes_as_worked_out() -> None:
    # 16 bikes: half of A (1 min, 60) then all three Bs (same place, all reached at 12 min, 50 each) = 210;
    # A in full and two Bs would only save 160.
    stations, forecast = hand_instance()
    plan = make_plan(stations, forecast, fleet=line_fleet(loads=(16,)), params=exact_params(), as_of=AS_OF)
    assert plan.summary.stockout_min_plan == pytest.approx(240.0 - 210.0, abs=1e-6)
    routes = plan.routes()
    assert routes["station_id"].tolist()[0] == "A"
    assert sorted(routes["station_id"].tolist()[1:]) == ["B1", "B2", "B3"]
    assert routes["quantity"].tolist() == [4, 4, 4, 4]


def test_an_empty_truck_fetches_bikes_before_it_can_deliver() -> None:
    # The truck starts empty; S (2 km east, in band, 14 of 20) can give bikes to E (3 km east, empty).
    stations = pd.DataFrame(
        [station("E", km_east=3.0, bikes=0, docks=20), station("S", km_east=2.0, bikes=14, docks=6)]
    )
    forecast = flat_forecast(stations, {"E": [0.0] * 12, "S": [14.0] * 12})
    params = exact_params(min_move=2)
    plan = make_plan(stations, forecast, fleet=line_fleet(loads=(0,)), params=params, as_of=AS_OF)
    for method in ("optimised", "greedy"):
        routes = plan.routes(method)
        assert routes["station_id"].tolist() == ["S", "E"], method
        assert routes["action"].tolist() == ["load", "unload"]
        assert routes["load_after"].tolist()[-1] >= 0


def test_off_shift_plan_has_no_routes() -> None:
    stations, forecast = hand_instance()
    fleet = Fleet(trucks=1, depot=(0.0, 0.0), shift_start="06:00", shift_end="07:00", timezone="UTC")
    plan = make_plan(stations, forecast, fleet=fleet, params=exact_params(), as_of=AS_OF)
    assert plan.status == "off_shift" and plan.stops.empty
    assert plan.summary.stockout_min_plan == plan.summary.stockout_min_no_action


def test_shift_ending_inside_the_horizon_shortens_the_routes() -> None:
    fleet = Fleet(trucks=1, shift_start="06:00", shift_end="12:20", timezone="UTC")
    assert fleet.window_s(AS_OF, 60) == (0, 20 * 60)
    late_start = Fleet(trucks=1, shift_start="12:30", shift_end="22:00", timezone="UTC")
    assert late_start.window_s(AS_OF, 60) == (30 * 60, 60 * 60)
    overnight = Fleet(trucks=1, shift_start="22:00", shift_end="06:00", timezone="UTC")
    assert overnight.window_s(pd.Timestamp("2023-03-08T05:30Z"), 60) == (0, 30 * 60)


def test_the_time_limit_is_respected_on_a_large_instance() -> None:
    stations, forecast = random_city(400)
    fleet = Fleet(trucks=5, capacity=20, speed_kmh=25.0, service_min=2.0, shift_start="00:00", shift_end="24:00")
    params = PlanParams(time_limit_s=1.5)
    started = time.perf_counter()
    plan = make_plan(stations, forecast, fleet=fleet, params=params, as_of=AS_OF)
    wall = time.perf_counter() - started
    assert plan.summary.candidates > 50
    assert wall <= 1.5 + 1.0, f"plan took {wall:.2f} s for a 1.5 s limit"
    assert plan.summary.stockout_min_plan <= plan.summary.stockout_min_greedy + 1e-9
    assert not plan.routes().empty


def test_a_solve_without_the_improvement_stop_runs_to_the_limit_and_returns_feasible_routes() -> None:
    stations, forecast = random_city(300, seed=11)
    fleet = Fleet(trucks=4, capacity=15, speed_kmh=25.0, shift_start="00:00", shift_end="24:00")
    params = PlanParams(time_limit_s=1.0)
    curves = build_curves(stations, forecast, params.need)
    inst = build_instance(curves, fleet, window=(0, 3600), travel_cost=params.travel_cost)
    greedy = greedy_routes(inst)
    result = solve_routes(inst, time_limit_s=1.0, initial_routes=greedy, improvement_stop=False)
    assert 0.7 <= result.solve_s <= 1.6
    assert result.status == "time_limit" and result.warm_start
    inst.check_routes(result.routes)
    inst.check_routes(greedy)
    net = [a - inst.travel_cost * d for a, d in (inst.objective(result.routes), inst.objective(greedy))]
    assert net[0] >= net[1] - 1e-9


def test_check_routes_refuses_an_overloaded_truck() -> None:
    stations, forecast = hand_instance()
    params = exact_params()
    curves = build_curves(stations, forecast, params.need)
    inst = build_instance(curves, line_fleet(loads=(8,)), window=(0, 3600), travel_cost=0.01)
    full_a = next(n for n in range(inst.first_candidate, inst.size) if inst.qty[n] == 8)
    b_nodes = [n for n in range(inst.first_candidate, inst.size) if inst.qty[n] == 4 and n != full_a]
    with pytest.raises(ValueError, match="load"):
        inst.check_routes([[full_a, b_nodes[-1]]])
