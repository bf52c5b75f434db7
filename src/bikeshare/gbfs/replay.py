"""Serve a recording over HTTP as a live GBFS feed, on a virtual clock, with injectable faults.

Routes (all JSON):

- ``/gbfs.json`` and ``/<feed>.json``: the chosen GBFS version's documents for the snapshot in force
  at virtual now (``ETag``/``Last-Modified``; conditional requests get 304). ``GET``, ``HEAD`` and
  ``OPTIONS`` only: another method gets 405 with ``Allow``.
- ``GET /_replay/clock``: virtual now, speed, paused, recording bounds, whether the end is reached.
- ``POST /_replay/clock``: ``{"set": iso}``, ``{"advance_s": n}``, ``{"pause": bool}``, ``{"speed": x}``
  (keys may be combined; applied in that order).
- ``GET /_replay/faults`` lists active faults; ``POST`` adds one (``{"kind": ..., "count": n}`` or
  ``"for_s": seconds`` plus the kind's options); ``DELETE`` clears them all.

Fault kinds (they apply to ``station_status`` unless ``feeds`` says otherwise):
``http_5xx`` (option ``status``, default 503), ``timeout`` (the server waits ``delay_s`` before
answering, default 15 s, at most 120 s), ``malformed_json`` (a truncated body),
``stale_last_updated`` (``last_updated`` moved back by ``age_s``, default 7200 s),
``out_of_range_station`` (one station with negative bikes and docks far over capacity),
``missing_bikes`` (``fraction`` of stations without the bikes count, default 0.1).
``count`` counts affected responses; ``for_s`` is real seconds; with neither, a fault lasts until cleared.

HTTP validators and dates (docs/data_contract.md, "The replay server as a GBFS feed"):

- ``ETag`` is a strong tag, the hash of the bytes served: it changes whenever they do (the ``ttl``
  counts down with the clock). ``If-None-Match`` compares weakly (RFC 9110 13.1.2): ``W/"x"`` and
  ``"x"`` match, a list matches if any member does, ``*`` matches any feed.
- Every time the server writes is virtual: ``Date`` is virtual now and ``Last-Modified`` the
  document's virtual ``last_updated`` (never after ``Date``). ``If-Modified-Since`` is read on that
  clock: a date after virtual now (a real client's wall-clock time, or a validator from before the
  clock was rewound) cannot have come from this server and is ignored, so the full document is sent.
- Every answer is JSON (or empty): errors, 404, 405 and 501 included, never the stdlib's HTML page.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import pandas as pd

from bikeshare.gbfs.recording import Recording, as_utc
from bikeshare.gbfs.render import (
    check_version,
    feeds_of,
    render_discovery,
    render_station_information,
    render_station_status,
    render_system_information,
    render_vehicle_types,
)

log = logging.getLogger(__name__)

FAULT_KINDS: tuple[str, ...] = (
    "http_5xx",
    "timeout",
    "malformed_json",
    "stale_last_updated",
    "out_of_range_station",
    "missing_bikes",
)
MAX_TIMEOUT_S = 120.0
MAX_TTL_S = 60
FEED_METHODS: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")
CONTROL_METHODS: dict[str, tuple[str, ...]] = {
    "/_replay/clock": ("GET", "HEAD", "POST", "OPTIONS"),
    "/_replay/faults": ("GET", "HEAD", "POST", "DELETE", "OPTIONS"),
}
MAX_DISCARDED_BODY = 1 << 16  # bytes of a refused request's body read off the connection
_ENTITY_TAG = re.compile(r'\s*(?:(W/)?("[^"]*")|(\*))\s*(?:,|$)')


class ReplayClock:
    """Virtual UTC time: ``now = anchor + (real elapsed) * speed``; it can be paused, set and advanced."""

    def __init__(
        self,
        start: pd.Timestamp,
        *,
        speed: float = 1.0,
        paused: bool = False,
        real_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_speed(speed)
        self._real = real_clock
        self._lock = threading.Lock()
        self._anchor_virtual = _utc(start)
        self._anchor_real = real_clock()
        self._speed = float(speed)
        self._paused = paused

    def _now_locked(self) -> pd.Timestamp:
        if self._paused:
            return self._anchor_virtual
        elapsed = (self._real() - self._anchor_real) * self._speed
        return self._anchor_virtual + pd.Timedelta(microseconds=round(elapsed * 1_000_000))

    def _reanchor(self, virtual: pd.Timestamp) -> None:
        self._anchor_virtual = virtual
        self._anchor_real = self._real()

    def restart(self) -> None:
        """Let virtual time run from the last anchor as of now (real time since then does not count)."""
        with self._lock:
            self._anchor_real = self._real()

    def now(self) -> pd.Timestamp:
        """The virtual UTC time."""
        with self._lock:
            return self._now_locked()

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused

    def set(self, ts: pd.Timestamp | str) -> pd.Timestamp:
        """Jump to ``ts``."""
        with self._lock:
            self._reanchor(_utc(ts))
            return self._anchor_virtual

    def advance(self, seconds: float) -> pd.Timestamp:
        """Move virtual time forward (or back, if negative) by ``seconds``."""
        if not math.isfinite(seconds):
            raise ValueError(f"advance_s must be a finite number, got {seconds!r}")
        with self._lock:
            self._reanchor(self._now_locked() + pd.Timedelta(microseconds=round(seconds * 1_000_000)))
            return self._anchor_virtual

    def pause(self, paused: bool = True) -> pd.Timestamp:
        """Freeze (or resume) virtual time."""
        with self._lock:
            self._reanchor(self._now_locked())
            self._paused = bool(paused)
            return self._anchor_virtual

    def set_speed(self, speed: float) -> None:
        """Virtual seconds per real second from now on."""
        _check_speed(speed)
        with self._lock:
            self._reanchor(self._now_locked())
            self._speed = float(speed)


@dataclass
class Fault:
    """One injected fault. ``remaining`` counts affected responses; ``until`` is a real (monotonic) deadline."""

    kind: str
    feeds: tuple[str, ...] = ("station_status",)
    remaining: int | None = None
    until: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self, real_now: float) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "feeds": list(self.feeds),
            "remaining": self.remaining,
            "remaining_s": None if self.until is None else max(0.0, round(self.until - real_now, 3)),
            **self.options,
        }


def _check_speed(speed: float) -> None:
    if not (isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, got {speed!r}")


def _utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    stamp = as_utc(ts)
    if stamp is None:
        raise ValueError("a time is required")
    return stamp.as_unit("us")


def _http_date(ts: pd.Timestamp) -> str:
    moment = ts.tz_convert("UTC").floor("s").to_pydatetime().replace(tzinfo=UTC)
    return format_datetime(moment, usegmt=True)


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    headers: dict[str, str]
    delay_s: float = 0.0


class ReplayServer:
    """A GBFS server for one recording, in one GBFS version, on a background thread."""

    def __init__(
        self,
        recording: Recording,
        *,
        gbfs_version: str = "2.3",
        speed: float = 1.0,
        start: pd.Timestamp | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        paused: bool = False,
        real_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recording = recording
        self.gbfs_version = check_version(gbfs_version)
        self.host = host
        self._requested_port = port
        self._times = recording.snapshot_times()
        if not len(self._times):
            raise ValueError(f"{recording.path}: the recording has no snapshots")
        start_ts = self._times[0] if start is None else _utc(start)
        if start_ts < self._times[0]:
            raise ValueError(
                f"start {start_ts.isoformat()} is before the recording's first snapshot {self._times[0].isoformat()}"
            )
        self._real = real_clock
        self.clock = ReplayClock(start_ts, speed=speed, paused=paused, real_clock=real_clock)
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._cache: dict[tuple[str, int], tuple[dict[str, Any], pd.Timestamp]] = {}
        self._cache_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._language = str(recording.system_information.get("language") or "en")

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ReplayServer:
        """Bind and serve on a background thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self.clock.restart()  # virtual time runs from the moment the server serves
        self._httpd = ThreadingHTTPServer((self.host, self._requested_port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="gbfs-replay", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (pending timeout faults are cut short)."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def serve_forever(self) -> None:
        """Serve on the calling thread until :meth:`stop` or KeyboardInterrupt."""
        self.start()
        try:
            while not self._stopping.wait(0.5):
                pass
        finally:
            self.stop()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the replay server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/gbfs.json"

    # --- clock and faults --------------------------------------------------------------------

    def snapshot_index(self, now: pd.Timestamp | None = None) -> int:
        """Index of the recorded snapshot in force at virtual ``now`` (the first one before the start)."""
        now = self.clock.now() if now is None else now
        return max(int(self._times.searchsorted(_utc(now), side="right")) - 1, 0)

    def clock_state(self) -> dict[str, Any]:
        """What ``GET /_replay/clock`` answers."""
        now = self.clock.now()
        i = self.snapshot_index(now)
        return {
            "now": now.isoformat(),
            "speed": self.clock.speed,
            "paused": self.clock.paused,
            "start": self._times[0].isoformat(),
            "end": self._times[-1].isoformat(),
            "ended": bool(now >= self._times[-1]),
            "snapshot": self._times[i].isoformat(),
            "snapshot_index": i,
            "snapshots": len(self._times),
            "gbfs_version": self.gbfs_version,
        }

    def inject(
        self,
        kind: str,
        *,
        count: int | None = None,
        for_s: float | None = None,
        feeds: list[str] | tuple[str, ...] | None = None,
        **options: Any,
    ) -> Fault:
        """Add a fault; see the module docstring for kinds and options."""
        fault = self._make_fault(kind, count=count, for_s=for_s, feeds=feeds, options=options)
        with self._faults_lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._faults_lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """Active faults as JSON-ready dicts."""
        now = self._real()
        with self._faults_lock:
            self._expire(now)
            return [f.to_json(now) for f in self._faults]

    def _make_fault(
        self,
        kind: str,
        *,
        count: int | None,
        for_s: float | None,
        feeds: list[str] | tuple[str, ...] | None,
        options: dict[str, Any],
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a positive integer, got {count!r}")
        if for_s is not None and not (isinstance(for_s, int | float) and math.isfinite(for_s) and for_s > 0):
            raise ValueError(f"for_s must be a positive number of seconds, got {for_s!r}")
        chosen = tuple(feeds) if feeds else ("station_status",)
        unknown = [f for f in chosen if f not in feeds_of(self.gbfs_version)]
        if unknown:
            raise ValueError(f"fault feeds {unknown} are not served in GBFS {self.gbfs_version}")
        allowed = {
            "http_5xx": {"status"},
            "timeout": {"delay_s"},
            "malformed_json": set(),
            "stale_last_updated": {"age_s"},
            "out_of_range_station": set(),
            "missing_bikes": {"fraction"},
        }[kind]
        extra = set(options) - allowed
        if extra:
            raise ValueError(f"fault {kind} takes options {sorted(allowed) or 'none'}, not {sorted(extra)}")
        opts = dict(options)
        if kind == "http_5xx":
            status = opts.setdefault("status", 503)
            if not isinstance(status, int) or not 500 <= status <= 599:
                raise ValueError(f"http_5xx status must be 500..599, got {status!r}")
        elif kind == "timeout":
            delay = opts.setdefault("delay_s", 15.0)
            if not isinstance(delay, int | float) or not 0 < delay <= MAX_TIMEOUT_S:
                raise ValueError(f"timeout delay_s must be in (0, {MAX_TIMEOUT_S}], got {delay!r}")
        elif kind == "stale_last_updated":
            age = opts.setdefault("age_s", 7200.0)
            if not isinstance(age, int | float) or age <= 0:
                raise ValueError(f"stale_last_updated age_s must be > 0, got {age!r}")
        elif kind == "missing_bikes":
            fraction = opts.setdefault("fraction", 0.1)
            if not isinstance(fraction, int | float) or not 0 < fraction <= 1:
                raise ValueError(f"missing_bikes fraction must be in (0, 1], got {fraction!r}")
        until = None if for_s is None else self._real() + float(for_s)
        return Fault(kind=kind, feeds=chosen, remaining=count, until=until, options=opts)

    def _expire(self, real_now: float) -> None:
        self._faults = [
            f
            for f in self._faults
            if (f.remaining is None or f.remaining > 0) and (f.until is None or real_now < f.until)
        ]

    def _take_faults(self, feed: str) -> list[Fault]:
        """Faults that affect this response; counted ones are used up."""
        now = self._real()
        with self._faults_lock:
            self._expire(now)
            hit = [f for f in self._faults if feed in f.feeds]
            for f in hit:
                if f.remaining is not None:
                    f.remaining -= 1
            self._expire(now)
        return hit

    # --- documents ---------------------------------------------------------------------------

    def _ttl(self, now: pd.Timestamp, index: int) -> int:
        """Real seconds until the next recorded snapshot, within [0, 60]; 0 while paused."""
        if self.clock.paused:
            return 0
        if index + 1 >= len(self._times):
            return MAX_TTL_S
        virtual_left = (self._times[index + 1] - now).total_seconds()
        return int(min(MAX_TTL_S, max(0.0, math.floor(virtual_left / self.clock.speed))))

    def document(self, feed: str, *, now: pd.Timestamp | None = None) -> dict[str, Any]:
        """The fault-free document of ``feed`` at virtual ``now`` (default: the clock's now)."""
        now = self.clock.now() if now is None else _utc(now)
        index = self.snapshot_index(now)
        doc, _ = self._content(feed, index)
        return {**doc, "ttl": self._ttl(now, index)}

    def _content(self, feed: str, index: int) -> tuple[dict[str, Any], pd.Timestamp]:
        """(document with ttl 0, last_updated) of ``feed`` for snapshot ``index``, cached."""
        key = (feed, index)
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        doc, updated = self._render(feed, index)
        with self._cache_lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = (doc, updated)
        return doc, updated

    def _render(self, feed: str, index: int) -> tuple[dict[str, Any], pd.Timestamp]:
        if feed not in feeds_of(self.gbfs_version):
            raise KeyError(feed)
        snapshot = self._times[index]
        version = self.gbfs_version
        if feed == "gbfs":
            doc = render_discovery(self.url, version=version, last_updated=snapshot, ttl=0, language=self._language)
            return doc, snapshot
        if feed == "station_status":
            rows = self.recording.status_at(snapshot)
            return render_station_status(rows, version=version, last_updated=snapshot, ttl=0), snapshot
        if feed == "station_information":
            valid_from, rows = self._information_version(snapshot)
            doc = render_station_information(
                rows, version=version, last_updated=valid_from, ttl=0, language=self._language
            )
            return doc, valid_from
        if feed == "system_information":
            info = self.recording.system_information
            updated = _utc(info.get("last_updated") or self._times[0])
            return render_system_information(info, version=version, last_updated=updated, ttl=0), updated
        updated = self._times[0]
        return render_vehicle_types(version=version, last_updated=updated, ttl=0, language=self._language), updated

    def _information_version(self, ts: pd.Timestamp) -> tuple[pd.Timestamp, pd.DataFrame]:
        versions = self.recording.information_versions()
        chosen = versions[0]
        for valid_from, rows in versions:
            if valid_from > ts:
                break
            chosen = (valid_from, rows)
        return chosen

    def respond(self, feed: str, request_headers: dict[str, str]) -> _Response:
        """The HTTP answer for ``feed`` (request header names lower-case): faults, then the document or 304."""
        now = self.clock.now()
        index = self.snapshot_index(now)
        ttl = self._ttl(now, index)
        faults = self._take_faults(feed)
        delay = max((float(f.options["delay_s"]) for f in faults if f.kind == "timeout"), default=0.0)
        for fault in faults:
            if fault.kind == "http_5xx":
                status = int(fault.options["status"])
                body = orjson.dumps({"error": f"injected fault http_5xx ({status})"})
                return _Response(status, body, {"Content-Type": "application/json"}, delay)
        doc, updated = self._content(feed, index)
        doc = {**doc, "ttl": ttl}
        doc_faults = [f for f in faults if f.kind not in ("timeout", "http_5xx")]
        if doc_faults:
            doc = orjson.loads(orjson.dumps(doc))  # a private copy to damage
            for fault in doc_faults:
                doc = _apply_document_fault(fault, doc, self.gbfs_version)
            body = orjson.dumps(doc)
            if any(f.kind == "malformed_json" for f in doc_faults):
                body = body[: max(1, len(body) // 2)]
            return _Response(200, body, {"Content-Type": "application/json", "Cache-Control": "no-store"}, delay)
        body = orjson.dumps(doc)
        etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'  # of the bytes served, ttl included
        modified = min(updated, now)  # Last-Modified is never after Date (virtual now)
        headers = {
            "Content-Type": "application/json",
            "ETag": etag,
            "Last-Modified": _http_date(modified),
            "Cache-Control": f"max-age={ttl}",
        }
        if _not_modified(request_headers, etag, modified, now=now):
            return _Response(304, b"", headers, delay)
        return _Response(200, body, headers, delay)

    def wait_stopping(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the server is stopping (ends fault delays early)."""
        return self._stopping.wait(seconds)


def _not_modified(headers: dict[str, str], etag: str, modified: pd.Timestamp, *, now: pd.Timestamp) -> bool:
    """RFC 9110 13.2.2: If-None-Match (weak comparison) wins; else If-Modified-Since on the virtual clock."""
    inm = headers.get("if-none-match")
    if inm is not None:
        return _etag_matches(inm, etag)
    ims = headers.get("if-modified-since")
    if ims:
        try:
            since = pd.Timestamp(parsedate_to_datetime(ims))
        except (TypeError, ValueError, IndexError):
            return False
        since = since.tz_localize("UTC") if since.tzinfo is None else since.tz_convert("UTC")
        if since > now.ceil("s"):  # after the server's (virtual) now: not a date this server gave
            return False
        return modified.floor("s") <= since
    return False


def _etag_matches(field_value: str, etag: str) -> bool:
    """Weak comparison of ``etag`` with each member of an If-None-Match value (``*`` matches any)."""
    opaque = etag.removeprefix("W/")
    position = 0
    while position < len(field_value):
        found = _ENTITY_TAG.match(field_value, position)
        if found is None or found.end() == position:
            return False  # not a list of entity tags: no match, the full document is sent
        if found.group(3) or found.group(2) == opaque:
            return True
        position = found.end()
    return False


def _apply_document_fault(fault: Fault, doc: dict[str, Any], version: str) -> dict[str, Any]:
    if fault.kind == "stale_last_updated":
        age = pd.Timedelta(seconds=float(fault.options["age_s"]))
        value = doc["last_updated"]
        if isinstance(value, str):
            doc["last_updated"] = (pd.Timestamp(value) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            doc["last_updated"] = int(value - age.total_seconds())
        return doc
    stations = doc.get("data", {}).get("stations")
    if not isinstance(stations, list) or not stations:
        return doc
    bikes_key = "num_vehicles_available" if version == "3.0" else "num_bikes_available"
    if fault.kind == "out_of_range_station":
        stations[0][bikes_key] = -5
        stations[0]["num_docks_available"] = 999
        if "num_ebikes_available" in stations[0]:
            stations[0]["num_ebikes_available"] = 0
        stations[0].pop("vehicle_types_available", None)
    elif fault.kind == "missing_bikes":
        n = math.ceil(len(stations) * float(fault.options["fraction"]))
        for i in np.random.default_rng(0).choice(len(stations), size=n, replace=False):
            stations[int(i)].pop(bikes_key, None)
    return doc


def _handler_for(server: ReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "bikeshare-gbfs-replay"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def date_time_string(self, timestamp: float | None = None) -> str:
            """The ``Date`` header: virtual now, the clock Last-Modified and If-Modified-Since use."""
            return _http_date(server.clock.now())

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """Errors the stdlib raises itself (bad request line, unknown method) as JSON, not HTML."""
            short = self.responses.get(code, ("error", ""))[0]
            self.log_error("code %d, message %s", code, message)
            self.send_response(code, message)
            self.send_header("Connection", "close")
            body = b"" if code < 200 or code in (204, 205, 304) else orjson.dumps({"error": message or short})
            if body:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and getattr(self, "command", None) != "HEAD":
                self.wfile.write(body)

        def _allowed(self, path: str) -> tuple[str, ...] | None:
            """Methods of ``path``; None when nothing is there."""
            if path in CONTROL_METHODS:
                return CONTROL_METHODS[path]
            if path == "*":  # the asterisk form is for OPTIONS only (RFC 9110 7.1)
                return ("OPTIONS",)
            name = path.strip("/")
            feed = name[: -len(".json")] if name.endswith(".json") else name
            return FEED_METHODS if feed in feeds_of(server.gbfs_version) else None

        def _discard_body(self) -> None:
            """Read a refused request's body off the connection (or close it), so the next request parses."""
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if self.headers.get("Transfer-Encoding") or not 0 <= length <= MAX_DISCARDED_BODY:
                self.close_connection = True
            elif length:
                self.rfile.read(length)

        def _routed(self) -> bool:
            """True when ``self.command`` may go on to its handler; else 404 / 405 / the OPTIONS answer is sent."""
            path = self.path if self.path == "*" else urlsplit(self.path).path
            allowed = self._allowed(path)
            if allowed is None:
                self._discard_body()
                self._json(404, {"error": f"no route {path!r}; feeds: {feeds_of(server.gbfs_version)}"})
                return False
            if self.command == "OPTIONS":
                self._discard_body()
                self._send(
                    200,
                    orjson.dumps({"allow": list(allowed)}),
                    {"Content-Type": "application/json", "Allow": ", ".join(allowed)},
                )
                return False
            if self.command not in allowed:
                self._discard_body()
                self._send(
                    405,
                    orjson.dumps(
                        {"error": f"method {self.command} is not allowed on {path}; allowed: {', '.join(allowed)}"}
                    ),
                    {"Content-Type": "application/json", "Allow": ", ".join(allowed)},
                )
                return False
            return True

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, orjson.dumps(payload))

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw.strip():
                return {}
            return orjson.loads(raw)

        def do_GET(self) -> None:
            if not self._routed():
                return
            path = urlsplit(self.path).path
            if path == "/_replay/clock":
                self._json(200, server.clock_state())
                return
            if path == "/_replay/faults":
                self._json(200, {"faults": server.faults()})
                return
            name = path.strip("/")
            feed = name[: -len(".json")] if name.endswith(".json") else name
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                response = server.respond(feed, headers)
            except Exception as exc:  # a server bug must answer 500, not drop the connection
                log.exception("replay: rendering %s failed", feed)
                self._json(500, {"error": f"replay server error: {type(exc).__name__}: {exc}"})
                return
            if response.delay_s and server.wait_stopping(response.delay_s):
                return
            try:
                self._send(response.status, response.body, response.headers)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. a timeout fault)
                self.close_connection = True

        do_HEAD = do_GET  # noqa: N815 - the stdlib dispatches on this name

        def do_POST(self) -> None:
            if not self._routed():
                return
            path = urlsplit(self.path).path
            try:
                payload = self._body()
                if not isinstance(payload, dict):
                    raise ValueError("the body must be a JSON object")
                if path == "/_replay/clock":
                    _apply_clock_command(server, payload)
                    self._json(200, server.clock_state())
                elif path == "/_replay/faults":
                    kind = payload.pop("kind", None)
                    if not isinstance(kind, str):
                        raise ValueError(f"a fault needs a 'kind' ({', '.join(FAULT_KINDS)})")
                    fault = server.inject(kind, **payload)
                    self._json(201, {"fault": fault.to_json(time.monotonic()), "faults": server.faults()})
            except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                self._json(400, {"error": str(exc)})

        def do_DELETE(self) -> None:
            if self._routed():  # only /_replay/faults takes DELETE
                server.clear_faults()
                self._json(200, {"faults": []})

        def _answer_by_route(self) -> None:
            self._routed()  # 404, the OPTIONS answer, or 405 with Allow (no route takes PUT or PATCH)

        do_PUT = do_PATCH = _answer_by_route  # noqa: N815 - the stdlib dispatches on these names
        do_OPTIONS = _answer_by_route  # noqa: N815

    return Handler


def _apply_clock_command(server: ReplayServer, payload: dict[str, Any]) -> None:
    unknown = set(payload) - {"set", "advance_s", "pause", "speed"}
    if unknown:
        raise ValueError(f"unknown clock keys {sorted(unknown)}; use set, advance_s, pause, speed")
    clock = server.clock
    if "set" in payload:
        target = _utc(payload["set"])
        first = server.recording.snapshot_times()[0]
        if target < first:
            raise ValueError(f"set {target.isoformat()} is before the recording's first snapshot {first.isoformat()}")
        clock.set(target)
    if "advance_s" in payload:
        value = payload["advance_s"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"advance_s must be a number, got {value!r}")
        clock.advance(float(value))
    if "pause" in payload:
        if not isinstance(payload["pause"], bool):
            raise ValueError(f"pause must be true or false, got {payload['pause']!r}")
        clock.pause(payload["pause"])
    if "speed" in payload:
        value = payload["speed"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"speed must be a number, got {value!r}")
        clock.set_speed(float(value))


def read_replay_clock(base_url: str, *, timeout_s: float = 5.0) -> pd.Timestamp:
    """Virtual now of a replay server at ``base_url`` (for processes that follow its clock)."""
    import httpx

    response = httpx.get(f"{base_url.rstrip('/')}/_replay/clock", timeout=timeout_s)
    response.raise_for_status()
    return pd.Timestamp(response.json()["now"]).tz_convert("UTC")
