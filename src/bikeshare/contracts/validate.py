"""Apply the data contract to normalised frames: batch verdicts plus per-row masks.

A status frame may hold many snapshots (one per ``last_updated``): the poller passes one, the
backfill a whole day at once, and both get the same verdicts because every rule is computed per
snapshot. Nothing is dropped: a row that breaks a row-level rule is kept with ``masked`` true.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from bikeshare.contracts.rules import (
    COUNT_COLUMNS,
    EXAMPLES_KEPT,
    INFORMATION_REQUIRED,
    STATUS_REQUIRED,
    BatchVerdict,
    ContractRules,
    MaskReason,
    RejectCode,
    Rejection,
)
from bikeshare.contracts.schemas import (
    FUTURE_CHECK,
    INFORMATION_DTYPES,
    STATUS_DTYPES,
    information_schema,
    status_schema,
)

MASK_ORDER: tuple[MaskReason, ...] = tuple(MaskReason)

WrongTypes = Mapping[str, Mapping[int, Any]]
"""Column -> {row position: raw value} of values present but not readable as the column's type
(:attr:`bikeshare.gbfs.normalise.Normalised.wrong_type`); those values are null in the frame."""


class ContractSchemaError(ValueError):
    """A frame whose columns cannot be read as the contract's types (names the column)."""


@dataclass
class StatusCheck:
    """Rows in canonical dtypes with ``masked``/``mask_reasons``, and one verdict per snapshot."""

    frame: pd.DataFrame
    verdicts: dict[pd.Timestamp, BatchVerdict]


@dataclass
class InformationCheck:
    """One station_information document: canonical rows and its verdict."""

    frame: pd.DataFrame
    verdict: BatchVerdict


def conform_frame(frame: pd.DataFrame, dtypes: Mapping[str, object], required: tuple[str, ...]) -> pd.DataFrame:
    """Cast to the contract's dtypes; absent optional columns become nulls.

    Raises :class:`ContractSchemaError` for an absent required column, a naive or non-time
    timestamp, or values that do not fit the type.
    """
    out: dict[str, pd.Series] = {}
    n = len(frame)
    index = pd.RangeIndex(n)
    for name, dtype in dtypes.items():
        if name not in frame.columns:
            if name in required or name == "last_updated":
                raise ContractSchemaError(f"required column {name!r} is absent (columns: {list(frame.columns)})")
            out[name] = pd.Series(pd.array([None] * n, dtype=dtype), index=index)
            continue
        column = frame[name].reset_index(drop=True)
        try:
            out[name] = _cast(column, dtype)
        except (TypeError, ValueError) as exc:
            raise ContractSchemaError(f"column {name!r} ({column.dtype}) cannot be read as {dtype}: {exc}") from exc
    return pd.DataFrame(out, index=index)


def _cast(column: pd.Series, dtype: object) -> pd.Series:
    if isinstance(dtype, pd.DatetimeTZDtype):
        if not isinstance(column.dtype, pd.DatetimeTZDtype):
            if column.isna().all():
                return pd.Series(pd.array([pd.NaT] * len(column), dtype=dtype), index=column.index)
            raise TypeError("timestamps must be timezone-aware UTC")
        return column.dt.tz_convert("UTC").dt.as_unit("us")
    if column.dtype == dtype:
        return column
    return column.astype(dtype)


def snapshot_time_rejection(
    published: pd.Timestamp, fetched_at: pd.Timestamp, rules: ContractRules, *, rows: int = 0
) -> Rejection | None:
    """``implausible_time`` when ``last_updated`` is far before or after the snapshot's fetch time.

    Older than ``max_snapshot_age_s`` before the fetch, or more than ``snapshot_future_skew_s``
    after it: a feed clock at 1970, 2001 or 2100 must not make partitions there. A replay or a
    backfill passes the fetch time the recording carries, so old recordings stay ingestible.
    """
    published, fetched_at = pd.Timestamp(published), pd.Timestamp(fetched_at)
    lead_s = (published - fetched_at).total_seconds()
    if -lead_s > rules.max_snapshot_age_s:
        where, limit = "before", rules.max_snapshot_age_s
    elif lead_s > rules.snapshot_future_skew_s:
        where, limit = "after", rules.snapshot_future_skew_s
    else:
        return None
    return Rejection(
        code=RejectCode.IMPLAUSIBLE_TIME,
        message=(
            f"last_updated {published.isoformat()} is {abs(lead_s):.0f}s {where} the fetch at "
            f"{fetched_at.isoformat()} (more than {limit:g}s)"
        ),
        field="last_updated",
        share=1.0,
        threshold=limit,
        count=rows,
    )


def check_station_status(
    status: pd.DataFrame,
    *,
    information: pd.DataFrame | None,
    rules: ContractRules,
    wrong_type: WrongTypes | None = None,
    fetched_at: pd.Timestamp | pd.Series | None = None,
) -> StatusCheck:
    """Judge every snapshot in ``status`` and mask its defective rows.

    ``information`` gives ``station_id`` and ``capacity`` of the stations in force; with a
    ``valid_from`` column it may hold several versions, and each snapshot is checked against the
    latest version with ``valid_from <= last_updated`` (the first version before that). ``None``
    means no station_information is known: unknown-station and capacity rules are skipped.
    ``wrong_type`` (rows by position) tells wrong types from missing values. ``fetched_at`` (one
    time, or one per row) adds :func:`snapshot_time_rejection` per snapshot.
    """
    frame = conform_frame(status, STATUS_DTYPES, STATUS_REQUIRED)
    n = len(frame)
    if n == 0:
        return StatusCheck(frame=_with_masks(frame, np.zeros(0, dtype=np.int64)), verdicts={})

    group, published = pd.factorize(frame["last_updated"], sort=True)
    groups = len(published)
    rows_per_group = np.bincount(group, minlength=groups)

    def per_group(flags: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=flags.astype(np.float64), minlength=groups).astype(np.int64)

    station_ids = frame["station_id"]
    has_id = station_ids.notna().to_numpy()
    wrong = _wrong_type_flags(wrong_type, frame.columns, n)
    no_flag = np.zeros(n, dtype=bool)
    missing = {c: frame[c].isna().to_numpy() & ~wrong.get(c, no_flag) for c in STATUS_REQUIRED}
    lag = frame["last_updated"] - frame["last_reported"]
    flags: dict[MaskReason, np.ndarray] = {
        MaskReason.MISSING_STATION_ID: missing["station_id"],
        MaskReason.MISSING_BIKES: missing["bikes"],
        MaskReason.MISSING_DOCKS: missing["docks"],
        MaskReason.MISSING_LAST_REPORTED: missing["last_reported"],
        MaskReason.WRONG_TYPE: np.logical_or.reduce([no_flag, *wrong.values()]),
        MaskReason.DUPLICATE: frame.duplicated(["last_updated", "station_id"]).to_numpy() & has_id,
        MaskReason.STALE: (lag > pd.Timedelta(seconds=rules.stale_report_s)).fillna(False).to_numpy(bool),
        MaskReason.NOT_INSTALLED: frame["is_installed"].eq(False).fillna(False).to_numpy(bool),
        MaskReason.NOT_RENTING: frame["is_renting"].eq(False).fillna(False).to_numpy(bool),
    }
    checked_capacity = np.zeros(n, dtype=bool)
    if information is not None:
        capacity, known = _capacity_in_force(frame, information)
        flags[MaskReason.UNKNOWN_STATION] = has_id & ~known
        total = (frame["bikes"].astype("Int64") + frame["docks"].astype("Int64")).to_numpy(
            dtype="float64", na_value=np.nan
        )
        checked_capacity = ~np.isnan(capacity) & ~np.isnan(total)
        with np.errstate(invalid="ignore"):
            flags[MaskReason.OVER_CAPACITY] = checked_capacity & (total > capacity + rules.capacity_slack)

    broken = _pandera_failures(frame, status_schema(rules), n)
    rejections: dict[int, list[Rejection]] = {}

    def reject(flag: np.ndarray, make: Callable[[int, int], Rejection]) -> None:
        """Add ``make(group, count)`` to every snapshot in which ``flag`` holds for some row."""
        counts = per_group(flag)
        for g in np.flatnonzero(counts):
            rejections.setdefault(int(g), []).append(make(int(g), int(counts[g])))

    def examples(flag: np.ndarray, g: int) -> tuple[str, ...]:
        rows = np.flatnonzero(flag & (group == g) & has_id)[:EXAMPLES_KEPT]
        return tuple(str(s) for s in station_ids.iloc[rows])

    if fetched_at is not None:
        fetched = _fetched_per_group(fetched_at, group, groups)
        for g in range(groups):
            late_or_early = snapshot_time_rejection(
                pd.Timestamp(published[g]), fetched[g], rules, rows=int(rows_per_group[g])
            )
            if late_or_early is not None:
                rejections.setdefault(g, []).append(late_or_early)
    for column, flag in wrong.items():
        share = per_group(flag) / rows_per_group
        reject(
            (share > rules.max_missing_frac)[group] & flag,
            lambda g, c, column=column, flag=flag, share=share: _wrong_type_rejection(
                column,
                share=float(share[g]),
                count=c,
                threshold=rules.max_missing_frac,
                examples=examples(flag, g),
                values=_wrong_values(wrong_type, column, np.flatnonzero(flag & (group == g))),
            ),
        )
    for column in STATUS_REQUIRED:
        share = per_group(missing[column]) / rows_per_group
        too_many = (share > rules.max_missing_frac)[group] & missing[column]
        reject(
            too_many,
            lambda g, c, column=column, share=share: Rejection(
                code=RejectCode.MISSING_REQUIRED,
                message=f"{share[g]:.1%} of {column} is missing (more than {rules.max_missing_frac:.1%})",
                field=column,
                share=float(share[g]),
                threshold=rules.max_missing_frac,
                count=c,
                examples=examples(missing[column], g),
            ),
        )
    for column in COUNT_COLUMNS:
        flag = broken.get(column, np.zeros(n, dtype=bool))
        reject(
            flag,
            lambda g, c, column=column, flag=flag: Rejection(
                code=RejectCode.NEGATIVE_COUNT,
                message=f"{c} station(s) report a negative {column}",
                field=column,
                share=c / float(rows_per_group[g]),
                threshold=0.0,
                count=c,
                examples=examples(flag, g),
            ),
        )
    future = broken.get(FUTURE_CHECK, np.zeros(n, dtype=bool))
    reject(
        future,
        lambda g, c: Rejection(
            code=RejectCode.FUTURE_LAST_REPORTED,
            message=f"{c} station(s) report last_reported more than {rules.future_skew_s:g}s after last_updated",
            field="last_reported",
            share=c / float(rows_per_group[g]),
            threshold=rules.future_skew_s,
            count=c,
            examples=examples(future, g),
        ),
    )
    if information is not None:
        over = flags[MaskReason.OVER_CAPACITY]
        over_share = per_group(over) / np.maximum(per_group(checked_capacity), 1)
        too_many_over = over & (over_share > rules.max_over_capacity_frac)[group]
        reject(
            too_many_over,
            lambda g, c: Rejection(
                code=RejectCode.OVER_CAPACITY,
                message=(
                    f"{over_share[g]:.1%} of stations have bikes + docks > capacity + {rules.capacity_slack} "
                    f"(more than {rules.max_over_capacity_frac:.1%})"
                ),
                field="bikes+docks",
                share=float(over_share[g]),
                threshold=rules.max_over_capacity_frac,
                count=c,
                examples=examples(over, g),
            ),
        )

    bits = np.zeros(n, dtype=np.int64)
    for position, reason in enumerate(MASK_ORDER):
        if reason in flags:
            bits |= flags[reason].astype(np.int64) << position
    masked_counts = {reason: per_group(flag) for reason, flag in flags.items()}
    rows_masked = per_group(bits != 0)

    verdicts: dict[pd.Timestamp, BatchVerdict] = {}
    for g in range(groups):
        published_at = pd.Timestamp(published[g])
        verdicts[published_at] = BatchVerdict(
            published_at=published_at,
            rows_in=int(rows_per_group[g]),
            rows_masked=int(rows_masked[g]),
            masked_by_reason={str(r): int(c[g]) for r, c in masked_counts.items() if c[g]},
            rejections=rejections.get(g, []),
        )
    return StatusCheck(frame=_with_masks(frame, bits), verdicts=verdicts)


def empty_verdict(published_at: pd.Timestamp) -> BatchVerdict:
    """The verdict on a document that lists no stations at all."""
    return BatchVerdict(
        published_at=published_at,
        rows_in=0,
        rejections=[Rejection(code=RejectCode.EMPTY, message="the document lists no stations", count=0)],
    )


def check_station_information(
    information: pd.DataFrame, *, rules: ContractRules, wrong_type: WrongTypes | None = None
) -> InformationCheck:
    """Judge one station_information document (one version of the dimension)."""
    checks = check_information_versions(information, rules=rules, wrong_type=wrong_type)
    if not checks:
        published = pd.Timestamp(information["last_updated"].iloc[0]) if len(information) else pd.NaT
        frame = conform_frame(information, INFORMATION_DTYPES, INFORMATION_REQUIRED)
        return InformationCheck(frame=frame, verdict=empty_verdict(published))
    if len(checks) > 1:
        raise ContractSchemaError(f"one station_information document has {len(checks)} last_updated values")
    return checks[0]


def check_information_versions(
    information: pd.DataFrame, *, rules: ContractRules, wrong_type: WrongTypes | None = None
) -> list[InformationCheck]:
    """Judge many station_information versions at once (one per ``last_updated``), in time order.

    The Pandera pass runs once over all rows, which is what makes the backfill of a month of
    versions cheap; every rule is then judged per version.
    """
    frame = conform_frame(information, INFORMATION_DTYPES, INFORMATION_REQUIRED)
    if frame.empty:
        return []
    broken = _pandera_failures(frame, information_schema(), len(frame))
    wrong = _wrong_type_flags(wrong_type, frame.columns, len(frame))
    group, published = pd.factorize(frame["last_updated"], sort=True)
    out: list[InformationCheck] = []
    for g, published_at in enumerate(published):
        rows = np.flatnonzero(group == g)
        part = frame.iloc[rows].reset_index(drop=True)
        part_broken = {k: v[rows] for k, v in broken.items()}
        part_wrong = {
            column: (flag[rows], _wrong_values(wrong_type, column, rows[flag[rows]]))
            for column, flag in wrong.items()
            if flag[rows].any()
        }
        verdict = BatchVerdict(
            published_at=pd.Timestamp(published_at),
            rows_in=len(part),
            rejections=_information_rejections(part, part_broken, part_wrong, rules),
        )
        out.append(InformationCheck(frame=part, verdict=verdict))
    return out


def _information_rejections(
    frame: pd.DataFrame,
    broken: dict[str, np.ndarray],
    wrong: dict[str, tuple[np.ndarray, tuple[str, ...]]],
    rules: ContractRules,
) -> list[Rejection]:
    ids = frame["station_id"]

    def examples(flag: np.ndarray) -> tuple[str, ...]:
        return tuple(str(s) for s in ids[flag & ids.notna().to_numpy()].head(EXAMPLES_KEPT))

    rejections: list[Rejection] = []
    for column, (flag, values) in wrong.items():
        if flag.mean() > rules.max_missing_frac:
            rejections.append(
                _wrong_type_rejection(
                    column,
                    share=float(flag.mean()),
                    count=int(flag.sum()),
                    threshold=rules.max_missing_frac,
                    examples=examples(flag),
                    values=values,
                )
            )
    for column in INFORMATION_REQUIRED:
        flag = frame[column].isna().to_numpy()
        if column in wrong:
            flag = flag & ~wrong[column][0]
        share = flag.mean()
        if share > rules.max_missing_frac:
            rejections.append(
                Rejection(
                    code=RejectCode.MISSING_REQUIRED,
                    message=f"{share:.1%} of {column} is missing (more than {rules.max_missing_frac:.1%})",
                    field=column,
                    share=float(share),
                    threshold=rules.max_missing_frac,
                    count=int(flag.sum()),
                    examples=examples(flag),
                )
            )
    for column, code, what in (
        ("lat", RejectCode.COORDINATES, "a latitude outside [-90, 90]"),
        ("lon", RejectCode.COORDINATES, "a longitude outside [-180, 180]"),
        ("capacity", RejectCode.NEGATIVE_CAPACITY, "a negative capacity"),
    ):
        flag = broken.get(column)
        if flag is not None and flag.any():
            rejections.append(
                Rejection(
                    code=code,
                    message=f"{int(flag.sum())} station(s) have {what}",
                    field=column,
                    share=float(flag.mean()),
                    threshold=0.0,
                    count=int(flag.sum()),
                    examples=examples(flag),
                )
            )
    duplicated = (ids.duplicated(keep=False) & ids.notna()).to_numpy()
    if duplicated.any():
        rejections.append(
            Rejection(
                code=RejectCode.DUPLICATE_STATION,
                message=f"{int(duplicated.sum())} rows share a station_id",
                field="station_id",
                share=float(duplicated.mean()),
                threshold=0.0,
                count=int(duplicated.sum()),
                examples=examples(duplicated),
            )
        )
    return rejections


def _wrong_type_flags(wrong_type: WrongTypes | None, columns: pd.Index, n: int) -> dict[str, np.ndarray]:
    """Row flags per column (in frame order) of the values that had the wrong type."""
    out: dict[str, np.ndarray] = {}
    for column in columns:
        rows = (wrong_type or {}).get(column)
        if rows:
            flag = np.zeros(n, dtype=bool)
            flag[np.fromiter(rows.keys(), dtype=np.int64, count=len(rows))] = True
            out[str(column)] = flag
    return out


def _wrong_values(wrong_type: WrongTypes | None, column: str, rows: np.ndarray) -> tuple[str, ...]:
    """Up to EXAMPLES_KEPT distinct offending values of ``column`` at ``rows``, as JSON text."""
    raw = (wrong_type or {}).get(column, {})
    seen: dict[str, None] = {}
    for row in rows:
        seen.setdefault(json.dumps(raw.get(int(row)), default=str), None)
        if len(seen) >= EXAMPLES_KEPT:
            break
    return tuple(seen)


def _wrong_type_rejection(
    column: str, *, share: float, count: int, threshold: float, examples: tuple[str, ...], values: tuple[str, ...]
) -> Rejection:
    example = f"e.g. {values[0]}; " if values else ""
    return Rejection(
        code=RejectCode.WRONG_TYPE,
        message=f"{share:.1%} of {column} has the wrong type ({example}more than {threshold:.1%})",
        field=column,
        share=share,
        threshold=threshold,
        count=count,
        examples=examples,
        values=values,
    )


def _fetched_per_group(fetched_at: pd.Timestamp | pd.Series, group: np.ndarray, groups: int) -> list[pd.Timestamp]:
    """The fetch time of each snapshot (its first row's, when given per row)."""
    if not isinstance(fetched_at, pd.Series):
        return [pd.Timestamp(fetched_at)] * groups
    values = pd.to_datetime(fetched_at.reset_index(drop=True), utc=True)
    _, first = np.unique(group, return_index=True)
    return [pd.Timestamp(values.iloc[i]) for i in first]


def _pandera_failures(frame: pd.DataFrame, schema: pa.DataFrameSchema, n: int) -> dict[str, np.ndarray]:
    """Run the schema lazily; map each failing column (or wide check name) to a row mask."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        out: dict[str, np.ndarray] = {}
        located = cases[cases["index"].notna()]
        unlocated = cases[cases["index"].isna()]
        if len(unlocated):
            first = unlocated.iloc[0]
            raise ContractSchemaError(
                f"{schema.name}: column {first['column']!r} fails {first['check']!r} ({first['failure_case']!r})"
            ) from exc
        keys = located["column"].where(located["schema_context"] == "Column", located["check"])
        for key, rows in located.groupby(keys):
            flag = np.zeros(n, dtype=bool)
            flag[rows["index"].astype(np.int64).to_numpy()] = True
            out[str(key)] = flag
        return out
    return {}


def _capacity_in_force(frame: pd.DataFrame, information: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Capacity (NaN when unknown) and whether the station is known, per status row."""
    info = information.reset_index(drop=True)
    if "valid_from" in info.columns and info["valid_from"].nunique() > 1:
        valid_from = _naive_utc(pd.to_datetime(info["valid_from"], utc=True))
        starts = np.unique(valid_from)
        version_of_info = np.searchsorted(starts, valid_from)
        position = np.searchsorted(starts, _naive_utc(frame["last_updated"]), side="right") - 1
        version_of_row = np.clip(position, 0, len(starts) - 1)
    else:
        version_of_info = np.zeros(len(info), dtype=np.int64)
        version_of_row = np.zeros(len(frame), dtype=np.int64)
    right = pd.DataFrame(
        {
            "version": version_of_info,
            "station_id": info["station_id"].astype("string"),
            "capacity": pd.to_numeric(info["capacity"], errors="coerce").astype("float64"),
            "known": True,
        }
    ).drop_duplicates(["version", "station_id"])
    left = pd.DataFrame({"version": version_of_row, "station_id": frame["station_id"]})
    joined = left.merge(right, on=["version", "station_id"], how="left", sort=False)
    return joined["capacity"].to_numpy(dtype="float64", na_value=np.nan), joined["known"].eq(True).to_numpy(bool)


def _with_masks(frame: pd.DataFrame, bits: np.ndarray) -> pd.DataFrame:
    """Add ``masked`` and ``mask_reasons`` ("stale,not_renting", null when clean)."""
    labels: dict[int, str | None] = {0: None}
    for value in np.unique(bits):
        if value:
            labels[int(value)] = ",".join(str(r) for i, r in enumerate(MASK_ORDER) if value >> i & 1)
    out = frame.copy()
    out["masked"] = pd.array(bits != 0, dtype="boolean")
    out["mask_reasons"] = pd.array(pd.Series(bits).map(labels).to_numpy(), dtype="string")
    return out


def _naive_utc(values: pd.Series) -> np.ndarray:
    """datetime64[us] values of a UTC series (fast to sort and search, unlike Timestamp objects)."""
    return values.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("us").to_numpy()
