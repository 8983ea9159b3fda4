"""The run index: which runs a machine has, their spans, and which changed at each ingest.

A source with runs (``run_column``) is still *ingested* by time window; a pipeline windowed by
run then processes each run whole. To know a run's rows without scanning the machine's
telemetry, and to reprocess exactly the runs that changed, ingest keeps one index row per
(machine, ingest window, run) in the ``run_index`` table — overwritten with the window like
telemetry — holding the run's first and last time in that window, its row count and a digest
of its rows. A run *changed* when its digest in a window differs from the one indexed before;
the changed runs become pending work in the telemetry commit (like reopened windows) until
every step has run over them (:func:`meshinsights.engine.ingest.record_drained`).

``hull_first``/``hull_last`` only ever widen: a run whose rows were removed from the source
still has its old span covered when its outputs are overwritten, so no stale row survives.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd

from meshinsights.errors import ConfigError
from meshinsights.model import RUN, RUN_INDEX, Window
from meshinsights.store import DeltaStore
from meshinsights.store.runs import RUN_INDEX_SCHEMA, RunSpan, run_spans

__all__ = [
    "RUN_INDEX_SCHEMA",
    "RunSpan",
    "index_window",
    "run_spans",
    "run_window",
    "runs_updated_since",
]

logger = logging.getLogger(__name__)


def _digest(rows: pd.DataFrame) -> str:
    """An order-independent digest of a run's clean rows (what changes when a row does)."""
    cols = [c for c in ("ts", "metric", "value", "unit", "kind", "code") if c in rows.columns]
    hashed = pd.util.hash_pandas_object(rows[cols], index=False)
    return f"{len(rows)}:{int(hashed.sum()) & 0xFFFFFFFFFFFFFFFF:016x}"


def index_window(
    store: DeltaStore,
    namespace: str,
    machine_id: str,
    window: Window,
    clean: pd.DataFrame,
    now: pd.Timestamp,
) -> tuple[pd.DataFrame, list[str]]:
    """This window's index rows after ingesting ``clean``, and the runs whose rows changed.

    The previous index rows of the window are read first: a run's digest that differs (rows
    added, changed or gone) marks it changed; a run unchanged keeps its ``updated_at``.
    """
    old = (
        store.read(namespace, RUN_INDEX, machine_id, window)
        if store.exists(namespace, RUN_INDEX)
        else pd.DataFrame(columns=RUN_INDEX_SCHEMA.names)
    )
    before = {str(r[RUN]): r for r in old.to_dict("records")}
    rows: list[dict[str, object]] = []
    changed: list[str] = []
    groups = dict(tuple(clean.groupby(RUN, sort=True))) if len(clean) else {}
    for run in sorted(set(groups) | set(before)):
        prev = before.get(run)
        part = groups.get(run)
        if part is not None:
            first, last = part["ts"].min(), part["ts"].max()
            digest, n = _digest(part), len(part)
        else:
            first = last = None
            digest, n = "0:gone", 0
        hull = [t for t in (first, last) if t is not None]
        if prev is not None:
            hull += [t for t in (prev["hull_first"], prev["hull_last"]) if not pd.isna(t)]
        if not hull:  # gone before and still gone: forget it
            continue
        same = prev is not None and prev["digest"] == digest
        if not same:
            changed.append(run)
        rows.append(
            {
                "machine_id": machine_id,
                "ts": pd.Timestamp(window.start),
                "window_end": pd.Timestamp(window.end),
                RUN: run,
                "first_ts": first,
                "last_ts": last,
                "hull_first": min(hull),
                "hull_last": max(hull),
                "rows": n,
                "digest": digest,
                "updated_at": prev["updated_at"] if same and prev is not None else now,
            }
        )
    frame = pd.DataFrame(rows, columns=RUN_INDEX_SCHEMA.names)
    for col in ("ts", "window_end", "first_ts", "last_ts", "hull_first", "hull_last", "updated_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame, changed


def run_window(store: DeltaStore, namespace: str, machine_id: str, run: str) -> Window:
    """The window of one run; ConfigError naming the known runs if there is no such run."""
    spans = run_spans(store, namespace, machine_id)
    if run not in spans:
        known = ", ".join(sorted(spans)[:10]) or "none yet (ingest the machine first)"
        raise ConfigError(
            f"machine {machine_id} has no run {run!r} in {namespace}; its runs: {known}"
        )
    return spans[run].window


def runs_updated_since(
    store: DeltaStore, namespace: str, machine_id: str, since: datetime
) -> list[Window]:
    """The windows of the runs whose rows changed at or after ``since`` (oldest run first)."""
    spans = run_spans(store, namespace, machine_id)
    hits = [s for s in spans.values() if s.updated_at is not None and s.updated_at >= since]
    return [s.window for s in sorted(hits, key=lambda s: (s.hull_first, s.run))]
