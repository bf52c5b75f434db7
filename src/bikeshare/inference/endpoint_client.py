"""HTTP client of the scoring endpoint (``POST /invocations``, docs/serving.md wire contract).

One call sends every station of a slot in the ``split`` orientation and reads the columnar answer
into arrays. Connect errors, timeouts and 5xx answers are retried with exponential back-off and
jitter (:class:`~bikeshare.gbfs.client.RetryPolicy`); a 4xx is the caller's fault and is raised at
once with the endpoint's own ``error``/``detail``. HTTP and sleeping are passed in, so tests run a
real loopback server without waiting for real back-off delays.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import orjson
import pandas as pd

from bikeshare.enums import TARGET_NAMES
from bikeshare.gbfs.client import RetryPolicy

if TYPE_CHECKING:
    from bikeshare.settings import Settings

ALIAS_HEADER = "X-Bikeshare-Alias"
API_KEY_HEADER = "X-API-Key"
TARGETS: tuple[str, ...] = TARGET_NAMES


class EndpointError(RuntimeError):
    """A call to the endpoint failed: after every retry (``transient``) or on a refused request."""

    def __init__(
        self,
        url: str,
        message: str,
        *,
        attempts: int,
        status: int | None = None,
        code: str | None = None,
        transient: bool = False,
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.status = status
        self.code = code
        self.transient = transient
        super().__init__(f"{url}: {message} (after {attempts} attempt(s))")


@dataclass(frozen=True)
class ModelRef:
    """The model that answered for one target."""

    name: str
    version: str
    threshold: float


@dataclass(frozen=True)
class Invocation:
    """A decoded ``/invocations`` answer: per-row probabilities and decisions for both targets."""

    alias: str
    models: dict[str, ModelRef]
    probabilities: dict[str, np.ndarray]  # target -> float64 per row
    decisions: dict[str, np.ndarray]  # target -> bool per row
    station_id: list[str] | None
    attempts: int
    elapsed_s: float

    @property
    def model_versions(self) -> dict[str, str]:
        return {target: ref.version for target, ref in sorted(self.models.items())}


def split_payload(station_ids: Sequence[str], columns: Sequence[str], matrix: np.ndarray) -> bytes:
    """The ``split`` request body: ``station_id`` first, then ``columns``; NaN is sent as null."""
    if matrix.ndim != 2 or matrix.shape != (len(station_ids), len(columns)):
        raise ValueError(
            f"feature matrix of shape {matrix.shape} does not match "
            f"{len(station_ids)} stations x {len(columns)} columns"
        )
    data = [[sid, *row] for sid, row in zip(station_ids, matrix.tolist(), strict=True)]
    return orjson.dumps({"columns": ["station_id", *columns], "data": data})  # orjson writes NaN as null


class EndpointClient:
    """Calls ``<base_url>/invocations`` with retries; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout_s)
        self._timeout_s = timeout_s
        self._api_key = api_key
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> EndpointClient:
        """A client of ``settings.resolved_endpoint_url`` with the infer_* timeout and retry policy."""
        retry = RetryPolicy(
            attempts=settings.infer_retry_attempts,
            base_delay_s=settings.infer_retry_base_delay_s,
            max_delay_s=settings.infer_retry_max_delay_s,
        )
        return cls(
            settings.resolved_endpoint_url,
            timeout_s=settings.infer_timeout_s,
            retry=retry,
            api_key=settings.serve_api_key,
            **kwargs,
        )

    @property
    def invocations_url(self) -> str:
        return f"{self.base_url}/invocations"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def forecast_url(self) -> str:
        return f"{self.base_url}/v1/forecast/invocations"

    def forecast(self, body: bytes, *, rows: int, alias: str) -> ForecastAnswer:
        """POST the same ``split`` body to the forecast route; one curve row per input row and horizon.

        Transport errors and 5xx (other than a missing model) are retried like :meth:`invoke`.
        """
        url = self.forecast_url
        response, attempts = self._post(url, body, alias=alias, final_codes=frozenset({NO_FORECAST_MODEL}))
        return _decode_forecast(response, rows=rows, url=url, attempts=attempts)

    def invoke(self, body: bytes, *, rows: int, alias: str | None = None) -> Invocation:
        """POST a ``split`` body of ``rows`` rows (optionally pinned to ``alias``); decode the answer."""
        url = self.invocations_url
        started = time.perf_counter()
        response, attempts = self._post(url, body, alias=alias)
        return _decode(response, rows=rows, alias=alias, url=url, attempts=attempts, started=started)

    def _post(
        self, url: str, body: bytes, *, alias: str | None, final_codes: frozenset[str] = frozenset()
    ) -> tuple[httpx.Response, int]:
        """POST with the retry policy: the first answer below 400 and the attempts it took.

        Connect errors, timeouts, 5xx, 408 and 429 are retried with back-off; any other 4xx, a
        503 ``no_model`` and the ``final_codes`` raise at once (retrying cannot help); after the last
        attempt the error is ``transient``.
        """
        headers = {"Content-Type": "application/json"}
        if alias is not None:
            headers[ALIAS_HEADER] = alias
        if self._api_key:
            headers[API_KEY_HEADER] = self._api_key
        last = "no response"
        last_status: int | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self._http.post(url, content=body, headers=headers, timeout=self._timeout_s)
            except httpx.TransportError as exc:  # connect errors, timeouts, broken connections
                last, last_status = f"{type(exc).__name__}: {exc}".strip(), None
            else:
                if response.status_code < 400:
                    return response, attempt
                last_status = response.status_code
                code, detail = _error_of(response)
                last = f"HTTP {response.status_code} {code}: {detail}"
                if not _retryable(response.status_code, code) or code in final_codes:
                    raise EndpointError(url, last, attempts=attempt, status=last_status, code=code)
            if attempt < self.retry.attempts:
                self._sleep(self.retry.delay(attempt, self._rng))
        raise EndpointError(
            url, f"unavailable, last {last}", attempts=self.retry.attempts, status=last_status, transient=True
        )


NO_MODEL = "no_model"  # the endpoint's 503 code when the alias has no model: retrying cannot help
NO_FORECAST_MODEL = "no_forecast_model"  # 503 of the forecast route when no forecast model is loaded


@dataclass(frozen=True)
class ForecastAnswer:
    """The forecast route's answer: the model that scored and the curve rows."""

    alias: str
    model: dict[str, str]
    curve: pd.DataFrame  # station_id, horizon_min, p_no_bikes, p_no_docks, expected_bikes, bikes_lo, bikes_hi
    attempts: int


def _decode_forecast(response: httpx.Response, *, rows: int, url: str, attempts: int) -> ForecastAnswer:
    try:
        payload = orjson.loads(response.content)
        columns, data, model = payload["columns"], payload["data"], payload["model"]
        horizons = payload["horizons_min"]
        curve = pd.DataFrame(data, columns=columns)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EndpointError(url, f"forecast answer breaks the contract: {exc}", attempts=attempts) from exc
    if len(curve) != rows * len(horizons):
        raise EndpointError(
            url, f"forecast answer holds {len(curve)} rows for {rows} stations x {len(horizons)} horizons",
            attempts=attempts,
        )  # fmt: skip
    return ForecastAnswer(alias=str(payload.get("alias")), model=dict(model), curve=curve, attempts=attempts)


def _retryable(status: int, code: str) -> bool:
    return (status >= 500 and code != NO_MODEL) or status in (408, 429)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "http_error", response.text[:300] or response.reason_phrase
    if isinstance(payload, dict):
        return str(payload.get("error", "http_error")), str(payload.get("detail", ""))[:500]
    return "http_error", response.text[:300]


def _decode(
    response: httpx.Response, *, rows: int, alias: str | None, url: str, attempts: int, started: float
) -> Invocation:
    def bad(what: str) -> EndpointError:
        return EndpointError(
            url, f"answer breaks the wire contract: {what}", attempts=attempts, status=response.status_code
        )

    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise bad("not a JSON object")
    answered = payload.get("alias")
    if not isinstance(answered, str):
        raise bad("no 'alias'")
    if alias is not None and answered != alias:
        raise bad(f"alias {answered!r} answered a request pinned to {alias!r}")
    models_in = payload.get("models")
    if not isinstance(models_in, dict):
        raise bad("no 'models' object")
    models: dict[str, ModelRef] = {}
    probabilities: dict[str, np.ndarray] = {}
    decisions: dict[str, np.ndarray] = {}
    for target in TARGETS:
        ref = models_in.get(target)
        if not isinstance(ref, dict) or not {"name", "version", "threshold"} <= ref.keys():
            raise bad(f"models.{target} needs name, version and threshold")
        try:
            models[target] = ModelRef(
                name=str(ref["name"]), version=str(ref["version"]), threshold=float(ref["threshold"])
            )
            proba = np.asarray(payload[f"p_{target}"], dtype=np.float64)
            short = np.asarray(payload[f"short_{target}"], dtype=bool)
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"p_{target}/short_{target}: {exc}") from exc
        if proba.shape != (rows,) or short.shape != (rows,):
            raise bad(f"p_{target}/short_{target} hold {proba.shape}/{short.shape} values for {rows} rows")
        if not np.all((proba >= 0.0) & (proba <= 1.0)):
            raise bad(f"p_{target} holds values outside [0, 1]")
        probabilities[target], decisions[target] = proba, short
    station_id = payload.get("station_id")
    if station_id is not None and (not isinstance(station_id, list) or len(station_id) != rows):
        raise bad("station_id is not a list of one id per row")
    return Invocation(
        alias=answered,
        models=models,
        probabilities=probabilities,
        decisions=decisions,
        station_id=[str(s) for s in station_id] if station_id is not None else None,
        attempts=attempts,
        elapsed_s=time.perf_counter() - started,
    )
