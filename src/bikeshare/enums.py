"""The closed vocabularies shared by settings, the CLI, the registry and the endpoint."""

from __future__ import annotations

from enum import StrEnum


class Target(StrEnum):
    """What a 30-minute model predicts: the station out of bikes, or out of docks."""

    BIKES = "bikes"
    DOCKS = "docks"


class Alias(StrEnum):
    """The registry aliases a model version can hold; production is served, staging is shadowed."""

    PRODUCTION = "production"
    STAGING = "staging"
