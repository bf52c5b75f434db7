"""Model health: versions and thresholds per target, online PR-AUC/F1 over 24 h against the KPIs, lift
over persistence, calibration, drift per feature, promotion history."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from bikeshare.dashboard import queries as q
from bikeshare.dashboard.charts import reliability, text_time, time_lines
from bikeshare.dashboard.context import (
    PageContext,
    history_days,
    no_data,
    page_context,
    page_done,
    page_start,
    registry_loader,
)
from bikeshare.registry.client import redact

TARGET_TITLES = {"bikes": "no bikes", "docks": "no docks"}


@st.fragment(run_every=1.0)
def _wait_for_registry(ctx: PageContext) -> None:
    """Polls the background registry read each second; reruns the page once it has an answer."""
    snapshot, error, _ = registry_loader(ctx.settings).poll()
    if snapshot is not None or error is not None:
        st.rerun()
    st.info(f"Reading the MLflow registry at `{redact(ctx.settings.tracking_uri)}` …")


def registry_panel(ctx: PageContext) -> None:
    """Production and staging versions per target from the registry (read in the background)."""
    snapshot, error, _ = registry_loader(ctx.settings).poll()
    if snapshot is None and error is None:
        _wait_for_registry(ctx)
        return
    if snapshot is None:
        st.error(f"MLflow registry unavailable: {error}")
        return
    if snapshot["version"].isna().all():
        st.info(
            "No model holds the production or staging alias yet: train and register one (`bikeshare train` "
            "or `bikeshare pipeline`), then `bikeshare promote`."
        )
    shown = snapshot.drop(columns=["run_id"]).rename(columns={"version": "version (registry)"})
    st.dataframe(shown, hide_index=True)
    if error:
        st.caption(f"Last refresh failed ({error}); showing the previous snapshot.")


def served_panel(ctx: PageContext) -> None:
    served = q.served_models(ctx.src, ctx.epoch)
    if served.empty:
        no_data(ctx, "scored batch (versions and thresholds in use)", "inference")
        return
    served = served.assign(feature_time=text_time(served["feature_time"], ctx.tz))
    st.caption("In use by the latest batch (from the inference rows):")
    st.dataframe(served, hide_index=True)


def events_in(ctx: PageContext, rolling: pd.DataFrame, target: str) -> pd.DataFrame:
    """Production moves of ``target`` and retrain runs within the chart's time range."""
    events = q.model_events(ctx.src, ctx.epoch)
    if events.empty or rolling.empty:
        return events
    lo, hi = rolling["window_end"].min(), rolling["window_end"].max()
    times = pd.to_datetime(events["time"], utc=True)
    mine = events["label"].str.startswith(target) | events["label"].str.startswith("retrain")
    return events[mine & (times >= lo) & (times <= hi)]


def quality_panel(ctx: PageContext, rolling: pd.DataFrame, days: int) -> None:
    st.subheader("PR-AUC (rolling 24 h) and F1 (rolling 24 h)")
    if rolling.empty:
        no_data(ctx, "joined prediction (online quality)", "quality")
        return
    kpis = {"PR-AUC": ctx.settings.kpi_min_pr_auc, "F1": ctx.settings.kpi_min_f1}
    st.caption(
        f"Served alias; 24 h windows ending each hour of the last {days} days; dashed: the seed KPIs; purple "
        "marks: production promotions and retrain runs."
    )
    cols = st.columns(2)
    for col, target in zip(cols, ("bikes", "docks"), strict=True):
        part = rolling[rolling["target"] == target]
        with col:
            st.markdown(f"**{TARGET_TITLES[target]}**")
            if part.empty:
                no_data(ctx, f"joined prediction for {target}", "quality")
                continue
            long = part.melt(
                id_vars=["window_end", "model_version"], value_vars=["pr_auc", "f1"], var_name="metric"
            ).assign(metric=lambda f: f["metric"].map({"pr_auc": "PR-AUC (rolling 24 h)", "f1": "F1 (rolling 24 h)"}))
            rules = {f"KPI {name} {value:.2f}": value for name, value in kpis.items()}
            st.altair_chart(
                time_lines(
                    long,
                    x="window_end",
                    y="value",
                    color="metric",
                    tz=ctx.tz,
                    y_title="score",
                    rules=rules,
                    y_domain=(0, 1),
                    events=events_in(ctx, part, target),
                    color_title=None,
                ),
                width="stretch",
            )
            last = part.iloc[-1]
            st.caption(
                f"Window ending {ctx.fmt(last['window_end'])} (v{last['model_version']}): PR-AUC {last['pr_auc']:.3f}, "
                f"F1 {last['f1']:.3f} on {int(last['rows'])} rows ({int(last['positives'])} short); seed KPIs "
                f"PR-AUC >= {kpis['PR-AUC']:.2f}, F1 >= {kpis['F1']:.2f}."
            )


def lift_panel(ctx: PageContext, lift: pd.DataFrame) -> None:
    st.subheader("Lift over persistence: onsets and all rows")
    if lift.empty:
        no_data(ctx, "joined prediction (lift needs the observed counts)", "quality")
        return
    wide = lift.pivot_table(index=["target", "day", "subset"], columns="scorer", values="pr_auc").reset_index()
    wide["model"], wide["persistence"] = wide["model"].round(3), wide["persistence"].round(3)
    wide["lift"] = (wide["model"] - wide["persistence"]).round(3)
    rows = lift[lift["scorer"] == "model"].set_index(["target", "day", "subset"])[["rows", "positives"]]
    wide = wide.join(rows, on=["target", "day", "subset"])
    wide = wide.sort_values(["target", "day", "subset"], ascending=[True, False, False], kind="mergesort")
    st.caption(
        f"Daily PR-AUC ({ctx.tz} days) of the model and of persistence (score: minus the count at prediction time) "
        f"on the same joined rows; lift = model - persistence. **Onsets** (count > {ctx.settings.shortage_threshold} "
        "at prediction time: the shortage has not begun) is the row that matters: there persistence has no signal."
    )
    st.markdown(onset_lift_html(wide), unsafe_allow_html=True)
    st.dataframe(
        wide.rename(columns={"model": "model PR-AUC (daily)", "persistence": "persistence PR-AUC (daily)"}),
        hide_index=True,
        column_config={"day": st.column_config.DateColumn(f"day ({ctx.tz})")},
        key="lift_table",
    )


def onset_lift_html(wide: pd.DataFrame) -> str:
    """The newest day's onset row per target as one line (the table is a canvas: this line is text)."""
    newest = wide[(wide["subset"] == "onsets") & (wide["day"] == wide["day"].max())]
    parts = [
        f'<span class="bs-onset-lift" data-target="{r.target}" data-lift="{r.lift}">'
        f"<b>{r.target}</b> lift {r.lift:+.3f} (model {r.model:.3f}, persistence {r.persistence:.3f}, "
        f"{int(r.rows)} rows)</span>"
        for r in newest.itertuples(index=False)
        if pd.notna(r.lift)
    ]
    if not parts:
        return '<p class="bs-onset-lift-none">Onsets of the newest day: no row with both scores yet.</p>'
    return f"<p><b>Onsets, newest day ({newest['day'].iloc[0]}):</b> {' · '.join(parts)}</p>"


def calibration_panel(ctx: PageContext, table: pd.DataFrame, days: int) -> None:
    st.subheader("Calibration")
    if table.empty:
        no_data(ctx, "joined prediction (calibration)", "quality")
        return
    st.caption(f"Joined predictions of the last {days} days, 10 probability bins; dashed: perfect calibration.")
    st.altair_chart(reliability(table), width="stretch")


CALENDAR_FEATURE = re.compile(r"hour|weekday|day_of_week|dow|weekend|minute_of_day|month|holiday")


def drift_panel(ctx: PageContext) -> None:
    st.subheader("Drift per feature (PSI, KS)")
    drift = q.drift_latest(ctx.src, ctx.epoch)
    if drift.empty:
        no_data(ctx, "drift evaluation", "drift_scores")
        return
    watched = set(ctx.settings.monitor_drift_features)
    first = drift.iloc[0]
    calendar = drift["feature"].str.contains(CALENDAR_FEATURE)
    alarmed = drift["feature"].isin(watched)
    st.caption(
        f"Newest evaluation {ctx.fmt(first['evaluated_at'])}, live window {ctx.fmt(first['window_start'])} - "
        f"{ctx.fmt(first['window_end'])}. The `feature_drift` alarm watches {len(watched)} features "
        f"(`monitor_drift_features`): {', '.join(sorted(watched))}. Highlighted: drifting features "
        f"({int(drift['drifting'].sum())} of {len(drift)})."
    )
    shown = drift.drop(columns=["evaluated_at", "window_start", "window_end"]).assign(
        alarm=alarmed.map({True: "watched", False: "not watched"})
    )
    for column in ("psi", "ks_stat", "ks_pvalue", "missing_rate", "baseline_missing_rate"):
        shown[column] = shown[column].astype(float).round(3)

    def highlight(row: pd.Series) -> list[str]:
        colour = "background-color: #f8d7da" if bool(row["drifting"]) and row["alarm"] == "watched" else ""
        return [colour] * len(row)

    main = shown[~calendar]
    st.dataframe(main.style.apply(highlight, axis=1), hide_index=True, height=min(38 + 35 * len(main), 600))
    if calendar.any():
        st.markdown("**Calendar features** (expected movement in a short window)")
        st.caption(
            "Hour and weekday of a one-hour window cover a sliver of the training weeks, so their PSI is large by "
            "construction; no alarm watches them."
        )
        st.dataframe(shown[calendar], hide_index=True)


def promotions_panel(ctx: PageContext) -> None:
    st.subheader("Promotion history")
    history = q.promotions(ctx.src, ctx.epoch)
    if history.empty:
        no_data(ctx, "promotion", "promotions")
        return
    st.dataframe(history.assign(at=text_time(history["at"], ctx.tz)), hide_index=True)


def main() -> None:
    ctx = page_context()
    page_start(ctx, "Model health")
    days = history_days(ctx)
    st.subheader("Versions and thresholds")
    registry_slot = st.container()  # filled last: the lake panels do not wait for MLflow
    served_panel(ctx)
    rolling, lift, calibration = q.quality_panels(ctx.src, ctx.epoch, days, ctx.tz, ctx.settings.shortage_threshold)
    quality_panel(ctx, rolling, days)
    left, right = st.columns(2)
    with left:
        lift_panel(ctx, lift)
    with right:
        calibration_panel(ctx, calibration, days)
    drift_panel(ctx)
    promotions_panel(ctx)
    with registry_slot:
        registry_panel(ctx)
    page_done(ctx)


if __name__ == "__main__":
    main()
