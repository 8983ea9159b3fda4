"""What the dashboard reads, and how: read-only, names checked against the store, pruned reads.

No streamlit here, so every function is testable on its own. Drawing one machine reads only
that machine's partitions for the chosen window (:meth:`DeltaStore.read` prunes by partition and
file statistics); the catalog (tables, versions, machines, time extents) comes from the Delta
logs alone. Long series are down-sampled with min/max buckets before plotting.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.errors import StoreError
from meshinsights.model import RUN_INDEX, Window
from meshinsights.store import DeltaStore
from meshinsights.store.runs import RunSpan, run_spans
from meshinsights.store.sql import MachineExtent, history_record, listed_tables, table_extents

__all__ = [
    "MAX_POINTS",
    "SECTION_TABLES",
    "Catalog",
    "ReadOnlyStore",
    "analyses",
    "curated_tables",
    "default_window",
    "downsample",
    "empty_note",
    "ingest_quality",
    "load_catalog",
    "md_escape",
    "plot_spec",
    "quarantine_counts",
    "read_window",
    "run_history",
    "series_by",
]

logger = logging.getLogger(__name__)

#: Points per plotted series after down-sampling.
MAX_POINTS = 2000
#: Tables with a section of their own (not listed among the curated series).
SECTION_TABLES = frozenset(
    {"telemetry", "quarantine", "issues", "genai_analysis", "events", "runs", RUN_INDEX}
)
#: The column(s) worth plotting first for known tables; any other table plots its first numeric.
_PLOT_HINTS: dict[str, tuple[str, ...]] = {
    "temperature_hourly": ("mean", "min", "max"),
    "clean": ("value",),
    "rolling": ("mean",),
    "features": ("rate",),
    "anomalies": ("score",),
    "anomalies_mv": ("t2", "q", "t2_limit", "q_limit"),
    "forecasts": ("yhat", "actual"),
    "forecast_errors": ("mae",),
    "cycles": ("median",),
    "cycle_stats": ("median", "cv"),
    "variance": ("cv",),
    "thresholds": ("lower", "center", "upper"),
}
_GROUP_HINTS = {"forecasts": "method", "forecast_errors": "method"}
_NOT_SERIES = frozenset({"count", "n", "n_obs", "horizon", "stage", "n_cycles", "n_components"})


class ReadOnlyStore:
    """The read side of a :class:`DeltaStore`; the dashboard holds nothing that can write."""

    def __init__(self, root: str, *, storage_options: dict[str, str] | None = None) -> None:
        self.__store = DeltaStore(root, storage_options=storage_options)

    @property
    def root(self) -> str:
        return self.__store.root

    def tables(self) -> list[tuple[str, str]]:
        """Every ``(pipeline, table)`` with a valid name."""
        return listed_tables(self.__store)

    def version(self, namespace: str, table: str) -> int | None:
        return self.__store.version(namespace, table)

    def exists(self, namespace: str, table: str) -> bool:
        return self.__store.exists(namespace, table)

    def schema(self, namespace: str, table: str) -> pa.Schema:
        return self.__store.schema(namespace, table)

    def extents(self, namespace: str, table: str) -> dict[str, MachineExtent]:
        return table_extents(self.__store, namespace, table)

    def history(self, namespace: str, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self.__store.history(namespace, table, limit)

    def read(
        self,
        namespace: str,
        table: str,
        machine_id: str,
        window: Window,
        columns: list[str] | None = None,
    ) -> pd.DataFrame:
        """One machine's rows in ``window`` (partition-pruned); never a whole table."""
        return self.__store.read(namespace, table, machine_id, window, columns=columns)

    def runs(self, namespace: str, machine_id: str) -> list[RunSpan]:
        """The machine's runs (a source with runs), oldest first; none without a run index."""
        spans = run_spans(self.__store, namespace, machine_id)
        return sorted(spans.values(), key=lambda s: (s.hull_first, s.run))

    def read_arrow(
        self,
        namespace: str,
        table: str,
        machine_id: str,
        window: Window,
        *,
        columns: list[str] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Like :meth:`read`, as Arrow and unsorted, optionally at an earlier ``version``."""
        return self.__store.read_arrow(
            namespace, table, machine_id, window, columns=columns, version=version
        )


@dataclass(frozen=True)
class Catalog:
    """What the store holds: tables with versions per pipeline, and machines with their extent."""

    root: str
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    machines: dict[str, dict[str, MachineExtent]] = field(default_factory=dict)

    def pipelines(self) -> list[str]:
        """Pipelines that hold at least one machine's data."""
        return [ns for ns in sorted(self.tables) if self.machines.get(ns)]

    def has(self, namespace: str, table: str) -> bool:
        return table in self.tables.get(namespace, {})

    def check(self, namespace: str, table: str, machine_id: str) -> None:
        """Raise StoreError unless pipeline, table and machine are all in the store's listing."""
        if namespace not in self.tables:
            raise StoreError(f"unknown pipeline {namespace!r}; the store has {sorted(self.tables)}")
        if table not in self.tables[namespace]:
            raise StoreError(f"pipeline {namespace!r} has no table {table!r}")
        if machine_id not in self.machines.get(namespace, {}):
            raise StoreError(f"machine {machine_id!r} has no data in pipeline {namespace!r}")


def load_catalog(ro: ReadOnlyStore) -> Catalog:
    """Tables, versions and machines (from ``telemetry``, else every table) for each pipeline."""
    tables: dict[str, dict[str, int]] = {}
    machines: dict[str, dict[str, MachineExtent]] = {}
    listed: dict[str, list[str]] = {}
    for ns, table in ro.tables():
        listed.setdefault(ns, []).append(table)
    for ns, names in listed.items():
        versions = {t: v for t in names if (v := ro.version(ns, t)) is not None}
        if not versions:
            continue
        tables[ns] = versions
        sources = ["telemetry"] if "telemetry" in versions else sorted(versions)
        found: dict[str, MachineExtent] = {}
        for table in sources:
            for machine, extent in ro.extents(ns, table).items():
                found.setdefault(machine, extent)
        machines[ns] = dict(sorted(found.items()))
    return Catalog(root=ro.root, tables=tables, machines=machines)


def default_window(extent: MachineExtent | None, days: int = 7) -> Window:
    """The last ``days`` whole days of a machine's data (today's if the extent is unknown)."""
    latest = extent.max_ts if extent and extent.max_ts else datetime.now().astimezone()
    end = pd.Timestamp(latest).tz_convert("UTC").normalize() + timedelta(days=1)
    start = end - timedelta(days=days)
    if extent and extent.min_ts:
        start = max(start, pd.Timestamp(extent.min_ts).tz_convert("UTC").normalize())
    return Window(start.to_pydatetime(), end.to_pydatetime())


def empty_note(
    table: str, machine_id: str, window: Window, extent: MachineExtent | None
) -> tuple[str, Window | None]:
    """What to say when ``table`` has no rows for the selection, and the days that have some.

    A table can exist and hold nothing for a machine (a run over a window the source had no
    rows for writes none), or hold rows outside the chosen days: either is said plainly.
    """
    if extent is None or not extent.rows or extent.min_ts is None or extent.max_ts is None:
        return (
            f"{table} holds no rows for {machine_id} yet: the runs so far found no source rows "
            "in their windows (or have not reached this step).",
            None,
        )
    last = (window.end - timedelta(days=1)).date()
    lo = pd.Timestamp(extent.min_ts).tz_convert("UTC")
    hi = pd.Timestamp(extent.max_ts).tz_convert("UTC")
    first, after = lo.normalize(), hi.normalize() + timedelta(days=1)
    days = Window(first.to_pydatetime(), after.to_pydatetime())
    return (
        f"{table}: no rows for {machine_id} in {window.start.date()} → {last}. It holds "
        f"{extent.rows:,} rows from {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M} UTC.",
        days,
    )


def read_window(
    ro: ReadOnlyStore, catalog: Catalog, namespace: str, table: str, machine_id: str, window: Window
) -> pd.DataFrame:
    """A checked, pruned read of one machine-window (an empty frame when the table is absent)."""
    if not catalog.has(namespace, table):
        return pd.DataFrame()
    catalog.check(namespace, table, machine_id)
    return ro.read(namespace, table, machine_id, window)


# ---------------------------------------------------------------------- down-sampling


def downsample(
    df: pd.DataFrame, *, x: str = "ts", y: str = "value", max_points: int = MAX_POINTS
) -> pd.DataFrame:
    """At most ``max_points`` rows keeping each time bucket's min and max of ``y``.

    Spikes survive (unlike averaging or striding); a bucket with only nulls keeps one null row
    so gaps stay visible as breaks in the line. Rows must be sorted by ``x``.
    """
    if len(df) <= max_points:
        return df
    buckets = max(1, max_points // 2)
    t = df[x].to_numpy(dtype="datetime64[us]").astype("int64")
    span = int(t[-1] - t[0]) + 1
    bucket = ((t - t[0]) * buckets // span).astype("int64")
    v = df[y].to_numpy(dtype="float64", na_value=np.nan)
    keep = []
    for fill, sign in ((np.inf, 1.0), (-np.inf, -1.0)):
        order = np.lexsort((np.where(np.isnan(v), fill, v) * sign, bucket))
        _, first = np.unique(bucket[order], return_index=True)
        keep.append(order[first])
    rows = np.unique(np.concatenate(keep))
    return df.iloc[rows]


def series_by(
    df: pd.DataFrame, group: str | None, y: str, max_points: int = MAX_POINTS
) -> dict[str, pd.DataFrame]:
    """One down-sampled ``(ts, y)`` frame per value of ``group`` (or one series when None)."""
    if df.empty or y not in df.columns:
        return {}
    parts: Iterable[tuple[Any, pd.DataFrame]] = (
        df.groupby(group, sort=True) if group and group in df.columns else [(y, df)]
    )
    return {
        str(k): downsample(part.sort_values("ts"), y=y, max_points=max_points) for k, part in parts
    }


def curated_tables(catalog: Catalog, namespace: str) -> list[str]:
    """The pipeline's derived tables worth plotting (not raw telemetry or own-section tables)."""
    return [t for t in catalog.tables.get(namespace, {}) if t not in SECTION_TABLES]


def plot_spec(table: str, df: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str | None]:
    """What to plot for ``table``: the frame (time in ``ts``), its columns, the series split."""
    if table == "forecasts" and {"target_ts", "horizon"} <= set(df.columns):
        # One-step-ahead forecasts against what was then observed, on the predicted time.
        df = df[df["horizon"] == 1].drop(columns=["ts"]).rename(columns={"target_ts": "ts"})
    numeric = [
        c
        for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
        and c not in _NOT_SERIES
    ]
    hinted = [c for c in _PLOT_HINTS.get(table, ()) if c in numeric]
    group = _GROUP_HINTS.get(table) or next(
        (g for g in ("metric", "stage", "method") if g in df.columns), None
    )
    return df, (hinted or numeric[:1]), (group if group in df.columns else None)


# ---------------------------------------------------------------------- sections


def quarantine_counts(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows per rule and reason, most frequent first."""
    if quarantine.empty:
        return pd.DataFrame(columns=["rule", "reason", "rows"])
    keys = [c for c in ("rule", "reason") if c in quarantine.columns]
    counts = quarantine.groupby(keys, dropna=False).size().rename("rows").reset_index()
    return counts.sort_values("rows", ascending=False, kind="stable").reset_index(drop=True)


def run_history(
    ro: ReadOnlyStore,
    catalog: Catalog,
    namespace: str,
    machine_id: str,
    window: Window,
    *,
    limit: int = 500,
) -> pd.DataFrame:
    """Commits of the pipeline's tables that touched this machine and overlap ``window``."""
    rows = []
    for table in catalog.tables.get(namespace, {}):
        for commit in ro.history(namespace, table, limit):
            rec = history_record(namespace, table, commit)
            if not _touches(rec, machine_id, window):
                continue
            rows.append(rec)
    if not rows:
        return pd.DataFrame(columns=["committed_at", "table_name", "version", "step", "run_id"])
    df = pd.DataFrame(rows).drop(columns=["pipeline"])
    return df.sort_values(["committed_at", "table_name"], ascending=[False, True]).reset_index(
        drop=True
    )


def _touches(rec: dict[str, Any], machine_id: str, window: Window) -> bool:
    machines = rec.get("machines")
    try:
        listed = json.loads(machines) if machines else None
    except ValueError:
        listed = None  # "N machines": a group commit; its members are not recorded
    if isinstance(listed, list) and machine_id not in listed:
        return False
    start, end = rec.get("window_start"), rec.get("window_end")
    if start is None or end is None:
        return False  # not a step's commit (e.g. the empty commit that creates a table)
    if rec.get("windows"):  # a batch that wrote separate stretches: the gaps are untouched
        spans = [Window.parse(w["start"], w["end"]) for w in json.loads(rec["windows"])]
        return any(s.overlaps(window) for s in spans)
    return bool(start < window.end and end > window.start)


def ingest_quality(history: pd.DataFrame) -> dict[str, int]:
    """Rows in/clean/quarantined/duplicates over the latest ingest commit of each window."""
    keys = ("rows_in", "rows_clean", "rows_quarantined", "duplicates_removed")
    if history.empty or "step" not in history.columns:
        return dict.fromkeys(keys, 0)
    ingest = history[(history["step"] == "ingest") & (history["table_name"] == "telemetry")]
    latest = ingest.sort_values("committed_at").drop_duplicates(
        ["window_start", "window_end"], keep="last"
    )
    return {k: int(pd.to_numeric(latest.get(k), errors="coerce").fillna(0).sum()) for k in keys}


def analyses(genai: pd.DataFrame) -> list[dict[str, Any]]:
    """The analyses in force (``current``), newest window first, with findings parsed."""
    if genai.empty:
        return []
    df = genai[genai["current"].fillna(False).astype(bool)] if "current" in genai.columns else genai
    df = df.sort_values("ts", ascending=False, kind="stable")
    out = []
    for record in df.to_dict("records"):
        row = {k: (None if _missing(v) else v) for k, v in record.items()}
        parsed = _json(row.get("findings"))
        body = parsed if isinstance(parsed, dict) else {"findings": parsed or []}
        out.append(
            {
                **{
                    k: row.get(k)
                    for k in (
                        "ts",
                        "window_end",
                        "provider",
                        "model",
                        "status",
                        "error",
                        "response",
                        "analyzed_at",
                    )
                },
                "severity": row.get("overall_severity")
                or body.get("overall_severity")
                or row.get("severity")
                or "info",
                "summary": row.get("summary") or body.get("summary") or "",
                "findings": [f for f in body.get("findings", []) if isinstance(f, dict)],
                "actions": [a for a in body.get("recommended_actions", []) if isinstance(a, dict)],
            }
        )
    return out


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$=])")


def md_escape(text: Any) -> str:
    """Untrusted text (model answers, device text) as inert markdown: no links, images, HTML."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT


def _json(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None
