"""The MeshInsights dashboard: one machine and time range over the Delta artifacts (read-only).

Run ``meshinsights dashboard`` or ``streamlit run meshinsights/dashboard/app.py``; the store is
``MESHINSIGHTS_STORE``. Links may preselect ``?pipeline=…&machine=…&start=YYYY-MM-DD&end=…``;
every name is checked against the store's listing before it is used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from meshinsights.dashboard import charts, data
from meshinsights.dashboard import status as status_
from meshinsights.dashboard import tabs as tabs_
from meshinsights.model import EARLIEST, LATEST, RUN, RUN_INDEX, Window
from meshinsights.settings import get_settings

_SEVERITY_MARK = {
    "critical": "red",
    "high": "red",
    "medium": "orange",
    "warning": "orange",
    "low": "blue",
    "info": "gray",
}


@st.cache_resource(show_spinner=False)
def _store(root: str) -> data.ReadOnlyStore:
    # Endpoint and credentials from the environment (never in the cache key or the page).
    return data.ReadOnlyStore(root, storage_options=get_settings().storage_options)


@st.cache_data(ttl=15, show_spinner=False)
def _catalog(root: str) -> data.Catalog:
    return data.load_catalog(_store(root))


@st.cache_data(max_entries=256, show_spinner=False)
def _frame(
    root: str,
    ns: str,
    table: str,
    machine: str,
    start: datetime,
    end: datetime,
    version: int,
    run: str | None = None,
) -> pd.DataFrame:
    # ``version`` is only the cache key: a new commit to the table makes a new entry.
    return _store(root).read(ns, table, machine, Window(start, end, run))


@st.cache_data(max_entries=256, show_spinner=False)
def _has_runs(root: str, ns: str, table: str, version: int) -> bool:
    return RUN in _store(root).schema(ns, table).names


@st.cache_data(max_entries=64, show_spinner=False)
def _runs(root: str, ns: str, machine: str, version: int) -> list[tuple[str, datetime, datetime]]:
    return [(r.run, r.window.start, r.window.end) for r in _store(root).runs(ns, machine)]


@st.cache_data(max_entries=256, show_spinner=False)
def _extents(root: str, ns: str, table: str, version: int) -> dict[str, Any]:
    # From the Delta log's file statistics (no data file read); ``version`` keys the cache.
    return _store(root).extents(ns, table)


@st.cache_data(max_entries=64, show_spinner=False)
def _history(
    root: str,
    ns: str,
    machine: str,
    start: datetime,
    end: datetime,
    versions: tuple[tuple[str, int], ...],
) -> pd.DataFrame:
    return data.run_history(_store(root), _catalog(root), ns, machine, Window(start, end))


@dataclass(frozen=True)
class View:
    """The selection (pipeline, machine, window) and checked, cached reads for it."""

    root: str
    catalog: data.Catalog
    ns: str
    machine: str
    window: Window
    #: The date picker's widget key (the "show the days with data" button resets it).
    days_key: str = ""

    def has(self, table: str) -> bool:
        return self.catalog.has(self.ns, table)

    def empty(self, table: str, box: Any = None) -> None:
        """Say that ``table`` has no rows for the selection, and offer the days that have some."""
        box = box or st
        version = self.catalog.tables[self.ns][table]
        extent = _extents(self.root, self.ns, table, version).get(self.machine)
        note, days = data.empty_note(table, self.machine, self.window, extent)
        box.info(note)
        if days is not None:
            last = (days.end - timedelta(days=1)).date()
            box.button(
                f"Show {days.start.date()} → {last}",
                key=f"show_{table}",
                on_click=_show_days,
                args=(self.days_key, days.start.date(), last),
            )

    def load(self, table: str) -> pd.DataFrame:
        """This machine's rows of ``table`` in the window; empty when the table is absent."""
        if not self.has(table):
            return pd.DataFrame()
        self.catalog.check(self.ns, table, self.machine)
        version = self.catalog.tables[self.ns][table]
        w = self.window
        # A run picked: tables with runs give that run's rows, others the run's time span.
        run = w.run if w.run and _has_runs(self.root, self.ns, table, version) else None
        return _frame(self.root, self.ns, table, self.machine, w.start, w.end, version, run)

    def history(self) -> pd.DataFrame:
        versions = tuple(sorted(self.catalog.tables[self.ns].items()))
        return _history(
            self.root, self.ns, self.machine, self.window.start, self.window.end, versions
        )

    def staleness(self) -> status_.Staleness:
        """Pending and stale windows against the configs (cached per table versions: a
        changed config shows on Refresh)."""
        versions = tuple(sorted(self.catalog.tables[self.ns].items()))
        configs = str(get_settings().configs_dir)
        return _staleness(self.root, configs, self.ns, self.machine, versions)


@st.cache_data(show_spinner=False)
def _staleness(
    root: str, configs: str, ns: str, machine: str, versions: tuple[tuple[str, int], ...]
) -> status_.Staleness:
    return status_.staleness(_store(root), Path(configs), machine, ns)


# ---------------------------------------------------------------------- selection


def _show_days(key: str, first: date, last: date) -> None:
    # The picker takes its value from the link when its own state is gone.
    st.query_params.update({"start": first.isoformat(), "end": last.isoformat()})
    st.session_state.pop(key, None)


def _param(name: str) -> str | None:
    value = st.query_params.get(name)
    return value if isinstance(value, str) and value else None


def _pick_pipeline(catalog: data.Catalog) -> str:
    options = catalog.pipelines()
    wanted = _param("pipeline")
    if wanted is None and (machine := _param("machine")):
        wanted = next((ns for ns in options if machine in catalog.machines[ns]), None)
    index = options.index(wanted) if wanted in options else 0
    if wanted and wanted not in options:
        st.sidebar.warning("The pipeline in the link is not in the store.")
    return st.sidebar.selectbox("Pipeline", options, index=index, key="pipeline")


def _pick_machine(catalog: data.Catalog, ns: str) -> str:
    options = list(catalog.machines[ns])
    wanted = _param("machine")
    if wanted and not any(wanted in machines for machines in catalog.machines.values()):
        st.sidebar.warning("The machine in the link has no data in the store.")
    index = options.index(wanted) if wanted in options else 0
    return st.sidebar.selectbox("Machine", options, index=index, key=f"machine_{ns}")


def _pick_window(extent: Any, key: str) -> Window:
    default = data.default_window(extent)
    lo = extent.min_ts.date() if extent and extent.min_ts else default.start.date()
    hi = extent.max_ts.date() if extent and extent.max_ts else default.end.date()
    start, end = default.start.date(), (default.end - timedelta(days=1)).date()
    try:
        linked = (
            date.fromisoformat(_param("start") or "") if _param("start") else start,
            date.fromisoformat(_param("end") or "") if _param("end") else end,
        )
        if not all(EARLIEST.date() <= d < LATEST.date() - timedelta(days=1) for d in linked):
            raise ValueError("out of range")
        start, end = linked
    except ValueError:
        st.sidebar.warning(
            f"The dates in the link are not YYYY-MM-DD between {EARLIEST.date()} and "
            f"{LATEST.date()}; showing the last days."
        )
    picked = st.sidebar.date_input(
        "Days (UTC)", value=(start, end), key=key, min_value=min(lo, start), max_value=max(hi, end)
    )
    # A 1-tuple while the user has picked only the first day of a new range.
    days = sorted(d for d in (picked if isinstance(picked, tuple | list) else [picked]) if d)
    first, last = (days[0], days[-1]) if days else (start, end)
    return Window.parse(first.isoformat(), (last + timedelta(days=1)).isoformat())


ALL_RUNS = "(every run in these days)"


def _pick_run(catalog: data.Catalog, root: str, ns: str, machine: str, days: Window) -> Window:
    """A source with runs: pick one run (its whole span, its rows only), or all in the days."""
    if not catalog.has(ns, RUN_INDEX):
        return days
    runs = _runs(root, ns, machine, catalog.tables[ns][RUN_INDEX])
    wanted = _param("run")
    shown = [r for r in runs if r[1] < days.end and days.start < r[2] or r[0] == wanted]
    by_id = {r[0]: r for r in shown}
    options = [ALL_RUNS, *by_id]
    if wanted and wanted not in by_id:
        st.sidebar.warning("The run in the link is not a run of this machine.")
    index = options.index(wanted) if wanted in by_id else 0

    def label(run: str) -> str:
        if run == ALL_RUNS:
            return f"{ALL_RUNS} ({len(shown)})"
        _, start, end = by_id[run]
        return f"{run} · {start:%m-%d %H:%M} → {end:%H:%M}"

    picked = st.sidebar.selectbox(
        "Run", options, index=index, key=f"run_{ns}_{machine}", format_func=label
    )
    if picked == ALL_RUNS:
        st.query_params.pop("run", None)
        return days
    st.query_params["run"] = picked
    _, start, end = by_id[picked]
    return Window(start, end, picked)


# ---------------------------------------------------------------------- sections


def _telemetry_section(view: View) -> None:
    st.subheader("Telemetry")
    telemetry = view.load("telemetry")
    if telemetry.empty:
        view.empty("telemetry")
        return
    fig = charts.telemetry_figure(
        telemetry,
        anomalies=view.load("anomalies"),
        thresholds=view.load("thresholds"),
        cycles=view.load("cycles"),
        window_end=view.window.end,
    )
    st.plotly_chart(fig, key="telemetry_chart", config={"displaylogo": False})
    overlays = [t for t in ("anomalies", "thresholds", "cycles") if view.has(t)]
    series = charts.points_plotted(fig, names=set(telemetry["metric"]))
    extra = charts.points_plotted(fig) - series
    st.caption(
        f"{len(telemetry):,} rows → {series:,} points plotted "
        f"(min/max buckets, ≤ {data.MAX_POINTS:,} per metric)"
        + (f"; overlays: {', '.join(overlays)} ({extra:,} points)" if overlays else "")
    )


def _analysis_section(view: View) -> None:
    box = st.container(key="analysis")
    box.subheader("GenAI analysis")
    if not view.has("genai_analysis"):
        box.info(
            "No GenAI analysis in this pipeline yet: add a step `uses: genai_analysis` "
            "to the pipeline config."
        )
        return
    found = data.analyses(view.load("genai_analysis"))
    if not found:
        view.empty("genai_analysis", box)
        return
    for i, a in enumerate(found[:7]):
        _analysis_card(box.container(border=True), a, expanded=i == 0)
    if len(found) > 7:
        box.caption(f"{len(found) - 7} older analyses in range not shown; narrow the days.")


def _analysis_card(box: Any, a: dict[str, Any], *, expanded: bool) -> None:
    # Everything in an analysis row may come from a model or a device: escape it, so a crafted
    # answer cannot render links, images (which would fetch URLs) or HTML.
    esc = data.md_escape
    sev = str(a["severity"]).lower()
    start = pd.Timestamp(a["ts"]).strftime("%Y-%m-%d %H:%M") if a.get("ts") is not None else "?"
    box.markdown(f"**Window {start} UTC** · severity {_badge(sev)}")
    if a["summary"]:
        box.markdown(esc(a["summary"]))
    for f in a["findings"]:
        box.markdown(
            f"- {_badge(str(f.get('severity', '')).lower())} **{esc(f.get('title', ''))}** — "
            f"{esc(f.get('detail', ''))}"
        )
    if a["actions"]:
        box.markdown(
            "**Recommended:** "
            + "; ".join(
                f"{esc(x.get('action', ''))} ({esc(x.get('priority', ''))})" for x in a["actions"]
            )
        )
    who = f"{a.get('provider') or '?'} / {a.get('model') or '?'}, status {a.get('status') or '?'}"
    if a.get("provider") == "offline":
        who += " — rule-based offline analyst, not a language model"
    box.caption(esc(who + (f"; provider error: {a['error']}" if a.get("error") else "")))
    if a.get("response") and expanded:
        with box.expander("Raw response"):
            st.code(str(a["response"])[:4000], language="json")


def _badge(severity: str) -> str:
    """A colored severity word; unknown words are escaped and grey."""
    color = _SEVERITY_MARK.get(severity)
    return f":{color}[**{severity}**]" if color else f":gray[{data.md_escape(severity)}]"


# ---------------------------------------------------------------------- page


def _no_data_note(catalog: data.Catalog, root: str) -> str:
    """No machine has rows yet: say whether the tables are missing or only empty, and why."""
    start = "`make run` (or `meshinsights demo seed`, then `meshinsights run hvac-001 --start "
    start += "2024-01-01 --end 2024-01-03`), then press Refresh"
    if not catalog.tables:
        return f"No artifacts in {root} yet. Run {start}."
    listed = "; ".join(f"{ns}: {', '.join(sorted(t))}" for ns, t in sorted(catalog.tables.items()))
    return (
        f"The store {root} has tables ({listed}) but no rows in them yet: the runs so far found "
        f"no source rows in their windows (a schedule past the end of the source's data does "
        f"that). Run a window the source has data for — {start}."
    )


def main() -> None:
    """Render the page."""
    started = time.perf_counter()
    st.set_page_config(page_title="MeshInsights", layout="wide")
    root = get_settings().store_uri
    st.sidebar.title("MeshInsights")
    if st.sidebar.button("Refresh"):
        st.cache_data.clear()
    catalog = _catalog(root)
    if not catalog.pipelines():
        st.title("MeshInsights")
        st.info(_no_data_note(catalog, root))
        return
    ns = _pick_pipeline(catalog)
    machine = _pick_machine(catalog, ns)
    days_key = f"days_{ns}_{machine}"
    days = _pick_window(catalog.machines[ns].get(machine), key=days_key)
    window = _pick_run(catalog, root, ns, machine, days)
    st.query_params.update({"pipeline": ns, "machine": machine})
    view = View(root, catalog, ns, machine, window, days_key)
    end_day = (days.end - timedelta(days=1)).date()
    st.title(f"{machine}")
    span = (
        f"run {window.run} · {window.start:%Y-%m-%d %H:%M} → {window.end:%Y-%m-%d %H:%M}"
        if window.run
        else f"{window.start.date()} → {end_day}"
    )
    st.caption(f"pipeline {ns} · {span} (UTC) · store {root}")
    _telemetry_section(view)
    _analysis_section(view)
    history = view.history()
    tabs = st.tabs(["Curated series", "Issues & events", "Data quality", "Run history"])
    with tabs[0]:
        tabs_.curated_tab(view)
    with tabs[1]:
        tabs_.issues_tab(view)
    with tabs[2]:
        tabs_.quality_tab(view, history)
    with tabs[3]:
        tabs_.runs_tab(view, history, view.staleness())
    st.sidebar.caption(f"rendered in {time.perf_counter() - started:.2f} s · read-only")


main()
