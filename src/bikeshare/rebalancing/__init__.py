"""Rebalancing plans: station needs from forecasts, truck routes from OR-Tools, replay evaluation.

See docs/optimization_extension.md for the model, the objective, the assumptions and the limits.
Modules:

- :mod:`~bikeshare.rebalancing.forecast`: the forecast frame the planner reads, and the interim
  flow-profile forecaster (persistence plus the station's mean net flow at that time of day);
- :mod:`~bikeshare.rebalancing.need`: stockout probabilities, expected stockout minutes, needs;
- :mod:`~bikeshare.rebalancing.fleet`: trucks, depot, travel times, shift window;
- :mod:`~bikeshare.rebalancing.instance`: the candidate stops (station, quantity) and their values;
- :mod:`~bikeshare.rebalancing.greedy` and :mod:`~bikeshare.rebalancing.solver`: the two planners;
- :mod:`~bikeshare.rebalancing.plan`: one call from stations and forecasts to a :class:`Plan`;
- :mod:`~bikeshare.rebalancing.replay`: a plan applied to recorded counts;
- :mod:`~bikeshare.rebalancing.storage`: plans in the lake (``plans`` table).
"""
