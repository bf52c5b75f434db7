"""The greedy baseline: each truck in turn takes the best next move by net value per minute.

Rule, repeated until no truck has a move with positive net value:

1. the truck that is free earliest chooses next;
2. a move is either one candidate stop that its load allows, or a helper stop followed by a
   candidate stop (fetch bikes from a nearby in-band station before a delivery, or drop bikes there
   before a pickup), when the load does not allow the candidate directly;
3. net value = avoided expected stockout minutes at the times the truck would arrive (the same exact
   step values the plan is scored with) minus ``travel_cost`` x driving minutes;
4. the truck takes the move with the highest net value per minute of truck time (driving plus
   service), if that net value is positive and the truck finishes within the shift window; else it
   stops for this plan.

It uses the same candidates, values, loads and time window as the solver, so both plans are
directly comparable; it looks one move ahead and never revisits a choice.
"""

from __future__ import annotations

from bikeshare.rebalancing.instance import Instance


def greedy_routes(inst: Instance) -> list[list[int]]:
    """Routes (candidate node lists, one per truck) chosen by the greedy rule above."""
    trucks = inst.trucks
    routes: list[list[int]] = [[] for _ in range(trucks)]
    here = list(range(trucks))
    time = [inst.window[0]] * trucks  # arrival time at ``here``
    load = list(inst.start_loads)
    active = [True] * trucks
    served: set[int] = set()
    capacity = inst.fleet.capacity
    end = inst.window[1]
    candidates = range(inst.first_candidate, inst.size)
    lam = inst.travel_cost

    def fits(node: int, on_board: int) -> bool:
        return 0 <= on_board - int(inst.qty[node]) <= capacity

    while any(active):
        truck = min((i for i in range(trucks) if active[i]), key=lambda i: (time[i], i))
        leave = time[truck] + int(inst.service_s[here[truck]])
        best: tuple[float, list[int]] | None = None
        for node in candidates:
            group = int(inst.group[node])
            if group in served:
                continue
            if fits(node, load[truck]):
                drive = int(inst.travel_s[here[truck], node])
                arrive = leave + drive
                done = arrive + int(inst.service_s[node])
                if done > end:
                    continue
                gain = inst.value(node, arrive) - lam * drive / 60.0
                score = gain / max((done - time[truck]) / 60.0, 1e-6)
                if gain > 1e-9 and (best is None or score > best[0]):
                    best = (score, [node])
                continue
            for helper in inst.helpers.get(node, ()):
                if int(inst.group[helper]) in served or int(inst.group[helper]) == group:
                    continue
                if not fits(helper, load[truck]) or not fits(node, load[truck] - int(inst.qty[helper])):
                    continue
                drive1 = int(inst.travel_s[here[truck], helper])
                arrive1 = leave + drive1
                drive2 = int(inst.travel_s[helper, node])
                arrive2 = arrive1 + int(inst.service_s[helper]) + drive2
                done = arrive2 + int(inst.service_s[node])
                if done > end:
                    continue
                gain = inst.value(helper, arrive1) + inst.value(node, arrive2) - lam * (drive1 + drive2) / 60.0
                score = gain / max((done - time[truck]) / 60.0, 1e-6)
                if gain > 1e-9 and (best is None or score > best[0]):
                    best = (score, [helper, node])
        if best is None:
            active[truck] = False
            continue
        for node in best[1]:
            leave = time[truck] + int(inst.service_s[here[truck]])
            time[truck] = leave + int(inst.travel_s[here[truck], node])
            load[truck] -= int(inst.qty[node])
            here[truck] = node
            served.add(int(inst.group[node]))
            routes[truck].append(node)
    return routes
