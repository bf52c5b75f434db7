"""Endpoint latency and throughput: `bikeshare serve` against `mlflow models serve`, side by side.

One run trains real LightGBM models (``--trees``, 300 by default) on features of the shipped Bay
Wheels slice, logs and registers them in a temporary MLflow SQLite store, then starts both servers
on loopback, one worker each:

- ours: ``bikeshare serve`` (registry alias ``production``; scores bikes AND docks per request);
- baseline: ``mlflow models serve -m models:/bikeshare-sf-bikes/1 --env-manager local`` (bikes only).

For each request kind (one station; the whole city = every station of the slice's latest slot;
the whole city again with ``?target=bikes``, so that both servers run the same single model)
and concurrency (1 and 8 kept-alive connections) it measures P50/P95/P99 latency, throughput and
the server's CPU time per request (all its processes, from /proc: it does not depend on how busy
the machine is) for ``--seconds`` after a warm-up, ``--runs`` times with the servers interleaved, and prints the
medians over runs, the ratios and the targets. The load generator is a raw-socket HTTP/1.1 client
(threads, one connection each) so the client costs little of the 2 cores.

A second table shows TCP_NODELAY with 2 worker processes on kept-alive connections: uvicorn's
own ``workers=2`` path on the asyncio loop (Nagle left on, uvicorn issue 3149), the same with our
protocol, and ``bikeshare serve --workers 2``.

    .venv/bin/python bench/serve_latency.py [--runs 3] [--seconds 3] [--trees 300] [--no-workers]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

BIN = Path(sys.executable).parent
LABELS = ("bikes_t_h", "docks_t_h", "y_bikes", "y_docks")
KEYS = ("station_id", "slot")


# ---- model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    bundle: Any
    report: Any
    params: dict[str, Any]
    artifacts: dict[str, Path]
    data_window: tuple[str, str]


def _report(bundle: Any, frame: pd.DataFrame) -> Any:
    from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, precision_score, recall_score

    from bikeshare.training.report import EvaluationReport, ScoreMetrics, SliceComparison

    target = bundle.meta.target
    rows = frame[frame[f"y_{target}"].notna()]
    y = rows[f"y_{target}"].astype("int8").to_numpy()
    p = bundle.predict_proba(rows[list(bundle.meta.feature_names)].to_numpy(np.float64, na_value=np.nan))
    now = rows[target].to_numpy(np.float64, na_value=np.inf) <= 2

    def metrics(score: np.ndarray, decision: np.ndarray) -> ScoreMetrics:
        return ScoreMetrics(
            pr_auc=float(average_precision_score(y, score)),
            f1=float(f1_score(y, decision, zero_division=0)),
            precision=float(precision_score(y, decision, zero_division=0)),
            recall=float(recall_score(y, decision, zero_division=0)),
            brier=float(brier_score_loss(y, np.clip(score, 0, 1))),
            rows=len(y),
            positives=int(y.sum()),
        )

    return EvaluationReport(
        target=target,
        window_start=rows["slot"].min().isoformat(),
        window_end=rows["slot"].max().isoformat(),
        decision_threshold=bundle.meta.decision_threshold,
        slices={"all": SliceComparison(model=metrics(p, p >= 0.5), baseline=metrics(now.astype(float), now))},
    )


def build_models(work: Path, *, trees: int, hours: float) -> tuple[Any, pd.DataFrame, tuple[str, ...]]:
    """Backfill the shipped slice, build features, train and register both targets; production = v1."""
    import lightgbm

    from bikeshare.features.build import build_features
    from bikeshare.gbfs.recording import Recording, default_recording_path
    from bikeshare.ingest.backfill import backfill
    from bikeshare.lake.store import Lake
    from bikeshare.lake.tables import FEATURE_VERSION, FEATURES
    from bikeshare.registry.client import model_name, open_client
    from bikeshare.registry.tracking import log_training_run
    from bikeshare.settings import Settings
    from bikeshare.training.bundle import BundleMeta, IsotonicCalibration, LightGBMScorer, ModelBundle

    settings = Settings(city="sf", lake_uri=str(work / "lake"), state_dir=work / "state", weather_enabled=False)
    recording = Recording.open(default_recording_path())
    lake = Lake.open(settings.lake_uri)
    started = time.perf_counter()
    backfill(recording=recording, lake=lake, settings=settings)
    end = recording.end.floor("5min") - pd.Timedelta(minutes=settings.horizon_min)
    frame = build_features(lake=lake, start=end - pd.Timedelta(hours=hours), end=end, settings=settings)
    names = tuple(n for n in FEATURES.schema.names if n not in LABELS + KEYS)
    print(f"features: {len(frame)} rows x {len(names)} features in {time.perf_counter() - started:.1f} s")
    client = open_client(settings)
    for target in ("bikes", "docks"):
        rows = frame[frame[f"y_{target}"].notna()]
        started = time.perf_counter()
        booster = lightgbm.train(
            {"objective": "binary", "num_leaves": 31, "learning_rate": 0.05, "verbose": -1, "num_threads": 2},
            lightgbm.Dataset(rows[list(names)].to_numpy(np.float64, na_value=np.nan), label=rows[f"y_{target}"]),
            num_boost_round=trees,
        )
        meta = BundleMeta(
            target=target,  # type: ignore[arg-type]
            horizon_min=settings.horizon_min,
            shortage_threshold=settings.shortage_threshold,
            algo="lightgbm",
            feature_names=names,
            decision_threshold=0.5,
            calibration=IsotonicCalibration.identity(),
            feature_version=FEATURE_VERSION,
            booster_file=LightGBMScorer.FILE,
        )
        bundle = ModelBundle(meta=meta, scorer=LightGBMScorer(booster=booster))
        card = work / f"{target}_card.md"
        card.write_text(f"# bench model {target}: {trees} trees\n")
        run = _Run(bundle, _report(bundle, rows), {"trees": trees}, {"card": card},
                   (frame["slot"].min().isoformat(), frame["slot"].max().isoformat()))  # fmt: skip
        logged = log_training_run(client=client, result=run, settings=settings, input_example=rows.head(3))
        assert logged.version is not None
        client.set_registered_model_alias(model_name("sf", target), "production", logged.version.version)
        print(f"{model_name('sf', target)} v{logged.version.version}: {trees} trees, "
              f"trained in {time.perf_counter() - started:.1f} s")  # fmt: skip
    return settings, frame, names


# ---- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(name: str, argv: list[str], env: dict[str, str], port: int, log: Path, *, workers: int = 1) -> Iterator[int]:
    """Start a server in its own process group, wait for GET /ping (and for every worker to answer
    /healthz: a worker still importing would steal CPU from the first), yield the group id, stop it
    (SIGTERM, then SIGKILL) afterwards."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer /ping within 180 s; see {log}")
            time.sleep(0.25)
        pids: set[int] = set()
        while workers > 1 and len(pids) < workers:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            if reply.startswith(b"HTTP/1.1 200"):
                pids.add(orjson.loads(reply.partition(b"\r\n\r\n")[2])["pid"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: only {len(pids)} of {workers} workers answered within 180 s")
            time.sleep(0.05)
        yield proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# ---- load generator ------------------------------------------------------------------------------


class Connection:
    """One kept-alive HTTP/1.1 connection sending the same pre-built request."""

    def __init__(self, port: int, request: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = request
        self.buffer = b""

    def roundtrip(self) -> tuple[int, bytes]:
        self.sock.sendall(self.request)
        buffer = self.buffer
        while b"\r\n\r\n" not in buffer:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("server closed the connection")
            rest += chunk
        self.buffer = rest[length:]
        return status, rest[:length]

    def close(self) -> None:
        self.sock.close()


def request_bytes(
    port: int, body: bytes, headers: dict[str, str] | None = None, *, path: str = "/invocations"
) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@dataclass(frozen=True)
class Cell:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float
    errors: int
    cpu_ms: float  # server CPU (all its processes) per request


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "pid (comm)": state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])
    return total / tick


def measure(
    port: int,
    body: bytes,
    *,
    pgid: int,
    concurrency: int,
    seconds: float,
    warmup: float = 0.5,
    path: str = "/invocations",
) -> Cell:
    request = request_bytes(port, body, path=path)
    connections = [Connection(port, request) for _ in range(concurrency)]
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds
    samples: list[list[float]] = [[] for _ in connections]
    errors = [0] * concurrency
    sent = [0] * concurrency

    def work(i: int) -> None:
        conn, out = connections[i], samples[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            status, _ = conn.roundtrip()
            t1 = time.perf_counter()
            sent[i] += 1
            if status != 200:
                errors[i] += 1
            elif t0 >= start_at:
                out.append(t1 - t0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(concurrency)]
    cpu_before = group_cpu_seconds(pgid)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu_ms = (group_cpu_seconds(pgid) - cpu_before) * 1000.0 / max(1, sum(sent))
    for conn in connections:
        conn.close()
    latencies = np.array([x for s in samples for x in s]) * 1000.0
    if not len(latencies):
        raise RuntimeError(f"no successful request on port {port} ({sum(errors)} errors)")
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return Cell(float(p50), float(p95), float(p99), len(latencies) / seconds, sum(errors), cpu_ms)


def median_cell(cells: list[Cell]) -> Cell:
    return Cell(
        statistics.median(c.p50_ms for c in cells),
        statistics.median(c.p95_ms for c in cells),
        statistics.median(c.p99_ms for c in cells),
        statistics.median(c.rps for c in cells),
        sum(c.errors for c in cells),
        statistics.median(c.cpu_ms for c in cells),
    )


# ---- main ----------------------------------------------------------------------------------------


ONE_TARGET = "bikes only, "


def ours_path(kind: str) -> str:
    """Our request path: one target (the model mlflow serves) for the 'bikes only' kinds, else both."""
    return "/invocations?target=bikes" if kind.startswith(ONE_TARGET) else "/invocations"


def bodies(frame: pd.DataFrame, names: tuple[str, ...]) -> dict[str, dict[str, bytes]]:
    latest = frame[frame["slot"] == frame["slot"].max()]
    values = latest[list(names)].to_numpy(np.float64, na_value=np.nan)
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in values]
    ids = latest["station_id"].tolist()
    out: dict[str, dict[str, bytes]] = {}
    city = f"whole city ({len(rows)} rows)"
    for kind, n in (("one station", 1), (city, len(rows)), (ONE_TARGET + city, len(rows))):
        data = [[station, *row] for station, row in zip(ids[:n], rows[:n], strict=True)]
        out[kind] = {
            "ours": orjson.dumps({"columns": ["station_id", *names], "data": data}),
            "mlflow": orjson.dumps({"dataframe_split": {"columns": list(names), "data": rows[:n]}}),
        }
    return out


def check_same_scores(ports: dict[str, int], requests: dict[str, bytes]) -> float:
    """Both servers score the city with the same bikes model: the largest probability difference."""
    ours = orjson.loads(Connection(ports["ours"], request_bytes(ports["ours"], requests["ours"])).roundtrip()[1])
    theirs = orjson.loads(
        Connection(ports["mlflow"], request_bytes(ports["mlflow"], requests["mlflow"])).roundtrip()[1]
    )
    predictions = theirs["predictions"]
    mlflow_p = np.array([row["probability"] for row in predictions])
    return float(np.max(np.abs(np.array(ours["p_bikes"]) - mlflow_p)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="Measured seconds per cell and run.")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--train-hours", type=float, default=24.0, help="Hours of feature slots to train on.")
    parser.add_argument("--no-workers", action="store_true", help="Skip the 2-worker TCP_NODELAY table.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (models, logs).")
    parser.add_argument("--work", type=Path, help="Work folder; models of an earlier --keep run there are reused.")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    print(f"work folder: {work}  (cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f})")
    if (work / "latest.parquet").is_file():  # models of an earlier --keep run
        from bikeshare.settings import Settings

        settings = Settings(city="sf", lake_uri=str(work / "lake"), state_dir=work / "state", weather_enabled=False)
        frame = pd.read_parquet(work / "latest.parquet")
        names = tuple(json.loads((work / "features.json").read_text()))
        print("reusing the models and the request rows of the earlier run")
    else:
        work.mkdir(parents=True, exist_ok=True)
        settings, frame, names = build_models(work, trees=args.trees, hours=args.train_hours)
        frame[frame["slot"] == frame["slot"].max()].to_parquet(work / "latest.parquet")
        (work / "features.json").write_text(json.dumps(list(names)))
    kinds = bodies(frame, names)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow runs `uvicorn` from PATH
        "BIKESHARE_CITY": "sf",
        "BIKESHARE_STATE_DIR": str(settings.state_dir),
        "BIKESHARE_LAKE_URI": settings.lake_uri,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    ports = {"ours": free_port(), "mlflow": free_port()}
    ours_cmd = [str(BIN / "bikeshare"), "serve", "--port", str(ports["ours"]), "--workers", "1"]
    mlflow_cmd = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/bikeshare-sf-bikes/1",
                  "--env-manager", "local", "-h", "127.0.0.1", "-p", str(ports["mlflow"]), "-w", "1"]  # fmt: skip
    cells: dict[tuple[str, str, int], list[Cell]] = {}
    with (
        server("bikeshare serve", ours_cmd, env, ports["ours"], work / "ours.log") as ours_pid,
        server("mlflow models serve", mlflow_cmd, env, ports["mlflow"], work / "mlflow.log") as mlflow_pid,
    ):
        pgids = {"ours": ours_pid, "mlflow": mlflow_pid}
        city_kind = next(k for k in kinds if k.startswith("whole city"))
        print(
            f"max |p_bikes(ours) - probability(mlflow)| on the city: {check_same_scores(ports, kinds[city_kind]):.2e}"
        )
        for run in range(args.runs):
            for kind, requests in kinds.items():
                for concurrency in (1, 8):
                    for name in ("ours", "mlflow"):
                        path = ours_path(kind) if name == "ours" else "/invocations"
                        cell = measure(ports[name], requests[name], pgid=pgids[name], concurrency=concurrency,
                                       seconds=args.seconds, path=path)  # fmt: skip
                        cells.setdefault((name, kind, concurrency), []).append(cell)
            print(f"run {run + 1}/{args.runs} done (load average {os.getloadavg()[0]:.1f})")

    print(f"\nMedians of {args.runs} runs x {args.seconds:g} s per cell; 1 worker each; LightGBM {args.trees} trees")
    print("(ours scores bikes AND docks per request, except in the 'bikes only' rows (?target=bikes): there both\n"
          " servers run the same bikes model; mlflow always scores the bikes model only)\n")  # fmt: skip
    header = f"| {'request':<34} | conc | {'server':<7} | P50 ms | P95 ms | P99 ms |  req/s | CPU ms/req | errors |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    summary = {}
    for kind in kinds:
        for concurrency in (1, 8):
            row = {name: median_cell(cells[(name, kind, concurrency)]) for name in ("ours", "mlflow")}
            summary[(kind, concurrency)] = row
            for name, c in row.items():
                print(f"| {kind:<34} | {concurrency:>4} | {name:<7} | {c.p50_ms:6.2f} | {c.p95_ms:6.2f} | "
                      f"{c.p99_ms:6.2f} | {c.rps:6.0f} | {c.cpu_ms:10.2f} | {c.errors:>6} |")  # fmt: skip
    print("\nRatios mlflow / ours (P95 latency) and ours / mlflow (throughput):")
    for (kind, concurrency), row in summary.items():
        print(f"  {kind:<34} c={concurrency}: P95 x{row['mlflow'].p95_ms / row['ours'].p95_ms:5.1f}, "
              f"throughput x{row['ours'].rps / row['mlflow'].rps:5.1f}")  # fmt: skip
    one, city = summary[("one station", 1)]["ours"], summary[(city_kind, 1)]["ours"]
    city_one = summary[(ONE_TARGET + city_kind, 1)]["ours"]
    best_rps = max(summary[("one station", c)]["ours"].rps for c in (1, 8))
    checks = [
        ("one station P95 <= 5 ms (c=1)", one.p95_ms <= 5.0, f"{one.p95_ms:.2f} ms"),
        ("one station >= 500 req/s", best_rps >= 500, f"{best_rps:.0f} req/s"),
        ("whole city P95 <= 20 ms (c=1), both targets", city.p95_ms <= 20.0, f"{city.p95_ms:.2f} ms"),
        ("whole city P95 <= 20 ms (c=1), bikes only", city_one.p95_ms <= 20.0, f"{city_one.p95_ms:.2f} ms"),
    ]
    for kind in ("one station", city_kind, ONE_TARGET + city_kind):
        ratio = summary[(kind, 1)]["mlflow"].p95_ms / summary[(kind, 1)]["ours"].p95_ms
        checks.append((f"{kind}: P95 >= 5x lower than mlflow (c=1)", ratio >= 5.0, f"x{ratio:.1f}"))
    print("\nTargets:")
    for label, ok, value in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {label}: {value}")

    if not args.no_workers:
        workers_table(work, env, kinds["one station"]["ours"], seconds=args.seconds, runs=args.runs)
    (work / "summary.json").write_text(
        json.dumps({f"{k[0]} c={k[1]}": {n: c.__dict__ for n, c in v.items()} for k, v in summary.items()}, indent=2)
    )
    if not args.keep and args.work is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


UVICORN_SNIPPET = """
import sys, uvicorn
from bikeshare.serving.server import NoDelayHttpToolsProtocol
http = NoDelayHttpToolsProtocol if sys.argv[2] == "nodelay" else "httptools"
uvicorn.run("bikeshare.serving.server:app_from_env", factory=True, host="127.0.0.1", port=int(sys.argv[1]),
            workers=2, loop="asyncio", http=http, access_log=False, log_level="warning")
"""


def workers_table(work: Path, env: dict[str, str], body: bytes, *, seconds: float, runs: int) -> None:
    """One station, concurrency 1, kept alive, 2 worker processes: where TCP_NODELAY shows."""
    variants = {
        "uvicorn workers=2, asyncio loop (issue 3149)": [sys.executable, "-c", UVICORN_SNIPPET, "{port}", "plain"],
        "uvicorn workers=2, asyncio + our protocol": [sys.executable, "-c", UVICORN_SNIPPET, "{port}", "nodelay"],
        "bikeshare serve --workers 2": [str(BIN / "bikeshare"), "serve", "--port", "{port}", "--workers", "2"],
    }
    print("\nTwo worker processes, one station per request, concurrency 1, kept-alive connection:")
    print(f"| {'server':<44} | P50 ms | P95 ms |  req/s |")
    print(f"|{'-' * 46}|--------|--------|--------|")
    for label, template in variants.items():
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in template]
        with server(label, argv, env, port, work / f"workers-{port}.log", workers=2) as pgid:
            cell = median_cell([measure(port, body, pgid=pgid, concurrency=1, seconds=seconds) for _ in range(runs)])
        print(f"| {label:<44} | {cell.p50_ms:6.2f} | {cell.p95_ms:6.2f} | {cell.rps:6.0f} |")


if __name__ == "__main__":
    sys.exit(main())
