"""The dashboard's lower tabs: curated series, issues and events, data quality, run history.

Each tab renders one selection (pipeline, machine, window) through its checked, cached reads
(``app.View``); nothing here opens the store itself.
"""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd
import streamlit as st

from meshinsights.dashboard import charts, data
from meshinsights.dashboard import status as status_

__all__ = ["Selection", "curated_tab", "issues_tab", "quality_tab", "runs_tab"]

_CURATED_FIRST = (
    "temperature_hourly",
    "clean",
    "rolling",
    "features",
    "anomalies_mv",
    "forecasts",
    "cycle_stats",
    "variance",
    "thresholds",
)


class Selection(Protocol):
    """What a tab needs of the page's selection (``app.View``)."""

    @property
    def catalog(self) -> data.Catalog: ...

    @property
    def ns(self) -> str: ...

    @property
    def machine(self) -> str: ...

    def has(self, table: str) -> bool: ...

    def load(self, table: str) -> pd.DataFrame: ...

    def empty(self, table: str, box: Any = None) -> None: ...


def issues_tab(view: Selection) -> None:
    issues = view.load("issues")
    if not view.has("issues"):
        st.info("This pipeline has no issue checks (the hvac_power pipeline has them).")
    elif issues.empty:
        st.success("No issues found for this machine in the selected days.")
    else:
        counts = issues.groupby(["severity", "check"]).size().rename("windows").reset_index()
        st.dataframe(counts, hide_index=True)
        cols = [
            c
            for c in (
                "ts",
                "check",
                "metric",
                "severity",
                "value",
                "limit",
                "first_ts",
                "last_ts",
                "message",
            )
            if c in issues.columns
        ]
        st.dataframe(issues[cols].sort_values("ts", ascending=False), hide_index=True)
    events = view.load("events")
    if not events.empty:
        st.markdown("**Events and alarms**")
        keys = [c for c in ("kind", "severity", "code") if c in events.columns]
        st.dataframe(
            events.groupby(keys, dropna=False)
            .size()
            .rename("count")
            .reset_index()
            .sort_values("count", ascending=False),
            hide_index=True,
        )


def quality_tab(view: Selection, history: pd.DataFrame) -> None:
    q = data.ingest_quality(history)
    cols = st.columns(4)
    for col, (label, key) in zip(
        cols,
        (
            ("rows in", "rows_in"),
            ("clean", "rows_clean"),
            ("quarantined", "rows_quarantined"),
            ("duplicates removed", "duplicates_removed"),
        ),
        strict=True,
    ):
        col.metric(label, f"{q[key]:,}")
    if q["rows_in"]:
        st.caption(f"clean rate {q['rows_clean'] / q['rows_in']:.2%} (latest ingest per window)")
    quarantine = view.load("quarantine")
    counts = data.quarantine_counts(quarantine)
    if counts.empty:
        st.success("No quarantined rows for this machine in the selected days.")
        return
    st.plotly_chart(charts.quarantine_figure(counts), key="quarantine_chart")
    st.dataframe(counts, hide_index=True)
    with st.expander("Quarantined rows (first 500)"):
        st.dataframe(quarantine.head(500), hide_index=True)


def stale_panel(view: Selection, staleness: status_.Staleness) -> None:
    """What ``meshinsights status`` lists for the machine, and the command that redoes it."""
    st.markdown("**Stale or pending windows** (as `meshinsights status` lists them)")
    if staleness.problem:
        st.warning(staleness.problem)
    elif staleness.clean:
        st.success(
            "Nothing stale or pending: every partition was written by the current step "
            "definitions from its current inputs."
        )
    else:
        st.warning(
            f"{len(staleness.rows)} window(s) to redo: "
            f"`meshinsights run {view.machine} --stale` (or `meshinsights status "
            f"{view.machine} --airflow` for the backfill commands)"
        )
        st.dataframe(staleness.rows, hide_index=True)


def runs_tab(view: Selection, history: pd.DataFrame, staleness: status_.Staleness) -> None:
    stale_panel(view, staleness)
    if history.empty:
        st.info("No commits touch this machine and window.")
        return
    runs = (
        history.dropna(subset=["run_id"])
        .groupby("run_id")
        .agg(
            started=("committed_at", "min"),
            finished=("committed_at", "max"),
            steps=("step", lambda s: ", ".join(dict.fromkeys(s.dropna()))),
            commits=("version", "size"),
            rows_written=("rows_written", "sum"),
        )
        .sort_values("started", ascending=False)
        .reset_index()
    )
    st.markdown("**Runs** (from the Delta commit metadata)")
    st.dataframe(runs, hide_index=True)
    st.markdown("**Commits**")
    cols = [
        c
        for c in (
            "committed_at",
            "table_name",
            "version",
            "step",
            "run_id",
            "window_start",
            "window_end",
            "rows_in",
            "rows_written",
            "rows_quarantined",
            "operation",
        )
        if c in history.columns
    ]
    st.dataframe(history[cols], hide_index=True)
    if view.has("runs"):
        st.markdown("**Task runs** (`runs` table)")
        st.dataframe(view.load("runs"), hide_index=True)


def curated_tab(view: Selection) -> None:
    tables = data.curated_tables(view.catalog, view.ns)
    ordered = [t for t in _CURATED_FIRST if t in tables] + [
        t for t in tables if t not in _CURATED_FIRST
    ]
    if not ordered:
        st.info("No curated tables in this pipeline yet.")
        return
    table = st.selectbox("Table", ordered, key=f"curated_{view.ns}")
    df = view.load(table)
    if df.empty:
        view.empty(table)
        return
    frame, columns, group = data.plot_spec(table, df)
    if columns and "ts" in frame.columns:
        st.plotly_chart(
            charts.curated_figure(frame, columns, group, title=table), key="curated_chart"
        )
    with st.expander(f"{table}: {len(df):,} rows (first 1,000)"):
        st.dataframe(df.head(1000), hide_index=True)
