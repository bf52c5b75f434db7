"""What every page needs: settings, the lake source and cache period, the system's time zone, and
small display helpers (local times, "no data yet" notices that name the producing command)."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.registry_view import RegistryLoader
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


def page_context() -> PageContext:
    """Settings from the environment (``bikeshare dashboard`` passes them), the source, the time zone."""
    settings = load_settings()
    src = q.Source(settings.lake_uri, settings.s3_endpoint_url, settings.city)
    epoch = q.epoch_of(settings.dashboard_cache_ttl_s)
    info = q.system_info(src, epoch)
    if info.empty or not info["timezone"].iloc[0]:
        return PageContext(settings=settings, src=src, epoch=epoch, tz="UTC", system_name=None)
    return PageContext(
        settings=settings,
        src=src,
        epoch=epoch,
        tz=str(info["timezone"].iloc[0]),
        system_name=str(info["name"].iloc[0]) if info["name"].iloc[0] else None,
    )


def no_data(what: str, table: str, *, extra: str = "") -> None:
    """The explicit empty state of a panel: what is missing and which command produces it."""
    command = q.PRODUCED_BY.get(table, "the job that writes " + table)
    st.info(f"No {what} yet: run `{command}` to produce it (table `{table}`).{(' ' + extra) if extra else ''}")


@st.cache_resource(show_spinner=False)
def _registry_loader(tracking_uri: str, city: str, max_age_s: float, _settings: Settings) -> RegistryLoader:
    return RegistryLoader(settings=_settings, max_age_s=max_age_s)


def registry_loader(settings: Settings) -> RegistryLoader:
    """The process's background reader of the MLflow registry for this store and city."""
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
