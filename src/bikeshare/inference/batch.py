"""The batch scoring job: features of the latest slot -> one endpoint call -> the ``inference`` table.

Each run takes ``now`` from a clock (the wall clock, or a replay server's virtual clock), builds the
features of the latest grid slot with :func:`~bikeshare.features.build.online_features` (the same SQL
as offline), leaves out the stations whose latest snapshot the data contract masked, and sends all
the others to the endpoint in ONE ``split`` request per alias. The answer becomes long rows (station
x target x horizon x alias) written as one Parquet file per slot and alias, atomically; a slot and
alias already in the lake is not scored again. Every run appends its outcome to
``inference_batches`` (ok, failed or skipped, with timings, counts and the error), from which the
batch success rate is computed. A run never raises for an endpoint or feature failure: it records
``failed`` and writes no prediction file.

The served alias's slot is also sent to the forecast route; that call's outcome is recorded beside
the batch's (``forecast_status``, ``forecast_error``). A run of a slot already scored whose
forecasts are missing (the forecast call failed) asks the forecast route again, and only it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from bikeshare.enums import ALIAS_NAMES, Alias
from bikeshare.inference.endpoint_client import (
    NO_FORECAST_MODEL,
    NO_MODEL,
    EndpointClient,
    EndpointError,
    ForecastAnswer,
    Invocation,
    split_payload,
)
from bikeshare.inference.snapshots import latest_status, stations_in_force
from bikeshare.lake.store import Lake, partition_value
from bikeshare.lake.tables import FEATURES, FORECASTS, INFERENCE, INFERENCE_BATCHES, Grain
from bikeshare.settings import Settings
from bikeshare.utc import to_utc

log = logging.getLogger(__name__)

ALIASES: tuple[str, ...] = ALIAS_NAMES
# Columns of the features table that are not model inputs.
NOT_MODEL_INPUTS: frozenset[str] = frozenset({"station_id", "slot", "bikes_t_h", "docks_t_h", "y_bikes", "y_docks"})


class Status:
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


def model_input_columns() -> tuple[str, ...]:
    """The feature columns sent to the endpoint (every feature of the ``features`` table, in order)."""
    return tuple(name for name in FEATURES.schema.names if name not in NOT_MODEL_INPUTS)


@dataclass(frozen=True)
class BatchRecord:
    """One alias's outcome of an inference run: a row of ``inference_batches``.

    The record returned by :func:`run_inference_batch` is the served alias's; shadow aliases scored
    in the same run are in ``shadows``.
    """

    batch_id: str
    feature_time: pd.Timestamp
    started_at: pd.Timestamp
    finished_at: pd.Timestamp
    duration_s: float
    status: str
    rows: int
    stations_scored: int
    stations_masked: int
    stations_missing: int
    attempts: int
    error: str | None
    endpoint: str
    alias: str
    shadow: bool
    model_versions: dict[str, str] = field(default_factory=dict)
    forecast_status: str | None = None  # served alias: ok | failed | skipped; None: not asked
    forecast_error: str | None = None
    shadows: tuple[BatchRecord, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def row(self) -> dict[str, Any]:
        """The record as a row of ``inference_batches``."""
        out = {k: v for k, v in asdict(self).items() if k != "shadows"}
        out["model_versions"] = json.dumps(self.model_versions, sort_keys=True)
        return out

    def all_records(self) -> list[BatchRecord]:
        return [replace(self, shadows=()), *self.shadows]

    def summary(self) -> str:
        parts = [f"{self.feature_time:%Y-%m-%d %H:%M}Z {self.alias}: {self.status}"]
        if self.status == Status.OK:
            versions = ",".join(f"{t}={v}" for t, v in self.model_versions.items())
            parts.append(f"{self.rows} rows, {self.stations_scored} stations ({versions})")
        parts.append(f"{self.stations_masked} masked, {self.stations_missing} missing, {self.duration_s:.2f}s")
        if self.error:
            parts.append(self.error)
        if self.forecast_status is not None:
            forecast = f"forecasts {self.forecast_status}"
            parts.append(f"{forecast}: {self.forecast_error}" if self.forecast_error else forecast)
        text = "; ".join(parts)
        for shadow in self.shadows:
            text += f"\n  shadow {shadow.summary()}"
        return text


@dataclass(frozen=True)
class StationCensus:
    """The stations of one slot: the feature rows to score, and what was left out."""

    features: pd.DataFrame  # rows to score (masked stations removed)
    masked: int  # latest snapshot masked by the data contract
    missing: int  # known stations (information in force, or a recent snapshot) with no usable snapshot


def station_census(*, lake: Lake, slot: pd.Timestamp, features: pd.DataFrame, settings: Settings) -> StationCensus:
    """Split the slot's feature rows into scored and masked stations and count the missing ones."""
    city = settings.city
    latest = latest_status(lake, city=city, at=slot, max_age_min=settings.max_snapshot_age_min)
    masked_ids = set(latest.loc[latest["masked"].astype(bool), "station_id"].astype(str))
    keep = ~features["station_id"].astype(str).isin(masked_ids)
    scored = features.loc[keep].reset_index(drop=True)
    known = stations_in_force(lake, city=city, at=slot) | set(latest["station_id"].astype(str))
    missing = known - set(scored["station_id"].astype(str)) - masked_ids
    return StationCensus(features=scored, masked=len(masked_ids), missing=len(missing))


def feature_matrix(features: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Feature rows as a float64 matrix (booleans as 0/1, nulls as NaN)."""
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"feature rows lack columns {missing}")
    return features.loc[:, list(columns)].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)


def prediction_rows(
    invocation: Invocation,
    features: pd.DataFrame,
    *,
    batch_id: str,
    prediction_time: pd.Timestamp,
    slot: pd.Timestamp,
    horizon_min: int,
    shadow: bool,
) -> pd.DataFrame:
    """Long rows of the ``inference`` table: one per station and target."""
    station_ids = features["station_id"].astype(str).to_numpy()
    if invocation.station_id is not None and list(station_ids) != invocation.station_id:
        raise ValueError("the endpoint echoed station ids in a different order than they were sent")
    capacity = features["capacity"].astype("Int32")
    frames = []
    for target, ref in sorted(invocation.models.items()):
        frames.append(
            pd.DataFrame(
                {
                    "batch_id": batch_id,
                    "prediction_time": prediction_time,
                    "feature_time": slot,
                    "target_time": slot + pd.Timedelta(minutes=horizon_min),
                    "horizon_min": horizon_min,
                    "station_id": station_ids,
                    "target": target,
                    "alias": invocation.alias,
                    "model_name": ref.name,
                    "model_version": ref.version,
                    "probability": invocation.probabilities[target],
                    "decision": invocation.decisions[target],
                    "threshold": ref.threshold,
                    "current_count": features[target].astype("Int32").to_numpy(),
                    "capacity": capacity.to_numpy(),
                    "shadow": shadow,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _batch_id(slot: pd.Timestamp, alias: str) -> str:
    return f"{slot:%Y%m%dT%H%M}Z-{alias}-{uuid.uuid4().hex[:8]}"


def check_aliases(aliases: Sequence[str]) -> tuple[str, ...]:
    """Validate the alias list: known names, no repeats, at least one (the served one, first)."""
    out = tuple(aliases)
    if not out:
        raise ValueError("aliases must name at least the served alias (e.g. 'production')")
    out = tuple(Alias(a).value for a in out)  # an unknown name raises, saying what is expected
    if len(set(out)) != len(out):
        raise ValueError(f"aliases repeat: {list(out)}")
    return out


def run_inference_batch(
    *,
    lake: Lake,
    endpoint: EndpointClient,
    settings: Settings,
    now: pd.Timestamp,
    aliases: Sequence[str] = ("production",),
    alias_endpoints: Mapping[str, EndpointClient] | None = None,
) -> BatchRecord:
    """Score the latest slot at or before ``now`` for ``aliases`` (the first served, the others shadow).

    Every alias is asked of ``endpoint`` with the ``X-Bikeshare-Alias`` header, unless
    ``alias_endpoints`` names its own endpoint (one endpoint per alias, as behind SageMaker).

    Writes ``inference/city=<c>/dt=<slot>/<alias>.parquet`` per alias scored and one file of
    records in ``inference_batches``; returns the served alias's record (shadows in ``.shadows``).
    Endpoint and feature failures are recorded as ``failed``, never raised; only a lake that cannot
    take the batch record raises.
    """
    from bikeshare.features.build import online_features, slot_index, slot_time

    aliases = check_aliases(aliases)
    now = to_utc(now, what="inference time")
    city = settings.city
    started = time.perf_counter()
    slot = slot_time(slot_index(now, settings.grid_minutes), settings.grid_minutes)
    slot_dt = partition_value(slot, Grain.MINUTE)
    routes = dict(alias_endpoints or {})

    def client_of(alias: str) -> EndpointClient:
        return routes.get(alias, endpoint)

    def record(alias: str, status: str, **values: Any) -> BatchRecord:
        elapsed = time.perf_counter() - started  # from the start of the run: features included
        base: dict[str, Any] = {
            "rows": 0,
            "stations_scored": 0,
            "stations_masked": census.masked if census else 0,
            "stations_missing": census.missing if census else 0,
            "attempts": 0,
            "error": None,
            "model_versions": {},
        }
        base.update(values)
        return BatchRecord(
            batch_id=_batch_id(slot, alias),
            feature_time=slot,
            started_at=now,
            finished_at=now + _micros(elapsed),
            duration_s=elapsed,
            status=status,
            endpoint=client_of(alias).invocations_url,
            alias=alias,
            shadow=alias != aliases[0],
            **base,
        )

    census: StationCensus | None = None
    records: dict[str, BatchRecord] = {}
    forecast: ForecastOutcome | None = None  # the served alias's forecast outcome (None: not asked)
    served_alias = aliases[0]
    todo = [a for a in aliases if not lake.exists(INFERENCE, city=city, dt=slot_dt, name=a)]
    # A slot scored before whose forecasts are missing (that call failed): ask the forecast route again.
    refill = served_alias not in todo and not lake.exists(FORECASTS, city=city, dt=slot_dt, name=served_alias)
    if served_alias not in todo and not refill:
        forecast = ForecastOutcome(Status.SKIPPED, f"forecasts of slot {slot_dt} already written")
    for alias in aliases:
        if alias not in todo:
            records[alias] = record(alias, Status.SKIPPED, error=f"slot {slot_dt} already scored")
    if todo or refill:
        try:
            features = online_features(lake=lake, at=now, settings=settings)
            census = station_census(lake=lake, slot=slot, features=features, settings=settings)
        except Exception as exc:  # a feature failure is this batch's failure, not the loop's
            log.exception("features for slot %s failed", slot_dt)
            for alias in todo:
                records[alias] = record(alias, Status.FAILED, error=f"features: {_one_line(exc)}")
            if refill:
                forecast = ForecastOutcome(Status.FAILED, f"features: {_one_line(exc)}")
            todo, refill = [], False
    if todo and census is not None and census.features.empty:
        for alias in todo:
            records[alias] = record(
                alias,
                Status.SKIPPED,
                error=f"no station to score at {slot_dt}: no usable snapshot within "
                f"{settings.max_snapshot_age_min} min (is ingest running?)",
            )
        todo = []
    if refill and census is not None and not census.features.empty:
        forecast = forecast_slot(
            lake=lake,
            endpoint=client_of(served_alias),
            settings=settings,
            body=request_body(census.features),
            features=census.features,
            alias=served_alias,
            batch_id=records[served_alias].batch_id,
            prediction_time=now,
            slot=slot,
        )
    if todo and census is not None:
        ids = census.features["station_id"].astype(str).tolist()
        body = request_body(census.features)
        served: Invocation | None = None
        for alias in todo:
            batch_id = _batch_id(slot, alias)
            shadow = alias != aliases[0]
            try:
                invocation = client_of(alias).invoke(body, rows=len(ids), alias=alias)
            except EndpointError as exc:
                if shadow and exc.code == NO_MODEL:  # nothing holds the shadow alias: nothing to compare
                    records[alias] = record(alias, Status.SKIPPED, attempts=exc.attempts, error=str(exc))
                    continue
                log.warning("inference %s %s failed: %s", slot_dt, alias, exc)
                records[alias] = record(alias, Status.FAILED, attempts=exc.attempts, error=str(exc))
                continue
            versions = invocation.model_versions
            if alias == aliases[0]:
                served = invocation
            elif served is not None and versions == served.model_versions:
                records[alias] = record(
                    alias,
                    Status.SKIPPED,
                    attempts=invocation.attempts,
                    model_versions=versions,
                    error=f"same model versions as {aliases[0]}: no shadow rows",
                )
                continue
            try:
                rows = prediction_rows(
                    invocation,
                    census.features,
                    batch_id=batch_id,
                    prediction_time=now,
                    slot=slot,
                    horizon_min=settings.horizon_min,
                    shadow=shadow,
                )
                path = lake.write(INFERENCE, rows, city=city, dt=slot_dt, name=alias)
            except Exception as exc:  # recorded as this alias's failure
                log.exception("writing inference %s %s failed", slot_dt, alias)
                records[alias] = record(
                    alias,
                    Status.FAILED,
                    attempts=invocation.attempts,
                    model_versions=versions,
                    error=f"write: {_one_line(exc)}",
                )
                continue
            if path is None:  # a concurrent run wrote this slot first
                records[alias] = record(
                    alias,
                    Status.SKIPPED,
                    attempts=invocation.attempts,
                    model_versions=versions,
                    error=f"slot {slot_dt} already scored",
                )
                continue
            if alias == aliases[0]:
                forecast = forecast_slot(
                    lake=lake,
                    endpoint=client_of(alias),
                    settings=settings,
                    body=body,
                    features=census.features,
                    alias=alias,
                    batch_id=batch_id,
                    prediction_time=now,
                    slot=slot,
                )
            records[alias] = replace(
                record(
                    alias,
                    Status.OK,
                    rows=len(rows),
                    stations_scored=len(ids),
                    attempts=invocation.attempts,
                    model_versions=versions,
                ),
                batch_id=batch_id,
            )
    if forecast is not None:
        records[served_alias] = replace(
            records[served_alias], forecast_status=forecast.status, forecast_error=forecast.error
        )
    ordered = [records[a] for a in aliases]
    primary = replace(ordered[0], shadows=tuple(ordered[1:]))
    frame = pd.DataFrame([r.row() for r in primary.all_records()])
    lake.write(
        INFERENCE_BATCHES,
        frame,
        city=city,
        dt=partition_value(slot, Grain.DAY),
        name=f"{primary.started_at:%Y%m%dT%H%M%S}-{primary.batch_id}",
    )
    return primary


def request_body(features: pd.DataFrame) -> bytes:
    """The ``split`` request of the slot's feature rows (the same body for both routes)."""
    columns = model_input_columns()
    ids = features["station_id"].astype(str).tolist()
    return split_payload(ids, columns, feature_matrix(features, columns))


def forecast_rows(
    answer: ForecastAnswer,
    features: pd.DataFrame,
    *,
    batch_id: str,
    prediction_time: pd.Timestamp,
    slot: pd.Timestamp,
    alias: str,
) -> pd.DataFrame:
    """The ``forecasts`` rows of one answer: the curve keyed like inference rows, with the counts at t."""
    curve = answer.curve.copy()
    curve["station_id"] = curve["station_id"].astype(str)
    now = features[["station_id", "bikes", "docks", "capacity"]].assign(
        station_id=lambda f: f["station_id"].astype(str)
    )
    rows = curve.merge(now, on="station_id", how="left")
    horizon = rows["horizon_min"].astype("int64")
    return pd.DataFrame(
        {
            "batch_id": batch_id,
            "prediction_time": prediction_time,
            "feature_time": slot,
            "target_time": slot + pd.to_timedelta(horizon, unit="min"),
            "horizon_min": horizon.astype("int32"),
            "station_id": rows["station_id"],
            "alias": alias,
            "model_name": answer.model.get("name"),
            "model_version": answer.model.get("version"),
            **{
                c: rows[c].astype("float64")
                for c in ("p_no_bikes", "p_no_docks", "expected_bikes", "bikes_lo", "bikes_hi")
            },
            "current_bikes": rows["bikes"].astype("Int32"),
            "current_docks": rows["docks"].astype("Int32"),
            "capacity": rows["capacity"].astype("Int32"),
        }
    )


@dataclass(frozen=True)
class ForecastOutcome:
    """What the forecast call of a slot did: ``ok`` (written), ``failed`` or ``skipped``, and why."""

    status: str
    error: str | None = None
    path: str | None = None


def forecast_slot(
    *,
    lake: Lake,
    endpoint: EndpointClient,
    settings: Settings,
    body: bytes,
    features: pd.DataFrame,
    alias: str,
    batch_id: str,
    prediction_time: pd.Timestamp,
    slot: pd.Timestamp,
) -> ForecastOutcome:
    """Ask the endpoint's forecast route for every horizon and write ``forecasts/city=<c>/dt=<slot>/<alias>``.

    Never raises: forecasts are extra, the 30-minute batch stands on its own. No forecast model
    (503 ``no_forecast_model``, the normal state before one is promoted) and forecasts already in
    the lake are ``skipped``; any other failure is ``failed`` with its reason.
    """
    slot_dt = partition_value(slot, Grain.MINUTE)
    if lake.exists(FORECASTS, city=settings.city, dt=slot_dt, name=alias):
        return ForecastOutcome(Status.SKIPPED, f"forecasts of slot {slot_dt} already written")
    try:
        answer = endpoint.forecast(body, rows=len(features), alias=alias)
        rows = forecast_rows(
            answer, features, batch_id=batch_id, prediction_time=prediction_time, slot=slot, alias=alias
        )
        path = lake.write(FORECASTS, rows, city=settings.city, dt=slot_dt, name=alias)
    except EndpointError as exc:
        if exc.code == NO_FORECAST_MODEL:
            log.info("no %s forecast model on the endpoint; forecasts not written", alias)
            return ForecastOutcome(Status.SKIPPED, str(exc))
        log.warning("forecasts for %s %s failed: %s", slot.isoformat(), alias, exc)
        return ForecastOutcome(Status.FAILED, str(exc))
    except Exception as exc:
        log.exception("writing forecasts for %s %s failed", slot.isoformat(), alias)
        return ForecastOutcome(Status.FAILED, f"forecasts: {_one_line(exc)}")
    if path is None:  # a concurrent run wrote them first
        return ForecastOutcome(Status.SKIPPED, f"forecasts of slot {slot_dt} already written")
    return ForecastOutcome(Status.OK, path=path)


def write_forecasts(
    *,
    lake: Lake,
    endpoint: EndpointClient,
    settings: Settings,
    body: bytes,
    features: pd.DataFrame,
    alias: str,
    batch_id: str,
    prediction_time: pd.Timestamp,
    slot: pd.Timestamp,
) -> str | None:
    """:func:`forecast_slot`, returning only the written path (None when nothing was written)."""
    return forecast_slot(
        lake=lake,
        endpoint=endpoint,
        settings=settings,
        body=body,
        features=features,
        alias=alias,
        batch_id=batch_id,
        prediction_time=prediction_time,
        slot=slot,
    ).path


@dataclass(frozen=True)
class SuccessRate:
    """Batch outcomes over a window: ``rate = ok / (ok + failed)`` (skipped runs do not count)."""

    ok: int
    failed: int
    skipped: int

    @property
    def rate(self) -> float | None:
        done = self.ok + self.failed
        return self.ok / done if done else None


def batch_success_rate(
    *, lake: Lake, city: str, start: pd.Timestamp, end: pd.Timestamp, shadow: bool = False
) -> SuccessRate:
    """Success rate of the served (or, with ``shadow``, the shadow) batches with ``start <= feature_time < end``."""
    start, end = to_utc(start, what="start"), to_utc(end, what="end")
    days = [partition_value(d, Grain.DAY) for d in pd.date_range(start.floor("D"), end, freq="D")]
    files = lake.files(INFERENCE_BATCHES, city=city, dts=days)
    if not files:
        return SuccessRate(ok=0, failed=0, skipped=0)
    table = lake.read(INFERENCE_BATCHES, city=city, dts=days).to_pandas()
    rows = table[(table["feature_time"] >= start) & (table["feature_time"] < end) & (table["shadow"] == shadow)]
    counts = rows["status"].value_counts()
    return SuccessRate(
        ok=int(counts.get(Status.OK, 0)),
        failed=int(counts.get(Status.FAILED, 0)),
        skipped=int(counts.get(Status.SKIPPED, 0)),
    )


def _micros(seconds: float) -> pd.Timedelta:
    return pd.Timedelta(microseconds=round(seconds * 1_000_000))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def alias_clients(settings: Settings, aliases: Sequence[str], **kwargs: Any) -> dict[str, EndpointClient]:
    """Clients of the aliases that have their own endpoint (``infer_alias_endpoints``)."""
    for alias in settings.infer_alias_endpoints:
        try:
            Alias(alias)
        except ValueError as exc:
            raise ValueError(f"infer_alias_endpoints: {exc}") from None
    return {
        alias: EndpointClient.from_settings(settings.with_values(endpoint_url=url), **kwargs)
        for alias, url in settings.infer_alias_endpoints.items()
        if alias in aliases
    }
