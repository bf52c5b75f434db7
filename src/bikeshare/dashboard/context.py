"""What every page needs: settings, the lake source and cache period, the system's time zone, and
small display helpers (local times, "no data yet" notices that name the producing command)."""

from __future__ import annotations

import getpass
import html
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.registry_view import RegistryLoader
from bikeshare.dashboard.status import (
    DATA_AGE_CRITICAL_S,
    DATA_AGE_WARNING_S,
    LEVEL_BACKGROUNDS,
    LEVEL_COLOURS,
    Clock,
    Level,
    alerts_level,
    data_age_level,
    humanise,
    job_staleness,
    worst,
)
from bikeshare.fleet import FLEET_ENV_VAR, Fleet, FleetError, load_fleet
from bikeshare.lake.store import parse_partition_value
from bikeshare.settings import Settings, load_settings


@dataclass(frozen=True)
class PageContext:
    """The settings and lake source of one script run, with the system's time zone."""

    settings: Settings
    src: q.Source
    epoch: int
    tz: str
    system_name: str | None

    def local(self, values: pd.Series | pd.Timestamp | datetime | None) -> pd.Series | pd.Timestamp | None:
        """UTC instants in the system's time zone (a Series, or one timestamp)."""
        if values is None:
            return None
        if isinstance(values, pd.Series):
            series = pd.to_datetime(values, utc=True)
            return series.dt.tz_convert(self.tz)
        stamp = pd.Timestamp(values)
        if pd.isna(stamp):
            return None
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).tz_convert(self.tz)

    def fmt(self, value: pd.Timestamp | datetime | None) -> str:
        """One instant as local wall time with its zone abbreviation, e.g. ``2023-03-09 07:55 PST``."""
        stamp = self.local(value)
        if stamp is None or not isinstance(stamp, pd.Timestamp):
            return "-"
        return stamp.strftime("%Y-%m-%d %H:%M %Z")

    def fmt_dt(self, dt: str | None) -> str:
        """A ``dt`` partition value as local time."""
        return self.fmt(parse_partition_value(dt)) if dt else "-"


# session_state keys of the city picker: the picked city (the sidebar widget's key), and a city
# another page asks for (set before the widget exists, on the next run).
CITY_KEY = "city"
PICK_KEY = "_pick_city"
KEPT_KEY = "_city"  # a copy that is not a widget's: Streamlit drops a widget's state on a run without it


@st.cache_resource(show_spinner=False)
def _fleet_file(path: str, mtime: float, _base: Settings) -> Fleet | str:
    try:
        return load_fleet(Path(path), _base)
    except FleetError as exc:
        return str(exc)


def fleet_of(base: Settings) -> Fleet | None:
    """The fleet file the dashboard was started with (``bikeshare --fleet f dashboard``), if any.

    A broken file is named in the sidebar and ignored (the cities then come from the lake)."""
    path = os.environ.get(FLEET_ENV_VAR)
    if not path:
        return None
    mtime = Path(path).stat().st_mtime if Path(path).is_file() else 0.0
    found = _fleet_file(path, mtime, base)
    if isinstance(found, str):
        st.sidebar.error(f"Fleet file not used: {found}")
        return None
    return found


def city_choices(base: Settings) -> list[str]:
    """The cities the picker offers: the fleet file's (in its order), then the lake's other cities;
    the ``city`` setting alone when there are none yet."""
    fleet = fleet_of(base)
    keys = list(fleet.keys) if fleet is not None else []
    lake = q.lake_cities(base.lake_uri, base.s3_endpoint_url, q.epoch_of(base.dashboard_cache_ttl_s))
    keys += [key for key in lake if key not in keys]
    return keys or [base.city]


def current_city(base: Settings) -> str:
    """The city every page shows, from one place: the sidebar picker, else the ``?city=`` of the URL,
    else the ``city`` setting (when the lake or fleet has it), else the first city."""
    choices = city_choices(base)
    state = st.session_state
    for asked in (state.get(PICK_KEY), state.get(CITY_KEY), state.get(KEPT_KEY), st.query_params.get(CITY_KEY)):
        if asked in choices:
            return str(asked)
    return base.city if base.city in choices else choices[0]


def city_settings(base: Settings, key: str) -> Settings:
    """The settings of city ``key``: its fleet file entry, else ``base`` for that city."""
    fleet = fleet_of(base)
    if fleet is not None and key in fleet.keys:
        return fleet.settings_of(key)
    return base if base.city == key else base.with_values(city=key)


def city_picker(base: Settings) -> str:
    """The sidebar's city picker (drawn by the app's entry, so it is the same widget on every page);
    the picked city is also kept in the URL (``?city=``); returns it."""
    choices = city_choices(base)
    if PICK_KEY in st.session_state:  # a page asked for a city (the fleet overview's Open buttons)
        st.session_state[CITY_KEY] = st.session_state.pop(PICK_KEY)
    if st.session_state.get(CITY_KEY) not in choices:
        st.session_state[CITY_KEY] = current_city(base)
    key = str(st.sidebar.selectbox("City", choices, key=CITY_KEY, help="The city every page shows."))
    st.session_state[KEPT_KEY] = key
    if st.query_params.get(CITY_KEY) != key:
        st.query_params[CITY_KEY] = key
    return key


def city_context(base: Settings, key: str) -> PageContext:
    """The context of city ``key``: its settings and source, the cache period, its time zone (its
    system_information, else its ``timezone`` setting, else UTC)."""
    settings = city_settings(base, key)
    src = q.Source(settings.lake_uri, settings.s3_endpoint_url, key)
    epoch = q.epoch_of(settings.dashboard_cache_ttl_s)
    info = q.system_info(src, epoch)
    fallback = settings.timezone or "UTC"
    if info.empty:
        return PageContext(settings=settings, src=src, epoch=epoch, tz=fallback, system_name=None)
    return PageContext(
        settings=settings,
        src=src,
        epoch=epoch,
        tz=str(info["timezone"].iloc[0] or fallback),
        system_name=str(info["name"].iloc[0]) if info["name"].iloc[0] else None,
    )


def page_context() -> PageContext:
    """Settings from the environment (``bikeshare dashboard`` passes them) for the picked city."""
    base = load_settings()
    return city_context(base, current_city(base))


def no_data(ctx: PageContext, what: str, table: str, *, extra: str = "") -> None:
    """The explicit empty state of a panel. "run `bikeshare Y`" only while the table has never been
    written; otherwise say that it has rows, up to when, but none for this panel."""
    tail = f" {extra}" if extra else ""
    latest = q.latest_partitions(ctx.src, ctx.epoch, table, 1)
    if not latest:
        command = q.PRODUCED_BY.get(table, "the job that writes " + table)
        st.info(f"No {what} yet: run `{command}` to produce it (table `{table}`).{tail}")
        return
    st.info(
        f"No {what}: table `{table}` has rows (newest partition {ctx.fmt_dt(latest[0])}), none for this panel.{tail}"
    )


@st.cache_resource(show_spinner=False)
def _registry_loader(tracking_uri: str, city: str, max_age_s: float, _settings: Settings) -> RegistryLoader:
    return RegistryLoader(settings=_settings, max_age_s=max_age_s)


def registry_loader(settings: Settings) -> RegistryLoader:
    """The process's background reader of the MLflow registry for this store and the city of
    ``settings`` (the picked city's, see :func:`city_settings`)."""
    return _registry_loader(settings.tracking_uri, settings.city, max(settings.dashboard_cache_ttl_s, 60.0), settings)


def operator_name() -> str:
    """Default name for an acknowledgement: the OS user running the dashboard."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def sidebar(ctx: PageContext) -> None:
    """System, city, lake, time zone, newest data, and the Refresh button."""
    with st.sidebar:
        st.markdown(f"**{ctx.system_name or 'Bike share'}** · city `{ctx.src.city}`")
        st.caption(f"Times in {ctx.tz} (the system's time zone).")
        latest = q.latest_partitions(ctx.src, ctx.epoch, "station_status", 1)
        st.caption(f"Newest snapshot: {ctx.fmt_dt(latest[0]) if latest else 'none yet'}")
        st.caption(f"Lake: `{ctx.src.lake_uri}`")
        if st.button("Refresh data", help="Forget cached query results and re-read the lake."):
            q.clear_caches()
            st.rerun()


def page_done(ctx: PageContext) -> None:
    """End of every page: start the background registry read (if stale) once the page is drawn, so
    that it does not compete with the page's own work and Model health finds it done."""
    registry_loader(ctx.settings).poll()


HISTORY_CHOICES = (1, 3, 7, 14, 28)


def history_days(ctx: PageContext) -> int:
    """The "history" selector of the pages with charts over time (default dashboard_history_days)."""
    default = ctx.settings.dashboard_history_days
    choices = sorted({*HISTORY_CHOICES, default})
    return int(
        st.sidebar.selectbox(
            "History (days)",
            choices,
            index=choices.index(default),
            key="history_days",
            help="Days the charts over time cover; more days read more of the lake.",
        )
    )


# ---- the top of every page: status bar, last read, auto-refresh ------------------------------


def job_intervals(settings: Settings) -> dict[str, float]:
    """Seconds between two runs of each job of the loop runner (its schedules)."""
    from bikeshare.orchestration.jobs import schedules

    return {job: every.interval.total_seconds() for job, every in schedules(settings).items()}


def data_age_thresholds(settings: Settings) -> tuple[float, float]:
    """(warning, critical) seconds of the ``data_delay`` rule in force (docs/ops_sla.md)."""
    from bikeshare.monitoring.rules import RulesFileError, load_rules

    try:
        rules = load_rules(settings.alert_rules_path)
    except (RulesFileError, OSError, ValueError):  # the monitor reports a broken rules file; keep the seed ones
        return DATA_AGE_WARNING_S, DATA_AGE_CRITICAL_S
    for rule in rules.rules:
        if rule.name == "data_delay":
            return (
                rule.warning if rule.warning is not None else DATA_AGE_WARNING_S,
                rule.critical if rule.critical is not None else DATA_AGE_CRITICAL_S,
            )
    return DATA_AGE_WARNING_S, DATA_AGE_CRITICAL_S


def page_clock(ctx: PageContext) -> Clock:
    """The clock the page measures ages against (see :class:`~bikeshare.dashboard.status.Clock`)."""
    lake_now, source = q.lake_clock(ctx.src, ctx.epoch)
    newest = q.latest_partitions(ctx.src, ctx.epoch, "station_status", 1)
    if newest:  # the newest snapshot is lake activity too (a backfill has no later fetch)
        snap = parse_partition_value(newest[0])
        lake_now = snap if lake_now is None else max(pd.Timestamp(lake_now), snap)
    return Clock.of(
        wall=pd.Timestamp.now(tz="UTC"), lake_now=lake_now, source=source, mode=ctx.settings.dashboard_clock
    )


@dataclass(frozen=True)
class StatusItem:
    """One pill of the status bar."""

    key: str
    level: Level
    text: str
    detail: str = ""


def status_items(ctx: PageContext, clock: Clock) -> list[StatusItem]:
    """Data age, the served versions, the firing alerts and the jobs, each with its colour."""
    items: list[StatusItem] = []
    newest = q.latest_partitions(ctx.src, ctx.epoch, "station_status", 1)
    warning_s, critical_s = data_age_thresholds(ctx.settings)
    rule = f"green <= {humanise(warning_s)}, amber <= {humanise(critical_s)}, red beyond (data_delay rule)"
    if newest:
        as_of = parse_partition_value(newest[0])
        age = (clock.now - as_of).total_seconds()
        local, today = ctx.local(as_of), ctx.local(clock.now)
        same_day = isinstance(local, pd.Timestamp) and isinstance(today, pd.Timestamp) and local.date() == today.date()
        when = (
            local.strftime("%H:%M %Z" if same_day else "%Y-%m-%d %H:%M %Z") if isinstance(local, pd.Timestamp) else "-"
        )
        text = f"data as of {when} ({humanise(max(age, 0))} old)"
        if clock.replay:
            text += f" · replay time {ctx.fmt(clock.now)}"
            detail = (
                "Replayed lake: 'old' is measured against the lake's own clock (its newest fetch or job run), "
                f"not the wall clock, which is {humanise((clock.wall - clock.now).total_seconds())} later. {rule}."
            )
        else:
            detail = f"Age against the wall clock. {rule}."
        items.append(StatusItem("data", data_age_level(age, warning_s=warning_s, critical_s=critical_s), text, detail))
    else:
        items.append(StatusItem("data", Level.RED, "no data yet", "Run `bikeshare ingest` (or `bikeshare backfill`)."))

    served = q.served_models(ctx.src, ctx.epoch)
    live = served[~served["shadow"]] if not served.empty else served
    if live.empty and not served.empty:
        items.append(
            StatusItem("served", Level.AMBER, "newest slot scored in shadow only", "The served alias failed there.")
        )
    elif live.empty:
        items.append(StatusItem("served", Level.AMBER, "no served model yet", "No scored batch in the lake."))
    else:
        versions = " · ".join(f"{r.target} v{r.model_version}" for r in live.itertuples(index=False))
        items.append(StatusItem("served", Level.GREEN, f"served {live['alias'].iloc[0]}: {versions}"))

    alerts = q.open_alerts(ctx.src, ctx.epoch)
    firing = alerts[alerts["status"] == "firing"] if not alerts.empty else alerts
    if firing.empty:
        items.append(StatusItem("alerts", Level.GREEN, "no alert firing"))
    else:
        names = ", ".join(f"{r.severity} {r.rule}" for r in firing.itertuples(index=False))
        items.append(StatusItem("alerts", alerts_level(alerts), f"{len(firing)} alert(s) firing", names))

    jobs = job_staleness(q.last_job_runs(ctx.src, ctx.epoch), job_intervals(ctx.settings), clock.now)
    if jobs.empty:
        items.append(StatusItem("jobs", Level.AMBER, "no job run recorded", "Run `bikeshare run`."))
    else:
        late = jobs[jobs["level"] != Level.GREEN]
        level = worst(list(jobs["level"]))
        text = "jobs on time" if late.empty else f"jobs late or failed: {', '.join(late['job'])}"
        detail = "; ".join(
            f"{r.job} last ran {humanise(r.age_s)} ago ({r.status})" for r in jobs.itertuples(index=False)
        )
        items.append(StatusItem("jobs", level, text, detail + ". Amber past 2 intervals, red past 4."))
    return items


def status_html(items: list[StatusItem]) -> str:
    """The status bar as one line of coloured pills (``data-level`` says the colour to a test)."""
    overall = worst([i.level for i in items])
    pills = "".join(
        f'<span class="bs-pill" data-key="{i.key}" data-level="{i.level}" title="{html.escape(i.detail)}" '
        f'style="background:{LEVEL_BACKGROUNDS[i.level]};color:{LEVEL_COLOURS[i.level]};'
        f"border:1px solid {LEVEL_COLOURS[i.level]};border-radius:1rem;padding:0.1rem 0.6rem;margin-right:0.4rem;"
        f'display:inline-block;font-size:0.85rem;">● {html.escape(i.text)}</span>'
        for i in items
    )
    return f'<div class="bs-status" data-level="{overall}" style="margin-bottom:0.3rem;">{pills}</div>'


def status_bar(ctx: PageContext) -> Clock:
    """Render the trust status bar; returns the clock it measured against."""
    clock = page_clock(ctx)
    items = status_items(ctx, clock)
    st.markdown(status_html(items), unsafe_allow_html=True)
    details = [f"**{i.key}**: {i.detail}" for i in items if i.detail]
    if details:
        with st.expander("What the status bar measures", expanded=False):
            st.markdown("\n\n".join(details))
    return clock


def _refresh_when_due(every_s: float) -> None:
    """Body of the auto-refresh fragment: a full rerun once the page is ``every_s`` old."""
    read_at = st.session_state.get("_read_at", 0.0)
    if time.time() - read_at >= every_s * 0.95:
        st.rerun(scope="app")


def auto_refresh(ctx: PageContext) -> None:
    """Re-read the page every ``dashboard_refresh_s`` (0: only the Refresh button)."""
    every = ctx.settings.dashboard_refresh_s
    if every <= 0:
        return
    st.fragment(_refresh_when_due, run_every=every)(every)


def page_start(ctx: PageContext, title: str) -> Clock:
    """Top of every page: tab title, sidebar, status bar, title, when it was read; returns the clock."""
    st.set_page_config(page_title=f"{title} · bike share", page_icon=":bike:", layout="wide")
    sidebar(ctx)
    clock = status_bar(ctx)
    st.title(title)
    st.session_state["_read_at"] = time.time()
    refresh = ctx.settings.dashboard_refresh_s
    st.caption(
        f"Read from the lake at {ctx.fmt(pd.Timestamp.now(tz='UTC'))} "
        f"({pd.Timestamp.now(tz='UTC').tz_convert(ctx.tz):%H:%M:%S}); "
        + (f"re-read every {refresh:g} s, or with Refresh data." if refresh > 0 else "re-read with Refresh data.")
    )
    auto_refresh(ctx)
    return clock
