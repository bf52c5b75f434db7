"""The replay server: virtual clock, control routes, conditional requests, faults, the CLI command."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import httpx
import orjson
import pandas as pd
import pytest

from bikeshare.gbfs.normalise import feed_last_updated, normalise_station_status
from bikeshare.gbfs.recording import Recording
from bikeshare.gbfs.replay import ReplayClock, ReplayServer, read_replay_clock

from .conftest import schema_errors


def test_clock_runs_at_speed_and_obeys_pause_set_advance() -> None:
    real = [100.0]
    start = pd.Timestamp("2023-03-02T00:00Z")
    clock = ReplayClock(start, speed=60, real_clock=lambda: real[0])
    real[0] += 2.5
    assert clock.now() == start + pd.Timedelta(minutes=2.5)  # one real second is one recorded minute
    clock.pause()
    real[0] += 100
    assert clock.now() == start + pd.Timedelta(minutes=2.5)
    clock.advance(30)
    assert clock.now() == start + pd.Timedelta(minutes=3)
    clock.set("2023-03-03T00:00Z")
    clock.pause(False)
    clock.set_speed(120)
    real[0] += 1
    assert clock.now() == pd.Timestamp("2023-03-03T00:02Z")
    with pytest.raises(ValueError, match="speed must be a positive number"):
        clock.set_speed(0)


def test_control_routes_drive_the_snapshot_in_force(replay: Callable[..., ReplayServer]) -> None:
    server = replay("1.1")
    times = server.recording.snapshot_times()
    with httpx.Client(base_url=server.url, timeout=5) as http:
        state = http.get("/_replay/clock").json()
        assert state["paused"] and state["now"] == times[0].isoformat() and not state["ended"]
        assert state["start"] == times[0].isoformat() and state["end"] == times[-1].isoformat()
        target = times[40] + pd.Timedelta(seconds=30)
        state = http.post("/_replay/clock", json={"set": target.isoformat()}).json()
        assert state["snapshot"] == times[40].isoformat() and state["snapshot_index"] == 40
        doc = http.get("/station_status.json").json()
        assert feed_last_updated(doc) == times[40]
        rows = normalise_station_status(doc)
        assert rows["bikes"].tolist() == server.recording.status_at(times[40])["bikes"].tolist()
        advanced = (times[41] - target).total_seconds()
        state = http.post("/_replay/clock", json={"advance_s": advanced}).json()
        assert state["snapshot_index"] == 41
        state = http.post("/_replay/clock", json={"set": times[-1].isoformat(), "speed": 10}).json()
        assert state["ended"] and state["speed"] == 10
        assert read_replay_clock(server.url) == times[-1]
        bad = http.post("/_replay/clock", json={"set": "1999-01-01T00:00Z"})
        assert bad.status_code == 400 and "before the recording's first snapshot" in bad.json()["error"]
        assert http.post("/_replay/clock", json={"jump": 1}).status_code == 400
        assert http.post("/_replay/clock", content=b"{not json").status_code == 400
        missing = http.get("/free_bike_status.json")
        assert missing.status_code == 404 and "station_status" in missing.json()["error"]


def test_running_clock_moves_through_snapshots(shipped: Recording) -> None:
    times = shipped.snapshot_times()
    with ReplayServer(shipped, gbfs_version="2.3", speed=3600.0, start=times[0]) as server:
        before = server.clock_state()["snapshot_index"]
        time.sleep(1.0)  # an hour of recording
        after = server.clock_state()["snapshot_index"]
    assert after > before
    with pytest.raises(ValueError, match="before the recording's first snapshot"):
        ReplayServer(shipped, start=times[0] - pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="unsupported GBFS version"):
        ReplayServer(shipped, gbfs_version="2.2")


def test_if_modified_since_and_etag(replay: Callable[..., ReplayServer]) -> None:
    server = replay("3.0")
    with httpx.Client(base_url=server.url, timeout=5) as http:
        first = http.get("/station_information.json")
        assert first.status_code == 200
        assert schema_errors("3.0", "station_information", first.json()) == []
        since = {"If-Modified-Since": first.headers["last-modified"]}
        assert http.get("/station_information.json", headers=since).status_code == 304
        assert (
            http.get("/station_information.json", headers={"If-None-Match": first.headers["etag"]}).status_code == 304
        )
        assert http.get("/station_information.json", headers={"If-None-Match": '"other"'}).status_code == 200
        old = {"If-Modified-Since": "Mon, 02 Jan 2023 00:00:00 GMT"}
        assert http.get("/station_information.json", headers=old).status_code == 200


def _status(http: httpx.Client) -> httpx.Response:
    return http.get("/station_status.json")


def test_fault_kinds_over_http(replay: Callable[..., ReplayServer]) -> None:
    server = replay("2.3")
    with httpx.Client(base_url=server.url, timeout=5) as http:
        clean = _status(http).json()
        recorded_at = feed_last_updated(clean)

        assert http.post("/_replay/faults", json={"kind": "http_5xx", "count": 1, "status": 500}).status_code == 201
        assert [_status(http).status_code for _ in range(2)] == [500, 200]

        http.post("/_replay/faults", json={"kind": "malformed_json", "count": 1})
        broken = _status(http)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(broken.content)

        http.post("/_replay/faults", json={"kind": "stale_last_updated", "count": 1, "age_s": 7200})
        stale = _status(http).json()
        assert feed_last_updated(stale) == recorded_at - pd.Timedelta(hours=2)

        http.post("/_replay/faults", json={"kind": "out_of_range_station", "count": 1})
        bad = _status(http).json()
        assert schema_errors("2.3", "station_status", bad)  # negative counts are out of the spec
        rows = normalise_station_status(bad)
        assert rows["bikes"].iloc[0] < 0 and rows["docks"].iloc[0] > 500

        http.post("/_replay/faults", json={"kind": "missing_bikes", "count": 1, "fraction": 0.1})
        gappy = normalise_station_status(_status(http).json())
        assert gappy["bikes"].isna().sum() == math.ceil(0.1 * len(gappy))

        assert _status(http).json() == clean  # every counted fault is used up
        assert http.get("/_replay/faults").json() == {"faults": []}


def test_fault_duration_scope_and_validation(replay: Callable[..., ReplayServer]) -> None:
    server = replay("2.3")
    with httpx.Client(base_url=server.url, timeout=5) as http:
        http.post("/_replay/faults", json={"kind": "http_5xx", "for_s": 0.3, "feeds": ["gbfs"]})
        assert http.get("/gbfs.json").status_code == 503
        assert _status(http).status_code == 200  # other feeds untouched
        time.sleep(0.4)
        assert http.get("/gbfs.json").status_code == 200
        http.post("/_replay/faults", json={"kind": "http_5xx"})
        assert [_status(http).status_code for _ in range(3)] == [503, 503, 503]  # until cleared
        assert len(http.get("/_replay/faults").json()["faults"]) == 1
        assert http.delete("/_replay/faults").status_code == 200
        assert _status(http).status_code == 200
        for payload, message in [
            ({"kind": "flood"}, "unknown fault kind"),
            ({"count": 1}, "needs a 'kind'"),
            ({"kind": "http_5xx", "count": 0}, "count must be a positive integer"),
            ({"kind": "http_5xx", "status": 404}, "500..599"),
            ({"kind": "timeout", "delay_s": 1000}, "delay_s"),
            ({"kind": "missing_bikes", "fraction": 2}, "fraction"),
            ({"kind": "http_5xx", "feeds": ["free_bike_status"]}, "not served"),
            ({"kind": "malformed_json", "age_s": 3}, "takes options"),
        ]:
            answer = http.post("/_replay/faults", json=payload)
            assert answer.status_code == 400 and message in answer.json()["error"], payload


def test_stop_releases_the_port(shipped: Recording) -> None:
    server = ReplayServer(shipped, paused=True).start()
    port = server.port
    server.stop()
    again = ReplayServer(shipped, paused=True, port=port).start()  # the same port binds again
    assert again.port == port
    again.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/gbfs.json", timeout=1)


def test_replay_serve_command_serves_until_interrupted(free_port: int, tmp_path: Path) -> None:
    env = {**os.environ, "BIKESHARE_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "bikeshare"),
            "replay",
            "serve",
            "--port",
            str(free_port),
            "--speed",
            "60",
            "--gbfs-version",
            "3.0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{free_port}/gbfs.json" in line, line
        discovery = httpx.get(f"http://127.0.0.1:{free_port}/gbfs.json", timeout=5).json()
        assert discovery["version"] == "3.0" and schema_errors("3.0", "gbfs", discovery) == []
        state = httpx.get(f"http://127.0.0.1:{free_port}/_replay/clock", timeout=5).json()
        assert state["speed"] == 60 and not state["paused"]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped" in out


def _pybikes_ebikes(station: dict, electric: set[str]) -> int:
    """E-bikes as pybikes counts them: Lyft's extension plus the electric vehicle types."""
    listed = sum(t["count"] for t in station.get("vehicle_types_available") or [] if t["vehicle_type_id"] in electric)
    return int(station.get("num_ebikes_available", 0)) + listed


@pytest.mark.parametrize("version", ["1.1", "2.3", "3.0"])
def test_a_third_party_client_counts_each_ebike_once(version: str, replay: Callable[..., ReplayServer]) -> None:
    server = replay(version)
    times = server.recording.snapshot_times()
    server.clock.set(times[60])
    recorded = server.recording.status_at(times[60]).set_index("station_id")["ebikes"]
    with httpx.Client(base_url=server.url, timeout=5) as http:
        stations = http.get("/station_status.json").json()["data"]["stations"]
        electric: set[str] = set()
        if version != "1.1":
            types = http.get("/vehicle_types.json").json()["data"]["vehicle_types"]
            electric = {t["vehicle_type_id"] for t in types if t["propulsion_type"] == "electric_assist"}
    # The Lyft extension is v1.x style only; 2.x and 3.0 consumers see the standard fields alone.
    assert any("num_ebikes_available" in s for s in stations) == (version == "1.1")
    counted = {s["station_id"]: _pybikes_ebikes(s, electric) for s in stations if pd.notna(recorded[s["station_id"]])}
    assert sum(recorded.dropna()) > 100  # the slice has e-bikes to count
    assert counted == {k: int(v) for k, v in recorded.dropna().items()}


def test_if_none_match_compares_weakly_and_takes_lists_and_star(replay: Callable[..., ReplayServer]) -> None:
    server = replay("2.3")
    with httpx.Client(base_url=server.url, timeout=5) as http:
        etag = http.get("/station_status.json").headers["etag"]
        for value in (f"W/{etag}", f'"other", W/{etag}', f'W/"other",{etag}', "*"):
            assert http.get("/station_status.json", headers={"If-None-Match": value}).status_code == 304, value
        for value in ('W/"other"', '"other", W/"another"'):
            assert http.get("/station_status.json", headers={"If-None-Match": value}).status_code == 200, value


def test_the_etag_changes_whenever_the_served_bytes_do(shipped: Recording) -> None:
    real = [1000.0]
    times = shipped.snapshot_times()
    server = ReplayServer(shipped, gbfs_version="2.3", speed=60.0, start=times[0], real_clock=lambda: real[0])
    with server, httpx.Client(base_url=server.url, timeout=5) as http:
        first = http.get("/system_information.json")
        real[0] += 3.0  # three real seconds later the ttl is three seconds shorter
        second = http.get("/system_information.json")
        assert first.json()["ttl"] != second.json()["ttl"]
        assert first.content != second.content
        assert first.headers["etag"] != second.headers["etag"]
        stale = http.get("/system_information.json", headers={"If-None-Match": first.headers["etag"]})
        assert stale.status_code == 200 and stale.content == second.content
        fresh = http.get("/system_information.json", headers={"If-None-Match": second.headers["etag"]})
        assert fresh.status_code == 304


def test_conditional_times_follow_the_virtual_clock(replay: Callable[..., ReplayServer]) -> None:
    server = replay("2.3")
    times = server.recording.snapshot_times()
    with httpx.Client(base_url=server.url, timeout=5) as http:
        http.post("/_replay/clock", json={"set": times[40].isoformat()})
        at_40 = http.get("/station_status.json")
        # Date and Last-Modified speak the same (virtual) clock.
        assert parsedate_to_datetime(at_40.headers["date"]) == times[40].floor("s").to_pydatetime()
        assert at_40.headers["last-modified"] == at_40.headers["date"]
        # A real client's If-Modified-Since (a file's mtime: real time, after virtual now) is no validator here.
        mtime = format_datetime(datetime.now(UTC), usegmt=True)
        assert http.get("/station_status.json", headers={"If-Modified-Since": mtime}).status_code == 200
        # After the clock is rewound, a validator from the later snapshot does not hide the earlier one.
        http.post("/_replay/clock", json={"set": times[10].isoformat()})
        since = {"If-Modified-Since": at_40.headers["last-modified"]}
        rewound = http.get("/station_status.json", headers=since)
        assert rewound.status_code == 200 and feed_last_updated(rewound.json()) == times[10]
        # ... while the same snapshot's own validator still gets its 304.
        same = {"If-Modified-Since": rewound.headers["last-modified"]}
        assert http.get("/station_status.json", headers=same).status_code == 304


def test_other_methods_get_405_with_allow_and_never_html(replay: Callable[..., ReplayServer]) -> None:
    server = replay("2.3")
    with httpx.Client(base_url=server.url, timeout=5) as http:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            answer = http.request(method, "/station_status.json", content=b'{"x": 1}')
            assert answer.status_code == 405, method
            assert answer.headers["allow"] == "GET, HEAD, OPTIONS"
            assert answer.headers["content-type"] == "application/json"
            assert "not allowed" in answer.json()["error"]
        options = http.options("/station_status.json")
        assert options.status_code == 200 and options.headers["allow"] == "GET, HEAD, OPTIONS"
        assert options.json() == {"allow": ["GET", "HEAD", "OPTIONS"]}
        assert http.put("/_replay/clock", json={}).headers["allow"] == "GET, HEAD, POST, OPTIONS"
        assert http.options("/_replay/faults").headers["allow"] == "GET, HEAD, POST, DELETE, OPTIONS"
        assert http.put("/nowhere.json").status_code == 404
        odd = http.request("PROPFIND", "/station_status.json")
        assert odd.status_code == 501 and odd.headers["content-type"] == "application/json"
        assert "PROPFIND" in odd.json()["error"]
        assert http.get("/station_status.json").status_code == 200  # the connection is still in step
