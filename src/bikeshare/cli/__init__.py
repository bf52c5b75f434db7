"""The ``bikeshare`` command line: each command wires settings and the process's resources to one stage.

One module per command group; importing this package registers them all on :data:`app`, in the
order ``bikeshare --help`` lists them. Stage modules are imported inside the commands so that
``bikeshare --help`` stays fast.
"""

from __future__ import annotations

# ruff: noqa: I001  (registration order is the order of `bikeshare --help`)
from bikeshare.cli.app import app
from bikeshare.cli import lake, feeds, models, registry, serving, ops, rebalance, loop

__all__ = ["app", "feeds", "lake", "loop", "models", "ops", "rebalance", "registry", "serving"]
