"""System health: endpoint latency and errors, inference batch success, job runs, alerts (with ack)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.charts import text_time, time_lines
from bikeshare.dashboard.context import (
    PageContext,
    history_days,
    job_intervals,
    no_data,
    operator_name,
    page_context,
    page_done,
    page_start,
)
from bikeshare.dashboard.status import (
    JOB_AMBER_INTERVALS,
    JOB_RED_INTERVALS,
    LEVEL_BACKGROUNDS,
    Clock,
    Level,
    humanise,
    job_staleness,
)


def endpoint_panel(ctx: PageContext, days: int) -> None:
    st.subheader("Endpoint latency and errors")
    metrics = q.endpoint_metrics(ctx.src, ctx.epoch, days)
    if metrics.empty:
        no_data(ctx, "endpoint metrics", "endpoint_metrics")
        return
    routes = sorted(metrics["route"].dropna().unique())
    route = st.selectbox("Route", routes, index=routes.index("all") if "all" in routes else 0, key="route")
    part = metrics[metrics["route"] == route]
    last = part.iloc[-1]
    c = st.columns(4)
    c[0].metric("P50 (ms)", f"{last['p50_ms']:.1f}")
    c[1].metric("P95 (ms)", f"{last['p95_ms']:.1f}")
    c[2].metric("error rate", f"{last['error_rate']:.2%}")
    c[3].metric("requests", int(last["requests"]))
    st.caption(f"Latest window ends {ctx.fmt(last['window_end'])}.")
    left, right = st.columns(2)
    latency = part.melt(id_vars=["window_end"], value_vars=["p50_ms", "p95_ms"], var_name="percentile")
    latency["percentile"] = latency["percentile"].map({"p50_ms": "P50", "p95_ms": "P95"})
    left.altair_chart(
        time_lines(latency, x="window_end", y="value", color="percentile", tz=ctx.tz, y_title="latency (ms)",
                   color_title=None),
        width="stretch",
    )  # fmt: skip
    right.altair_chart(
        time_lines(part, x="window_end", y="error_rate", tz=ctx.tz, y_title="error rate (%)", y_format=".2%"),
        width="stretch",
    )


def batches_panel(ctx: PageContext, days: int) -> None:
    st.subheader("Inference batches")
    hourly, failures = q.batch_panels(ctx.src, ctx.epoch, days)
    if hourly.empty:
        no_data(ctx, "inference batch", "inference_batches")
        return
    ok, failed = int(hourly["ok"].sum()), int(hourly["failed"].sum())
    c = st.columns(3)
    c[0].metric("success rate", f"{ok / (ok + failed):.1%}" if ok + failed else "-")
    c[1].metric("batches ok", ok)
    c[2].metric("failed", failed)
    st.caption(
        f"Served alias, last {days} days of batches; success = ok / (ok + failed), "
        "skipped batches (slot already scored, no fresh snapshot) not counted."
    )
    left, right = st.columns(2)
    left.altair_chart(
        time_lines(
            hourly,
            x="hour",
            y="success_rate",
            tz=ctx.tz,
            y_title="success rate per hour (%)",
            y_domain=(0, 1),
            y_format=".0%",
        ),
        width="stretch",
    )
    right.altair_chart(
        time_lines(hourly, x="hour", y="p95_duration_s", tz=ctx.tz, y_title="P95 batch duration (s)"),
        width="stretch",
    )
    if not failures.empty:
        st.markdown("**Recent failed batches**")
        st.dataframe(failures.assign(feature_time=text_time(failures["feature_time"], ctx.tz)), hide_index=True)


def jobs_panel(ctx: PageContext, clock: Clock) -> None:
    hours = ctx.settings.dashboard_recent_hours
    st.subheader("Job runs")
    runs = q.job_runs(ctx.src, ctx.epoch, hours)
    if runs.empty:
        no_data(ctx, "job run", "job_runs")
        return
    since = "the replay time" if clock.replay else "now"
    st.caption(
        f"Runs started in the {hours} h before the newest run. State: the last run's age at {since} "
        f"({ctx.fmt(clock.now)}) against the job's interval: amber past {JOB_AMBER_INTERVALS} intervals, "
        f"red past {JOB_RED_INTERVALS}; a failed last run is at least amber."
    )
    latest = runs.groupby("job", sort=True).head(1)
    counts = runs.groupby("job")["status"].value_counts().unstack(fill_value=0).reset_index()
    stale = job_staleness(latest[["job", "status", "started_at"]], job_intervals(ctx.settings), clock.now)
    summary = latest[["job", "status", "started_at", "duration_s", "lag_s", "error"]].merge(counts, on="job")
    summary = summary.merge(stale[["job", "age_s", "interval_s", "level"]], on="job")
    summary = summary.assign(
        state=summary["level"].map(lambda v: {"green": "on time", "amber": "late", "red": "stopped"}.get(str(v), "-")),
        **{
            "last run age": summary["age_s"].map(humanise),
            "interval": summary["interval_s"].map(humanise),
        },
    ).drop(columns=["age_s", "interval_s"])
    summary = summary.rename(columns={"status": "last status", "started_at": "last start"})
    summary["last start"] = text_time(summary["last start"], ctx.tz)
    front = ["job", "state", "last status", "last start", "last run age", "interval"]
    summary = summary[front + [c for c in summary.columns if c not in front and c != "level"]]

    def colour(row: pd.Series) -> list[str]:
        level = stale.set_index("job")["level"].get(row["job"])
        background = LEVEL_BACKGROUNDS.get(level, "") if level != Level.GREEN else ""
        return [f"background-color: {background}" if background else ""] * len(row)

    st.dataframe(summary.style.apply(colour, axis=1), hide_index=True, key="jobs_table")
    with st.expander("Recent runs"):
        recent = runs.head(200)
        for col in ("scheduled_at", "started_at", "finished_at"):
            recent = recent.assign(**{col: text_time(recent[col], ctx.tz)})
        st.dataframe(recent, hide_index=True)


def ack_form(ctx: PageContext, firing: pd.DataFrame) -> None:
    """Acknowledge a firing alert through the monitoring API (appends an 'acknowledged' event)."""
    labels = {r["alert_id"]: f"{r['severity']} · {r['fingerprint']}" for _, r in firing.iterrows()}
    with st.form("ack", clear_on_submit=False):
        alert_id = st.selectbox("Firing alert", list(labels), format_func=labels.get, key="ack_alert")
        by = st.text_input("Acknowledged by", value=operator_name(), key="ack_by")
        submitted = st.form_submit_button("Acknowledge")
    if submitted:
        if not by.strip():
            st.error("Say who acknowledges the alert.")
            return
        # imported on submit only: monitoring.store pulls in scipy (seconds) for its drift module
        from bikeshare.monitoring.acks import AlertNotFoundError, AlertStateError, AlertStore, ack_alert

        store = AlertStore(q.reader(ctx.src, ctx.epoch).lake, city=ctx.src.city)  # the lake the page reads
        try:
            event = ack_alert(store=store, alert_id=str(alert_id), by=by.strip())
        except (AlertNotFoundError, AlertStateError) as exc:
            st.error(str(exc))
            return
        q.open_alerts.clear()
        q.resolved_alerts.clear()
        st.session_state["acked"] = f"Acknowledged {labels[alert_id]} as {by.strip()} (MTTA {event.mtta_s:.0f} s)."
        st.rerun()


def alerts_panel(ctx: PageContext) -> None:
    st.subheader("Alerts")
    if "acked" in st.session_state:
        st.success(st.session_state.pop("acked"))
    alerts = q.open_alerts(ctx.src, ctx.epoch)
    if alerts.empty:
        resolved = q.resolved_alerts(ctx.src, ctx.epoch)
        if resolved.empty:
            no_data(ctx, "alert", "alert_events", extra="Nothing has fired so far.")
        else:
            st.success(f"No alert firing or acknowledged ({len(resolved)} resolved recently).")
    else:
        c = st.columns(3)
        c[0].metric("firing", int((alerts["status"] == "firing").sum()))
        c[1].metric("acknowledged", int((alerts["status"] == "acknowledged").sum()))
        c[2].metric("pending", int((alerts["status"] == "pending").sum()))
        shown = alerts.drop(columns=["runbook"])
        for col in ("started_at", "fired_at", "acknowledged_at"):
            shown[col] = text_time(shown[col], ctx.tz)
        st.dataframe(
            shown,
            hide_index=True,
            column_config={"alert_id": st.column_config.TextColumn("alert id", width="small")},
        )
        firing = alerts[alerts["status"] == "firing"]
        if not firing.empty:
            ack_form(ctx, firing)
    resolved = q.resolved_alerts(ctx.src, ctx.epoch)
    if not resolved.empty:
        with st.expander("Recently resolved"):
            shown = resolved.copy()
            for col in ("fired_at", "acknowledged_at", "resolved_at"):
                shown[col] = text_time(shown[col], ctx.tz)
            st.dataframe(shown, hide_index=True)


def main() -> None:
    ctx = page_context()
    clock = page_start(ctx, "System health")
    days = history_days(ctx)
    alerts_panel(ctx)
    endpoint_panel(ctx, days)
    batches_panel(ctx, days)
    jobs_panel(ctx, clock)
    page_done(ctx)


if __name__ == "__main__":
    main()
