"""Data freshness: per feed the latest partition and its delay, ingest latency over time, quarantined
batches with their reasons, masked stations."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.charts import text_time, time_lines
from bikeshare.dashboard.context import PageContext, history_days, no_data, page_context, page_done, page_start
from bikeshare.dashboard.status import Clock, humanise, is_replay_source
from bikeshare.lake.store import parse_partition_value


def feeds_panel(ctx: PageContext, log: pd.DataFrame, clock: Clock) -> None:
    now = clock.now
    st.subheader("Feeds")
    feeds = q.feed_partitions(ctx.src, ctx.epoch)
    if feeds["latest_dt"].isna().all():
        no_data(ctx, "feed partition", "station_status")
        return
    rows = []
    for _, feed in feeds.iterrows():
        row: dict[str, object] = {"feed": feed["feed"], "table": feed["table"]}
        if feed["latest_dt"]:
            at = parse_partition_value(feed["latest_dt"])
            row["latest partition"] = f"dt={feed['latest_dt']}"
            row["partition time"] = ctx.fmt(at)
            row["delay"] = humanise((now - at).total_seconds())
        else:
            row["latest partition"] = "none yet"
        mine = log[log["feed"] == feed["feed"]] if not log.empty else log
        if not mine.empty:
            last = mine.iloc[-1]
            row["last fetch"] = ctx.fmt(last["fetched_at"])
            row["last outcome"] = last["outcome"]
            latency = mine["ingest_latency_s"].dropna()
            row["last ingest latency"] = humanise(latency.iloc[-1]) if not latency.empty else "-"
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    latest = dict(zip(feeds["feed"], feeds["latest_dt"], strict=True))
    info, status = latest.get("station_information"), latest.get("station_status")
    if info and status and info > status:
        st.info(
            f"station_information's newest version ({ctx.fmt_dt(info)}) is newer than the newest status snapshot "
            f"({ctx.fmt_dt(status)}): a backfill writes the information versions of its whole recording at once "
            "(each valid from its recorded time), while status stops where the live data stops. The station list "
            "in force at the status time is the version valid then."
        )
    st.caption(
        f"Delay: {'the replay time' if clock.replay else 'now'} ({ctx.fmt(now)}) minus the newest partition's "
        "time (dt is the snapshot's last_updated "
        "minute for status, valid_from for information)."
    )


def latency_panel(ctx: PageContext, log: pd.DataFrame) -> None:
    hours = ctx.settings.dashboard_recent_hours
    st.subheader("Ingest latency")
    if log.empty:
        no_data(ctx, "ingest log row", "ingest_log")
        return
    timed = log[log["ingest_latency_s"].notna() & (log["outcome"] == "committed")]
    if timed.empty:
        st.info(
            f"No latency recorded in the last {hours} h of the ingest log: backfilled batches replay the past and "
            "carry none. A live `bikeshare ingest` records feed last_updated -> committed for every batch."
        )
    else:
        negative = timed[timed["ingest_latency_s"] < 0]
        st.altair_chart(
            time_lines(timed, x="published_at", y="ingest_latency_s", color="feed", tz=ctx.tz, y_title="latency (s)",
                       rules={"0 s": 0.0} if not negative.empty else None, color_title=None),
            width="stretch",
        )  # fmt: skip
        if not negative.empty:
            st.warning(
                f"{len(negative)} of {len(timed)} batches have a negative latency (down to "
                f"{humanise(negative['ingest_latency_s'].min())}): the feed's last_updated is later than our commit, "
                "i.e. the feed's clock runs ahead of this machine's (clock skew). They are drawn below the 0 s line "
                "as measured, not clipped."
            )
    outcomes = log.groupby(["feed", "outcome"]).size().unstack(fill_value=0).reset_index()
    st.caption(f"Batches of the last {hours} h of the ingest log by outcome:")
    st.dataframe(outcomes, hide_index=True)
    reconcile(ctx, log)


def reconcile(ctx: PageContext, log: pd.DataFrame) -> None:
    """Why the station_status batches of the log and the ingest job runs differ in number."""
    status = log[log["feed"] == "station_status"]
    if status.empty:
        return
    replayed = status["source"].map(is_replay_source)
    runs = q.job_runs(ctx.src, ctx.epoch, ctx.settings.dashboard_recent_hours)
    ingest_runs = runs[runs["job"] == "ingest"] if not runs.empty else runs
    repeated = int(status["outcome"].isin(["duplicate", "unchanged"]).sum())
    st.caption(
        f"Reconciling: {len(status)} station_status batches in the log = {int((~replayed).sum())} fetched from a "
        f"live feed + {int(replayed.sum())} from recordings, backfills or a replay server (a backfill writes "
        f"batches without any job run); {repeated} of them were duplicates or unchanged snapshots. "
        f"{len(ingest_runs)} ingest job runs in the same hours: a run polls once, and a run that fails before "
        "its fetch logs no batch, so the two counts agree only for a live feed without failures."
    )


def quarantine_panel(ctx: PageContext, days: int) -> None:
    st.subheader("Quarantined batches")
    rejected = q.quarantined(ctx.src, ctx.epoch, days)
    if rejected.empty:
        if not q.latest_partitions(ctx.src, ctx.epoch, "quarantine", 1):
            st.success("No batch has ever been quarantined: every feed batch passed the contract.")
        else:
            st.success(f"No batch quarantined in the last {days} days.")
        return
    shown = rejected.assign(fetched_at=text_time(rejected["fetched_at"], ctx.tz))
    st.dataframe(shown, hide_index=True)


def masked_panel(ctx: PageContext, log: pd.DataFrame) -> None:
    st.subheader("Masked stations")
    masked = q.masked_stations(ctx.src, ctx.epoch)
    status_dts = q.latest_partitions(ctx.src, ctx.epoch, "station_status", 1)
    if not status_dts:
        no_data(ctx, "station snapshot", "station_status")
        return
    st.caption(
        f"Rows of the newest snapshot ({ctx.fmt_dt(status_dts[0])}) masked by the data contract: kept in the lake, "
        "not scored."
    )
    if masked.empty:
        st.success("No station is masked in the newest snapshot.")
    else:
        shown = masked.copy()
        for col in ("last_reported", "last_updated"):
            shown[col] = text_time(shown[col], ctx.tz)
        st.dataframe(shown, hide_index=True)
    status_log = log[(log["feed"] == "station_status") & (log["outcome"] == "committed")] if not log.empty else log
    if not status_log.empty and status_log["rows_masked"].notna().any():
        st.altair_chart(
            time_lines(status_log, x="published_at", y="rows_masked", tz=ctx.tz, y_title="masked rows per snapshot"),
            width="stretch",
        )


def main() -> None:
    ctx = page_context()
    clock = page_start(ctx, "Data freshness")
    days = history_days(ctx)
    log = q.ingest_recent(ctx.src, ctx.epoch, ctx.settings.dashboard_recent_hours)
    feeds_panel(ctx, log, clock)
    latency_panel(ctx, log)
    quarantine_panel(ctx, days)
    masked_panel(ctx, log)
    page_done(ctx)


if __name__ == "__main__":
    main()
