"""A polite GBFS client: discovery, ttl, conditional requests, retries with jitter, circuit breaker.

The client returns raw bytes; parsing and validation are the caller's job, so that a malformed
body can reach quarantine verbatim. HTTP, sleeping and the clocks are passed in: tests talk to a
real loopback server but do not wait for real back-off delays.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pandas as pd

from bikeshare.gbfs.normalise import FeedFormatError, detect_version, normalise_vehicle_types

if TYPE_CHECKING:
    from bikeshare.settings import Settings


class GbfsError(Exception):
    """Base class of the client's errors."""


class FeedUnavailable(GbfsError):  # noqa: N818 - name fixed by the ingest interface
    """A feed could not be fetched after every allowed attempt."""

    def __init__(self, url: str, *, attempts: int, last_status: int | None, last_error: str | None) -> None:
        self.url = url
        self.attempts = attempts
        self.last_status = last_status
        self.last_error = last_error
        what = f"HTTP {last_status}" if last_status is not None else (last_error or "no response")
        super().__init__(f"{url} unavailable after {attempts} attempt(s): last {what}")


class CircuitOpen(GbfsError):  # noqa: N818 - name fixed by the ingest interface
    """The circuit breaker is open: no request was sent."""


class UnknownFeedError(GbfsError, KeyError):
    """The discovery document does not list the requested feed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown feed"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter: attempt k waits uniform(0, min(max, base * 2**(k-1)))."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("RetryPolicy delays must be >= 0")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return rng.uniform(0.0, cap)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy configured by ``retry_attempts``, ``retry_base_delay_s``, ``retry_max_delay_s``."""
        return cls(
            attempts=settings.retry_attempts,
            base_delay_s=settings.retry_base_delay_s,
            max_delay_s=settings.retry_max_delay_s,
        )


class BreakerState(StrEnum):
    """States of :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` failed fetches in a row; open -> half-open after
    ``reset_s``; the half-open trial closes it on success and re-opens it on failure."""

    def __init__(self, failure_threshold: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self.consecutive_failures = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose reset time has passed reads as half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_s:
            return BreakerState.HALF_OPEN
        return self._state

    def before_request(self, url: str) -> None:
        """Raise :class:`CircuitOpen` when no request may be sent now."""
        state = self.state
        if state is BreakerState.OPEN:
            wait = self.reset_s - (self._clock() - self._opened_at)
            raise CircuitOpen(
                f"circuit open after {self.consecutive_failures} failed fetches; "
                f"not requesting {url} (trial in {wait:.1f}s)"
            )
        self._state = state  # OPEN -> HALF_OPEN becomes sticky for the trial

    def record_success(self) -> None:
        """A fetch succeeded: close the circuit."""
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0

    def record_failure(self) -> None:
        """A fetch failed after its retries: count it; open the circuit at the threshold or after a failed trial."""
        self.consecutive_failures += 1
        if self._state is BreakerState.HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] = time.monotonic) -> CircuitBreaker:
        """The breaker configured by ``breaker_failure_threshold`` and ``breaker_reset_s``."""
        return cls(settings.breaker_failure_threshold, settings.breaker_reset_s, clock)


@dataclass(frozen=True)
class FeedIndex:
    """What ``gbfs.json`` announced."""

    url: str
    version: str
    language: str | None
    feeds: dict[str, str]
    ttl: int | None = None


@dataclass(frozen=True)
class FetchResult:
    """One fetch of one feed. ``body`` is the raw payload (None on 304)."""

    feed: str
    url: str
    status_code: int
    body: bytes | None
    fetched_at: pd.Timestamp
    not_modified: bool = False
    from_ttl_cache: bool = False
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 0
    ttl: int | None = None


@dataclass
class _FeedCache:
    body: bytes
    status_code: int
    etag: str | None
    last_modified: str | None
    ttl: int | None
    expires_at: float = 0.0
    fetched_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))


_RETRY_STATUS = frozenset({429})


class GbfsClient:
    """Fetches the feeds listed by one ``gbfs.json`` discovery document."""

    def __init__(
        self,
        discovery_url: str,
        *,
        http: httpx.Client,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        language: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        utc_now: Callable[[], pd.Timestamp] | None = None,
        rng: random.Random | None = None,
        owns_http: bool = False,
    ) -> None:
        self.discovery_url = discovery_url
        self.http = http
        self.retry = retry
        self.breaker = breaker
        self.language = language
        self._sleep = sleep
        self._clock = clock
        self._utc_now = utc_now or (lambda: pd.Timestamp.now(tz="UTC"))
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._owns_http = owns_http
        self._index: FeedIndex | None = None
        self._cache: dict[str, _FeedCache] = {}
        self._vehicle_types: dict[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, discovery_url: str | None = None, **kwargs: Any) -> GbfsClient:
        """A client for ``discovery_url`` (default: ``settings.feed_url``) with its own HTTP client."""
        url = discovery_url or settings.feed_url
        if not url:
            raise ValueError("no feed URL: set feed_url (BIKESHARE_FEED_URL) or a city with a preset")
        http = httpx.Client(timeout=settings.http_timeout_s, follow_redirects=True)
        return cls(
            url,
            http=http,
            retry=RetryPolicy.from_settings(settings),
            breaker=CircuitBreaker.from_settings(settings),
            owns_http=True,
            **kwargs,
        )

    def close(self) -> None:
        """Close the HTTP client when this object created it."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> GbfsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- discovery ---------------------------------------------------------------------------

    @property
    def index(self) -> FeedIndex | None:
        """The last discovery result, if any."""
        return self._index

    def discover(self) -> FeedIndex:
        """Fetch ``gbfs.json`` and list its feeds (v1/v2 under a language key, v3 flat)."""
        result = self._get("gbfs", self.discovery_url, use_cache=False)
        if result.body is None:  # 304 on an unconditional request cannot happen; keep the old index
            if self._index is None:
                raise FeedFormatError(f"{self.discovery_url}: empty discovery response")
            return self._index
        self._index = parse_discovery(result.body, url=self.discovery_url, language=self.language)
        return self._index

    def feed_url(self, feed: str) -> str:
        """URL of ``feed``, discovering first when needed."""
        index = self._index or self.discover()
        try:
            return index.feeds[feed]
        except KeyError:
            raise UnknownFeedError(
                f"feed {feed!r} is not listed by {self.discovery_url} (listed: {', '.join(sorted(index.feeds))})"
            ) from None

    # --- fetching ----------------------------------------------------------------------------

    def fetch(self, feed: str) -> FetchResult:
        """Fetch one feed, honouring its ttl and the server's validators (ETag / Last-Modified)."""
        return self._get(feed, self.feed_url(feed), use_cache=True)

    def vehicle_types(self) -> dict[str, str] | None:
        """vehicle_type_id -> propulsion_type when discovery lists ``vehicle_types`` (v2.1+), else None.

        Pass it to :func:`~bikeshare.gbfs.normalise.normalise_station_status` so that e-bikes can be
        counted from ``vehicle_types_available`` (v3.0 feeds have no ``num_ebikes_available``).
        """
        index = self._index or self.discover()
        if "vehicle_types" not in index.feeds:
            return None
        result = self.fetch("vehicle_types")
        if result.body is not None:
            try:
                doc = orjson.loads(result.body)
            except orjson.JSONDecodeError as exc:
                raise FeedFormatError(f"{result.url}: vehicle_types is not JSON ({exc})") from exc
            self._vehicle_types = normalise_vehicle_types(doc)
        return dict(self._vehicle_types or {})

    def _get(self, feed: str, url: str, *, use_cache: bool) -> FetchResult:
        cached = self._cache.get(url) if use_cache else None
        if cached is not None and self._clock() < cached.expires_at:
            return FetchResult(
                feed=feed,
                url=url,
                status_code=cached.status_code,
                body=cached.body,
                fetched_at=cached.fetched_at,
                from_ttl_cache=True,
                etag=cached.etag,
                last_modified=cached.last_modified,
                attempts=0,
                ttl=cached.ttl,
            )
        self.breaker.before_request(url)
        headers: dict[str, str] = {"Accept": "application/json"}
        if cached is not None:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified

        last_status: int | None = None
        last_error: str | None = None
        attempt = 0
        for attempt in range(1, self.retry.attempts + 1):
            retry_after: float | None = None
            try:
                response = self.http.get(url, headers=headers)
            except httpx.TimeoutException as exc:
                last_status, last_error = None, f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_status, last_error = None, f"connection error ({type(exc).__name__}: {exc})"
            else:
                last_status, last_error = response.status_code, None
                if response.status_code == 304 and cached is not None:
                    return self._not_modified(feed, url, cached, attempt)
                if 200 <= response.status_code < 300:
                    return self._fresh(feed, url, response, attempt, remember=use_cache)
                if response.status_code < 500 and response.status_code not in _RETRY_STATUS:
                    break  # a client error will not fix itself
                retry_after = _retry_after_s(response.headers.get("Retry-After"))
            if attempt < self.retry.attempts:
                delay = self.retry.delay(attempt, self._rng)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, self.retry.max_delay_s))
                self._sleep(delay)
        self.breaker.record_failure()
        raise FeedUnavailable(url, attempts=attempt, last_status=last_status, last_error=last_error)

    def _fresh(self, feed: str, url: str, response: httpx.Response, attempt: int, *, remember: bool) -> FetchResult:
        self.breaker.record_success()
        body = response.content
        fetched_at = self._utc_now()
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        ttl = _ttl_of(body)
        if remember and ttl is not None:
            # Only a parseable document becomes the base of ttl and conditional requests.
            self._cache[url] = _FeedCache(
                body=body,
                status_code=response.status_code,
                etag=etag,
                last_modified=last_modified,
                ttl=ttl,
                expires_at=self._clock() + ttl,
                fetched_at=fetched_at,
            )
        elif remember:
            self._cache.pop(url, None)
        return FetchResult(
            feed=feed,
            url=url,
            status_code=response.status_code,
            body=body,
            fetched_at=fetched_at,
            etag=etag,
            last_modified=last_modified,
            attempts=attempt,
            ttl=ttl,
        )

    def _not_modified(self, feed: str, url: str, cached: _FeedCache, attempt: int) -> FetchResult:
        self.breaker.record_success()
        # A 304 carries no body, hence no new ttl: the old document's ttl ran out and it is unchanged
        # so far. Renewing the old ttl here would skip an update the server publishes meanwhile; the
        # next fetch asks again (the poll interval keeps that polite).
        cached.expires_at = self._clock()
        return FetchResult(
            feed=feed,
            url=url,
            status_code=304,
            body=None,
            fetched_at=self._utc_now(),
            not_modified=True,
            etag=cached.etag,
            last_modified=cached.last_modified,
            attempts=attempt,
            ttl=cached.ttl,
        )


def parse_discovery(body: bytes, *, url: str, language: str | None = None) -> FeedIndex:
    """Read a ``gbfs.json`` body: v1/v2 list feeds under ``data.<language>.feeds``, v3 under ``data.feeds``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FeedFormatError(f"{url}: discovery document is not JSON ({exc})") from exc
    version = detect_version(doc)
    data = doc.get("data")
    if not isinstance(data, dict):
        raise FeedFormatError(f"{url}: discovery document has no data object")
    chosen: str | None = None
    if "feeds" in data:
        feeds_list = data["feeds"]
    else:
        languages = [k for k, v in data.items() if isinstance(v, dict) and "feeds" in v]
        if not languages:
            raise FeedFormatError(f"{url}: discovery data has neither feeds nor a language key with feeds")
        if language in languages:
            chosen = language
        elif "en" in languages:
            chosen = "en"
        else:
            chosen = languages[0]
        feeds_list = data[chosen]["feeds"]
    if not isinstance(feeds_list, list):
        raise FeedFormatError(f"{url}: feeds must be a list")
    feeds: dict[str, str] = {}
    for i, entry in enumerate(feeds_list):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("url"), str)
        ):
            raise FeedFormatError(f"{url}: feed entry {i} needs string name and url")
        feeds[entry["name"]] = httpx.URL(url).join(entry["url"]).__str__()
    ttl = doc.get("ttl") if type(doc.get("ttl")) is int else None
    return FeedIndex(url=url, version=version, language=chosen, feeds=feeds, ttl=ttl)


def _ttl_of(body: bytes) -> int | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    ttl = doc.get("ttl")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0:
        return 0 if isinstance(doc.get("data"), dict) else None
    return int(ttl)


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
