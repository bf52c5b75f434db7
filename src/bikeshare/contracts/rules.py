"""Thresholds, reason codes and verdict records of the data contract."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd
import pyarrow as pa

from bikeshare.lake.tables import STATION_STATUS
from bikeshare.settings import Settings

EXAMPLES_KEPT = 5  # example station ids named in a rejection


class RejectCode(StrEnum):
    """Why a whole batch was quarantined (the ``reason_code`` of the quarantine table)."""

    MALFORMED_JSON = "malformed_json"  # the body is not JSON
    FEED_FORMAT = "feed_format"  # JSON, but not a GBFS document of its kind
    SCHEMA = "schema"  # a normalised column is absent or of the wrong type
    IMPLAUSIBLE_TIME = "implausible_time"  # last_updated far before or after the fetch time
    EMPTY = "empty_batch"  # no stations at all
    WRONG_TYPE = "wrong_type"  # too large a share of a field is present but of the wrong type
    MISSING_REQUIRED = "missing_required"  # too large a share of a required field is missing
    NEGATIVE_COUNT = "negative_count"  # a count below zero
    COORDINATES = "coordinates_out_of_range"  # lat outside [-90, 90] or lon outside [-180, 180]
    NEGATIVE_CAPACITY = "negative_capacity"
    FUTURE_LAST_REPORTED = "future_last_reported"  # last_reported ahead of last_updated beyond the skew
    OVER_CAPACITY = "over_capacity"  # too many stations with bikes + docks above capacity + slack
    DUPLICATE_STATION = "duplicate_station"  # station_information names a station twice
    INGEST_ERROR = "ingest_error"  # normalisation or the contract failed unexpectedly on this payload


class MaskReason(StrEnum):
    """Why a row is kept but masked (``mask_reasons`` lists them comma-separated, in this order)."""

    MISSING_STATION_ID = "missing_station_id"
    MISSING_BIKES = "missing_bikes"
    MISSING_DOCKS = "missing_docks"
    MISSING_LAST_REPORTED = "missing_last_reported"
    WRONG_TYPE = "wrong_type"  # some field present but not readable as its type
    DUPLICATE = "duplicate"  # a second row for the same station in one snapshot
    STALE = "stale"
    NOT_INSTALLED = "not_installed"
    NOT_RENTING = "not_renting"
    UNKNOWN_STATION = "unknown_station"
    OVER_CAPACITY = "over_capacity"


STATUS_REQUIRED: tuple[str, ...] = ("station_id", "bikes", "docks", "last_reported")
INFORMATION_REQUIRED: tuple[str, ...] = ("station_id", "name", "capacity", "lat", "lon")
COUNT_COLUMNS: tuple[str, ...] = STATION_STATUS.feed_columns_of(pa.int32())  # a negative one rejects


@dataclass(frozen=True)
class ContractRules:
    """The contract's thresholds, taken from :class:`~bikeshare.settings.Settings`."""

    max_missing_frac: float = 0.05
    capacity_slack: int = 5
    max_over_capacity_frac: float = 0.05
    future_skew_s: float = 300.0
    stale_report_s: float = 3600.0
    max_snapshot_age_s: float = 86400.0
    snapshot_future_skew_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ContractRules:
        return cls(
            max_missing_frac=settings.contract_max_missing_frac,
            capacity_slack=settings.contract_capacity_slack,
            max_over_capacity_frac=settings.contract_max_over_capacity_frac,
            future_skew_s=settings.contract_future_skew_s,
            stale_report_s=settings.stale_report_s,
            max_snapshot_age_s=settings.contract_max_snapshot_age_s,
            snapshot_future_skew_s=settings.contract_snapshot_future_skew_s,
        )


@dataclass(frozen=True)
class Rejection:
    """One broken batch-level rule, with enough detail to act on without the payload."""

    code: RejectCode
    message: str
    field: str | None = None
    share: float | None = None
    threshold: float | None = None
    count: int | None = None
    examples: tuple[str, ...] = ()
    values: tuple[str, ...] = ()  # offending values as JSON text (wrong_type), up to EXAMPLES_KEPT

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["code"] = str(self.code)
        out["examples"] = list(self.examples)
        out["values"] = list(self.values) or None
        return {k: v for k, v in out.items() if v is not None}


def rejection_json(rejections: list[Rejection], **context: Any) -> str:
    """The quarantine ``reason`` column: every broken rule plus context (feed, version, ...)."""
    return json.dumps({**context, "rejections": [r.to_dict() for r in rejections]}, default=str, sort_keys=True)


@dataclass
class BatchVerdict:
    """The contract's verdict on one snapshot (one ``last_updated``) of a feed."""

    published_at: pd.Timestamp
    rows_in: int
    rows_masked: int = 0
    masked_by_reason: dict[str, int] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.rejections

    @property
    def row_pass_rate(self) -> float | None:
        """Share of rows written unmasked; None for an empty batch."""
        if self.rows_in == 0:
            return None
        return (self.rows_in - self.rows_masked) / self.rows_in

    @property
    def reason_code(self) -> str | None:
        return str(self.rejections[0].code) if self.rejections else None
