"""Pipeline KPIs from the Delta commit metadata, in the Prometheus text format.

Per pipeline and machine, over the ingest commits in force (the latest one per window, as the
dashboard's data-quality section counts them): rows in, clean, quarantined and duplicates
removed, and the data-quality rate. Freshness: the end of the newest window each step committed
for the machine. Durations: each step's latest work time, and the latest run's wall time (from
its first commit's start — commit time minus recorded work seconds — to its last commit).

Computed on each scrape from the logs (no state in the server), so what Prometheus sees is what
``meshinsights sql`` would answer over ``meshinsights_history``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from meshinsights.dashboard.data import ReadOnlyStore
from meshinsights.store.sql import history_record

__all__ = ["commit_frame", "kpi_families", "metrics_text"]

_COUNTS = {
    "rows_in": "Source rows read by ingest (windows in force)",
    "rows_clean": "Rows that passed validation",
    "rows_quarantined": "Rows sent to quarantine with a reason",
    "duplicates_removed": "Duplicate source rows dropped",
}


def commit_frame(ro: ReadOnlyStore) -> pd.DataFrame:
    """One row per (commit, machine) of every table: group commits are listed per member."""
    rows = []
    for ns, table in ro.tables():
        for commit in ro.history(ns, table):
            rec = history_record(ns, table, commit)
            if rec["step"] is None:
                continue
            try:
                listed = json.loads(rec["machines"] or "null")
            except ValueError:
                listed = None  # "N machines": a large group; its members are not recorded
            for machine in listed if isinstance(listed, list) else [None]:
                rows.append({**rec, "machine_id": machine})
    return pd.DataFrame(rows)


def _epoch(ts: Any) -> float:
    return pd.Timestamp(ts).timestamp()


def kpi_families(commits: pd.DataFrame) -> list[GaugeMetricFamily]:
    """The gauges for one scrape, from :func:`commit_frame`'s rows."""
    labels = ["pipeline", "machine"]
    counts = {
        k: GaugeMetricFamily(f"meshinsights_ingest_{k}", doc, labels=labels)
        for k, doc in _COUNTS.items()
    }
    quality = GaugeMetricFamily(
        "meshinsights_ingest_quality_ratio",
        "Share of distinct source rows that passed validation",
        labels=labels,
    )
    fresh = GaugeMetricFamily(
        "meshinsights_last_window_end_timestamp_seconds",
        "End of the newest window a step committed for the machine (freshness)",
        labels=[*labels, "step"],
    )
    step_seconds = GaugeMetricFamily(
        "meshinsights_step_seconds",
        "Work seconds before the commit, latest commit of each step",
        labels=[*labels, "step"],
    )
    run_seconds = GaugeMetricFamily(
        "meshinsights_last_run_seconds",
        "Wall time of the machine's latest run, first commit's start to last commit",
        labels=labels,
    )
    runs = GaugeMetricFamily(
        "meshinsights_runs", "Distinct run ids that committed for the machine", labels=labels
    )
    families = [*counts.values(), quality, fresh, step_seconds, run_seconds, runs]
    if commits.empty:
        return families
    df = commits[commits["machine_id"].notna()].copy()
    ingest = df[(df["step"] == "ingest") & (df["table_name"] == "telemetry")]
    latest = ingest.sort_values("committed_at").drop_duplicates(
        ["pipeline", "machine_id", "window_start", "window_end"], keep="last"
    )
    for (ns, m), part in latest.groupby(["pipeline", "machine_id"], sort=True):
        sums = {k: int(pd.to_numeric(part[k], errors="coerce").fillna(0).sum()) for k in _COUNTS}
        for k, family in counts.items():
            family.add_metric([ns, m], sums[k])
        distinct = sums["rows_in"] - sums["duplicates_removed"]
        rate = 1.0 if distinct <= 0 else 1.0 - sums["rows_quarantined"] / distinct
        quality.add_metric([ns, m], rate)
    stepped = df[df["window_end"].notna()]
    for (ns, m, step), part in stepped.groupby(["pipeline", "machine_id", "step"], sort=True):
        fresh.add_metric([ns, m, step], _epoch(part["window_end"].max()))
        newest = part.sort_values("committed_at").iloc[-1]
        if pd.notna(newest.get("seconds")):
            step_seconds.add_metric([ns, m, step], float(newest["seconds"]))
    df["start"] = df["committed_at"] - pd.to_timedelta(df["seconds"].fillna(0), unit="s")
    for (ns, m), part in df[df["run_id"].notna()].groupby(["pipeline", "machine_id"], sort=True):
        runs.add_metric([ns, m], part["run_id"].nunique())
        last_run = part.loc[part["committed_at"].idxmax(), "run_id"]
        of_run = part[part["run_id"] == last_run]
        run_seconds.add_metric(
            [ns, m], (of_run["committed_at"].max() - of_run["start"].min()).total_seconds()
        )
    return families


class _Scrape(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.families


def metrics_text(ro: ReadOnlyStore) -> tuple[bytes, str]:
    """The exposition body and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(kpi_families(commit_frame(ro))))
    return generate_latest(registry), CONTENT_TYPE_LATEST
