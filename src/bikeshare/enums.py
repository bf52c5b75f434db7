"""The closed vocabularies shared by settings, the CLI, the registry and the endpoint.

``Target(x)`` / ``Alias(x)`` is the one check of a name: an unknown one raises a ``ValueError``
that says what was expected. Tuples of plain strings, for JSON keys and wire formats, are
``TARGET_NAMES`` and ``ALIAS_NAMES`` (orjson refuses ``str`` subclasses as dict keys).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Target(StrEnum):
    """What a 30-minute model predicts: the station out of bikes, or out of docks."""

    BIKES = "bikes"
    DOCKS = "docks"

    @classmethod
    def _missing_(cls, value: Any) -> Target:
        raise ValueError(f"unknown target {value!r}: expected {' or '.join(cls)}")


class Alias(StrEnum):
    """The registry aliases a model version can hold; production is served, staging is shadowed."""

    PRODUCTION = "production"
    STAGING = "staging"

    @classmethod
    def _missing_(cls, value: Any) -> Alias:
        raise ValueError(f"unknown alias {value!r}: expected {' or '.join(cls)}")


TARGET_NAMES: tuple[str, ...] = tuple(t.value for t in Target)
ALIAS_NAMES: tuple[str, ...] = tuple(a.value for a in Alias)
