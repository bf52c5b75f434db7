"""Dashboard load benchmark: the load time of each page on a lake holding 4 weeks of the shared recording.

The lake is the one ``bench/dashboard_lake.py`` builds under ``--root`` (built first when missing,
which takes a while; it needs the shared recording). Each page is run with Streamlit's AppTest,
each run in fresh processes (Streamlit itself is imported before any clock starts):

- first view: what an operator waits for when opening the page in a running ``bikeshare dashboard``:
  the process is warmed up as the command does it (``serve.warm_up``: imports, lake views, registry
  read started, and finished before the clock), every query cache is empty;
- cached: the same page again within ``dashboard_cache_ttl_s``;
- cold process: the page as the very first thing a fresh process does, without the warm-up (its
  imports, lake connection and queries all counted).

``warm-up`` is what ``bikeshare dashboard`` spends before it listens, ``registry`` the background
MLflow read (child process). Prints median (min-max) over ``--runs``.

``--browser``: the pages as headless Chromium sees them from a running ``bikeshare dashboard``
(time to main content, filter change, station pick; the fleet overview with ``--cities``), see
``bench/dashboard_browser.py``. ``--lake``/``--state`` point at an existing lake instead of ``--root``'s.

    .venv/bin/python bench/dashboard_load.py --root /tmp/dashboard-bench [--runs 5] [--shared ../shared/data]
    .venv/bin/python bench/dashboard_load.py --browser --root /tmp/dashboard-bench --cities 2 10
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


def child(page: str, mode: str) -> None:
    """One process, one page; prints one JSON line of seconds."""
    from streamlit.testing.v1 import AppTest

    from bikeshare.dashboard.app import PAGES_DIR

    out: dict[str, float | str] = {"page": page}
    if mode == "cold":
        started = time.perf_counter()
        at = AppTest.from_file(str(PAGES_DIR / page), default_timeout=300).run()
        out["cold"] = time.perf_counter() - started
    else:
        from bikeshare.dashboard import context
        from bikeshare.dashboard.serve import warm_up
        from bikeshare.settings import load_settings

        settings = load_settings()
        started = time.perf_counter()
        out["warm_up"] = warm_up(settings)
        context.registry_loader(settings).wait(300)
        out["registry"] = time.perf_counter() - started
        t = time.perf_counter()
        at = AppTest.from_file(str(PAGES_DIR / page), default_timeout=300).run()
        out["first"] = time.perf_counter() - t
        t = time.perf_counter()
        AppTest.from_file(str(PAGES_DIR / page), default_timeout=300).run()
        out["cached"] = time.perf_counter() - t
    if at.exception:
        out["error"] = at.exception[0].value
    print(json.dumps(out), flush=True)


def measure(page: str, mode: str, env: dict[str, str]) -> dict[str, float | str]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", page, "--mode", mode],
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
    parser.add_argument("--browser", action="store_true", help="Measure in headless Chromium (see above).")
    parser.add_argument("--lake", type=Path, help="An existing lake to read instead of --root's (no build).")
    parser.add_argument("--state", type=Path, help="Its state dir (MLflow store); with --lake.")
    parser.add_argument("--city", default=None, help="The city the pages open on (default: the bench lake's).")
    parser.add_argument("--cities", type=int, nargs="*", default=[], help="Browser: fleet overview with N cities.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="served", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mode)
        return
    if args.root is None:
        parser.error("--root is required")
    sys.path.insert(0, str(Path(__file__).parent))
    import dashboard_lake

    args.root.mkdir(parents=True, exist_ok=True)
    if args.lake is None:
        shared = args.shared or Path(os.environ.get("BIKESHARE_SHARED_DATA") or "../shared/data")
        dashboard_lake.build(args.root, shared)
    lake, state = args.lake or args.root / "lake", args.state or args.root / "state"
    city = args.city or dashboard_lake.CITY
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIKESHARE_")}
    env.update(
        BIKESHARE_CITY=city,
        BIKESHARE_LAKE_URI=str(lake),
        BIKESHARE_STATE_DIR=str(state),
        BIKESHARE_WEATHER_ENABLED="false",
    )
    if args.browser:
        import dashboard_browser

        print(f"lake {lake}; browser mode, {args.runs} runs per measure after a first one")
        dashboard_browser.run(env, lake, city, args.runs, args.cities, args.root)
        return
    print(f"lake {lake}; {args.runs} runs per page, a fresh process each")
    print(f"{'page':<18} {'first view':>24} {'cached':>24} {'cold process':>24}")
    worst, warm_ups, registry = 0.0, [], []
    for page in PAGES:
        served = [measure(page, "served", env) for _ in range(args.runs)]
        cold = [measure(page, "cold", env) for _ in range(args.runs)]
        errors = [r["error"] for r in served + cold if "error" in r]
        if errors:
            raise SystemExit(f"{page}: the page raised: {errors[0]}")
        first = [float(r["first"]) for r in served]
        warm_ups += [float(r["warm_up"]) for r in served]
        registry += [float(r["registry"]) for r in served]
        worst = max(worst, statistics.median(first))
        cells = (first, [float(r["cached"]) for r in served], [float(r["cold"]) for r in cold])
        print(f"{page:<18} " + " ".join(f"{summary(c):>24}" for c in cells), flush=True)
    print(f"warm-up before the server listens {summary(warm_ups)}; registry read done after {summary(registry)}")
    verdict = "meets the goal" if worst < GOAL_S else "meets the target" if worst < TARGET_S else "MISSES the target"
    print(f"slowest median first view {worst:.2f}s: {verdict} (target < {TARGET_S} s, goal < {GOAL_S} s)")


if __name__ == "__main__":
    main()
