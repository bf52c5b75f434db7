"""Dashboard load benchmark: the load time of each page on a lake holding 4 weeks of the shared recording.

The lake is the one ``bench/dashboard_lake.py`` builds under ``--root`` (built first when missing,
which takes a while; it needs the shared recording). Each page is run with Streamlit's AppTest in a
fresh process per run (Streamlit itself imported before the clock starts, as in a running server):

- cold: the page's first run in the process: its imports, the lake connection and every query;
- warm: the page again after every query cache was cleared (a first view in a running dashboard);
- cached: the page once more (another view within dashboard_cache_ttl_s).

For Model health, ``registry`` is the time until the background MLflow read (started when the
page is drawn) is done and the versions can show (the page itself does not wait for it). Prints the median, min and max over ``--runs``.

    .venv/bin/python bench/dashboard_load.py --root /tmp/dashboard-bench [--runs 5] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PAGES = ("risk_map.py", "top_risk.py", "model_health.py", "system_health.py", "freshness.py")
TARGET_S, GOAL_S = 3.0, 1.5


def child(page: str) -> None:
    """One process: time the page cold, warm and cached; print one JSON line."""
    from streamlit.testing.v1 import AppTest

    from bikeshare.dashboard.app import PAGES_DIR

    out: dict[str, float | str] = {"page": page}
    started = time.perf_counter()
    at = AppTest.from_file(str(PAGES_DIR / page), default_timeout=300)
    at.run()
    out["cold"] = time.perf_counter() - started
    if at.exception:
        out["error"] = at.exception[0].value
    # Every page starts the background registry read when it is drawn; let it finish (as it does
    # while an operator looks at the page) so that it does not slow the next measurements.
    from bikeshare.dashboard import context

    context.registry_loader(context.page_context()).wait(300)
    out["registry"] = time.perf_counter() - started
    import streamlit as st

    st.cache_data.clear()
    t = time.perf_counter()
    AppTest.from_file(str(PAGES_DIR / page), default_timeout=300).run()
    out["warm"] = time.perf_counter() - t
    t = time.perf_counter()
    AppTest.from_file(str(PAGES_DIR / page), default_timeout=300).run()
    out["cached"] = time.perf_counter() - t
    print(json.dumps(out), flush=True)


def measure(page: str, env: dict[str, str]) -> dict[str, float | str]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", page],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{page}: child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f}s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="Folder of the bench lake (see bench/dashboard_lake.py).")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shared", type=Path, default=None, help="Shared data folder (holding baywheels-2023-03/).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.root is None:
        parser.error("--root is required")
    sys.path.insert(0, str(Path(__file__).parent))
    import dashboard_lake

    shared = args.shared or Path(os.environ.get("BIKESHARE_SHARED_DATA") or "../shared/data")
    args.root.mkdir(parents=True, exist_ok=True)
    dashboard_lake.build(args.root, shared)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIKESHARE_")}
    env.update(
        BIKESHARE_CITY=dashboard_lake.CITY,
        BIKESHARE_LAKE_URI=str(args.root / "lake"),
        BIKESHARE_STATE_DIR=str(args.root / "state"),
        BIKESHARE_WEATHER_ENABLED="false",
    )
    print(f"lake {args.root / 'lake'}; {args.runs} runs per page, a fresh process each")
    print(f"{'page':<18} {'cold (first run)':>24} {'warm (caches cleared)':>24} {'cached':>24}")
    worst = 0.0
    for page in PAGES:
        runs = [measure(page, env) for _ in range(args.runs)]
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            raise SystemExit(f"{page}: the page raised: {errors[0]}")
        cold = [float(r["cold"]) for r in runs]
        warm = [float(r["warm"]) for r in runs]
        cached = [float(r["cached"]) for r in runs]
        worst = max(worst, statistics.median(cold))
        line = f"{page:<18} {summary(cold):>24} {summary(warm):>24} {summary(cached):>24}"
        if page == "model_health.py":
            line += f"   registry panel after {summary([float(r['registry']) for r in runs])}"
        print(line, flush=True)
    verdict = "meets the goal" if worst < GOAL_S else "meets the target" if worst < TARGET_S else "MISSES the target"
    print(f"slowest median cold load {worst:.2f}s: {verdict} (target < {TARGET_S} s, goal < {GOAL_S} s)")


if __name__ == "__main__":
    main()
