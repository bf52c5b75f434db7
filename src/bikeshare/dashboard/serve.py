"""Server process of `bikeshare dashboard`: warm the process up, then hand over to Streamlit's CLI.

A page's first view in a fresh process would otherwise also pay for importing pandas, DuckDB,
Altair and the pages' modules and for binding the lake's views (seconds on a 4-week lake). Here
that happens once, before the server listens; the registry read starts in its child process.

    python -m bikeshare.dashboard.serve <streamlit run options>
"""

from __future__ import annotations

import sys
import time

from bikeshare.dashboard.launch import APP_FILE
from bikeshare.settings import Settings, load_settings


def warm_up(settings: Settings) -> float:
    """Import what the pages use, open the lake reader with the pages' views, start the registry read.

    Returns the seconds it took.
    """
    started = time.perf_counter()
    import altair  # noqa: F401
    import pydeck  # noqa: F401

    from bikeshare.dashboard import charts, context, risk  # noqa: F401
    from bikeshare.dashboard import queries as q

    src = q.Source(settings.lake_uri, settings.s3_endpoint_url, settings.city)
    epoch = q.epoch_of(settings.dashboard_cache_ttl_s)
    q.reader(src, epoch).prepare()
    context.registry_loader(settings).poll()
    context.job_intervals(settings)  # imports the runner's schedules (the status bar's job staleness)
    context.data_age_thresholds(settings)
    info = q.system_info(src, epoch)
    tz = str(info["timezone"].iloc[0]) if not info.empty and info["timezone"].iloc[0] else "UTC"
    q.warm_quality(src, epoch, settings.dashboard_history_days, tz, settings.shortage_threshold)
    return time.perf_counter() - started


def main() -> None:
    """Warm up, then run ``streamlit run <app> <options>`` in this process."""
    settings = load_settings()
    seconds = warm_up(settings)
    print(f"dashboard warmed up in {seconds:.1f} s (lake {settings.lake_uri})", file=sys.stderr, flush=True)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP_FILE), *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
