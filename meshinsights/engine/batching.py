"""Batched step runs: the helpers that let one step run cover several windows.

A batch reads each contiguous stretch of its windows once, hands every call exactly the rows
a run of that window alone would read, and writes all outputs in one commit
(:func:`meshinsights.engine.runner.run_step`). ``MAX_BATCH`` bounds the data one
batch holds at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd

from meshinsights.engine.plan import PlannedStep
from meshinsights.errors import StepError, StoreError
from meshinsights.model import Window
from meshinsights.store import DeltaStore

__all__ = ["MAX_BATCH", "batches", "input_versions", "read_inputs", "sink_by_window"]

# The most data one step run holds at once when it runs several windows as a batch.
MAX_BATCH = timedelta(days=31)


def batches(windows: list[Window], limit: timedelta | None = None) -> list[list[Window]]:
    """``windows`` in order, cut so no batch covers more than ``limit`` (``MAX_BATCH``).

    The limit bounds memory: a batch's inputs are held at once. A window longer than the
    limit is a batch of its own; a limit of 0 puts every window in its own batch.
    """
    limit = MAX_BATCH if limit is None else limit
    out: list[list[Window]] = []
    covered = timedelta(0)
    for w in windows:
        length = w.end - w.start
        if not out or covered + length > limit:
            out.append([])
            covered = timedelta(0)
        out[-1].append(w)
        covered += length
    return out


def input_versions(planned: PlannedStep, store: DeltaStore, namespace: str) -> dict[str, int]:
    """The version of each table the step reads, taken before reading: what its output was
    made from (a commit landing in between makes the output look stale, never fresh)."""
    out = {}
    for table in sorted(planned.tables_read):
        version = store.version(namespace, table)
        if version is not None:
            out[table] = version
    return out


def read_inputs(
    planned: PlannedStep,
    store: DeltaStore,
    namespace: str,
    machines: list[str],
    group: list[Window],
) -> dict[str, pd.DataFrame]:
    """Each input table over a contiguous group of windows, read once (with the lookback)."""
    frames_by_table: dict[str, pd.DataFrame] = {}
    optional_tables = {t for a, t in planned.inputs.items() if a in planned.spec.optional}
    span = Window(group[0].start, group[-1].end, group[0].run)
    read_span = Window(min(planned.read_window(w).start for w in group), span.end, span.run)
    for table in set(planned.inputs.values()):
        if table in optional_tables and not store.exists(namespace, table):
            frames_by_table[table] = pd.DataFrame(columns=["machine_id", "ts"])
            continue
        # A step's own output (read as a cache) is read for the run window only.
        w = span if table == planned.output else read_span
        try:
            frames_by_table[table] = store.read(namespace, table, machines, w)
        except StoreError as exc:
            raise StepError(f"step {planned.id!r} cannot read its input: {exc}") from exc
    return frames_by_table


def sink_by_window(
    planned: PlannedStep,
    outputs: list[tuple[Window, pd.DataFrame]],
    run_id: str,
    resolver: Callable[[str], str] | None,
) -> Any:
    """Sink rows window by window, in time order, as one-window runs would."""
    from meshinsights.connectors.alerts import run_sink

    assert planned.sink is not None
    by_window: dict[Window, list[pd.DataFrame]] = {}
    for w, out in outputs:
        by_window.setdefault(w, []).append(out)
    results = [
        run_sink(
            planned.sink,
            frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True),
            run_id=run_id,
            resolver=resolver,
        )
        for frames in by_window.values()
    ]
    return results[0] if len(results) == 1 else results
