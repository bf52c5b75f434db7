"""OR-Tools routing: a prize-collecting, one-commodity pickup-and-delivery problem with open routes.

Model (costs in integer units, ``SCALE`` units = one expected stockout station-minute):

- every candidate stop is optional; the candidates of one station form a disjunction (at most one is
  visited) whose penalty, paid when none is visited, is the station's best value at minute 0, V;
- visiting candidate i costs ``V - v_i(0)`` (what it gives up against the station's best candidate)
  plus ``w_i x max(0, a_i - t_i)`` (a soft upper bound on its arrival minute ``a_i``: a least-squares
  fit of how its value decays with a later arrival);
- every driving minute costs ``travel_cost`` x SCALE;
- a "load" dimension (0..capacity, start = the truck's load) moves by -quantity at each stop;
- a "time" dimension (seconds) holds driving plus service times inside the shift window.

So the solver minimises ``sum(missed values) + sum(lateness losses) + lambda x driving minutes``,
which is the same as maximising ``avoided stockout minutes - lambda x driving minutes`` up to a
constant, apart from the linear fit of the arrival-time loss. The search starts from a given solution
(the greedy routes) and runs guided local search until the time limit, or earlier when it stalls.
Every solution it passes through is re-scored with the exact step values, and the best one by that
exact objective is returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bikeshare.rebalancing.instance import Instance

SCALE = 6000  # cost units per expected stockout station-minute (100 per station-second)
# OR-Tools' improvement limit: stop guided local search once the objective improves this slowly
# (smaller stops sooner). The time limit still caps every solve.
IMPROVEMENT_RATE = 1e-4
IMPROVEMENT_DISTANCE = 5
# ... and stop it once the exact objective has not improved for this share of the time limit.
STALL_SHARE = 0.25


@dataclass(frozen=True)
class SolveResult:
    """Routes found by OR-Tools and how the search ended."""

    routes: list[list[int]]
    status: str  # optimal | converged | time_limit | no_solution | empty
    solve_s: float
    objective: int | None
    warm_start: bool
    best_found_s: float = 0.0  # seconds into the solve when the returned routes were found
    solutions: int = 0  # solutions the search passed through


def decay_fit(inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """Per node, (t0 seconds, w value-minutes per minute) of ``loss(a) = w * max(0, a - t0)``.

    Fitted by least squares to ``v(0) - v(a)`` at the midpoints of the arrival samples.
    """
    k_count = inst.avoided.shape[1] - 1
    step = inst.step_s
    mid_min = (np.arange(k_count + 1) * step + step / 2) / 60.0
    t0 = np.zeros(inst.size)
    w = np.zeros(inst.size)
    for node in range(inst.first_candidate, inst.size):
        curve = inst.avoided[node]
        if curve[0] <= 0:
            continue
        loss = curve[0] - curve
        best_err, best_t, best_w = np.inf, 0.0, 0.0
        for m in range(k_count + 1):
            start = m * step / 60.0
            x = np.maximum(0.0, mid_min - start)
            denom = float(x @ x)
            slope = float(x @ loss) / denom if denom > 0 else 0.0
            slope = max(slope, 0.0)
            err = float(((loss - slope * x) ** 2).sum())
            if err < best_err - 1e-12:
                best_err, best_t, best_w = err, start, slope
        t0[node], w[node] = best_t * 60.0, best_w
    return t0, w


def solve_routes(
    inst: Instance,
    *,
    time_limit_s: float,
    initial_routes: list[list[int]] | None = None,
    improvement_stop: bool = True,
    stall_s: float | None = None,
) -> SolveResult:
    """Best routes OR-Tools finds within ``time_limit_s`` (wall clock, model building included).

    With ``improvement_stop`` the search also ends when it stalls: OR-Tools' improvement-rate limit,
    or no better exact objective for ``stall_s`` seconds (default: a quarter of the time limit).
    """
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    started = time.perf_counter()
    if inst.size <= inst.first_candidate:
        return SolveResult([[] for _ in range(inst.trucks)], "empty", 0.0, 0, warm_start=False)
    n, trucks, end = inst.size, inst.trucks, inst.end_node
    manager = pywrapcp.RoutingIndexManager(n, trucks, list(range(trucks)), [end] * trucks)
    routing = pywrapcp.RoutingModel(manager)

    value0 = inst.avoided[:, 0]
    penalty = np.zeros(n)
    groups: dict[int, list[int]] = {}
    for node in range(inst.first_candidate, n):
        groups.setdefault(int(inst.group[node]), []).append(node)
    for nodes in groups.values():
        penalty[nodes] = max(0.0, float(value0[nodes].max()))
    unary = np.where(np.arange(n) >= inst.first_candidate, penalty - value0, 0.0)
    per_second = inst.travel_cost * SCALE / 60.0
    cost = np.rint(inst.travel_s * per_second + unary[:, None] * SCALE).astype("int64")
    cost_cb = routing.RegisterTransitMatrix(cost.tolist())
    routing.SetArcCostEvaluatorOfAllVehicles(cost_cb)

    span = inst.travel_s + inst.service_s[:, None]
    time_cb = routing.RegisterTransitMatrix(span.astype("int64").tolist())
    routing.AddDimension(time_cb, 0, int(inst.window[1]), False, "time")
    time_dim = routing.GetDimensionOrDie("time")
    load_cb = routing.RegisterUnaryTransitVector((-inst.qty).astype("int64").tolist())
    routing.AddDimension(load_cb, 0, int(inst.fleet.capacity), False, "load")
    load_dim = routing.GetDimensionOrDie("load")
    for truck in range(trucks):
        start = routing.Start(truck)
        time_dim.CumulVar(start).SetValue(int(inst.window[0]))
        load_dim.CumulVar(start).SetValue(int(inst.start_loads[truck]))

    t0, w = decay_fit(inst)
    for nodes in groups.values():
        indices = [manager.NodeToIndex(node) for node in nodes]
        routing.AddDisjunction(indices, round(penalty[nodes[0]] * SCALE), 1)
        for node, index in zip(nodes, indices, strict=True):
            coef = round(w[node] * SCALE / 60.0)
            if coef > 0:
                time_dim.SetCumulVarSoftUpperBound(index, int(t0[node]), coef)

    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    remaining = max(0.05, time_limit_s - (time.perf_counter() - started))
    params.time_limit.FromMilliseconds(int(remaining * 1000))
    if improvement_stop:
        params.improvement_limit_parameters.improvement_rate_coefficient = IMPROVEMENT_RATE
        params.improvement_limit_parameters.improvement_rate_solutions_distance = IMPROVEMENT_DISTANCE
    routing.CloseModelWithParameters(params)

    # Every solution the search passes through is re-scored with the exact step values; the best one
    # by that exact objective is returned (the solver itself sees the linear decay approximation).
    best: dict[str, object] = {"net": -np.inf, "routes": None, "at": 0.0}
    seen = [0]
    stalled = [False]

    def _current_routes() -> list[list[int]]:
        out: list[list[int]] = []
        for truck in range(trucks):
            route: list[int] = []
            index = routing.NextVar(routing.Start(truck)).Value()
            while not routing.IsEnd(index):
                route.append(manager.IndexToNode(index))
                index = routing.NextVar(index).Value()
            out.append(route)
        return out

    stall_s = STALL_SHARE * time_limit_s if stall_s is None else stall_s

    def _record() -> None:
        seen[0] += 1
        routes = _current_routes()
        avoided, drive = inst.objective(routes)
        net = avoided - inst.travel_cost * drive
        now = time.perf_counter() - started
        if net > float(best["net"]) + 1e-9:  # type: ignore[arg-type]
            best.update(net=net, routes=routes, at=now)
        elif improvement_stop and now - float(best["at"]) > stall_s:  # type: ignore[arg-type]
            stalled[0] = True
            routing.solver().FinishCurrentSearch()

    routing.AddAtSolutionCallback(_record)
    warm = False
    solution = None
    if initial_routes and any(initial_routes):
        index_routes = [[manager.NodeToIndex(node) for node in route] for route in initial_routes]
        initial = routing.ReadAssignmentFromRoutes(index_routes, True)
        if initial is not None:
            warm = True
            solution = routing.SolveFromAssignmentWithParameters(initial, params)
    if solution is None:
        solution = routing.SolveWithParameters(params)
    elapsed = time.perf_counter() - started
    if solution is None or best["routes"] is None:
        return SolveResult([[] for _ in range(trucks)], "no_solution", elapsed, None, warm_start=warm)
    status = "converged" if stalled[0] else _status_name(routing.status(), elapsed, time_limit_s)
    return SolveResult(
        best["routes"],  # type: ignore[arg-type]
        status,
        elapsed,
        solution.ObjectiveValue(),
        warm,
        best_found_s=float(best["at"]),  # type: ignore[arg-type]
        solutions=seen[0],
    )


def _status_name(status: int, elapsed: float, limit: float) -> str:
    from ortools.constraint_solver import routing_enums_pb2

    codes = routing_enums_pb2.RoutingSearchStatus
    if status == codes.ROUTING_OPTIMAL:
        return "optimal"
    if status == codes.ROUTING_PARTIAL_SUCCESS_LOCAL_OPTIMUM_NOT_REACHED or elapsed >= 0.98 * limit:
        return "time_limit"
    return "converged"
