"""The dashboard's "what is stale" panel: the machine's pending and stale work, read-only.

The same report as ``meshinsights status MACHINE`` (:func:`meshinsights.engine.status.
machine_status`, pure over the Delta logs), against the configs the page was started with
(``$MESHINSIGHTS_CONFIGS``): a partition is stale when the current definition of its step
differs from the one that wrote it, or an input changed after it was read. Nothing here
writes; the panel names the command that redoes the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from meshinsights.errors import MeshInsightsError

__all__ = ["Staleness", "staleness"]


@dataclass(frozen=True)
class Staleness:
    """The panel's content: rows to show, or why the report could not be made."""

    rows: pd.DataFrame  # step, table, window_start, window_end, reason
    problem: str | None = None  # e.g. the machine has no config in the configs folder

    @property
    def clean(self) -> bool:
        return self.problem is None and self.rows.empty


_COLUMNS = ["step", "table", "window_start", "window_end", "reason"]


def staleness(store: Any, configs_dir: Path, machine_id: str, namespace: str) -> Staleness:
    """Pending and stale windows of ``machine_id`` (as ``meshinsights status`` lists them)."""
    from meshinsights.config import load_machine_configs
    from meshinsights.engine.status import machine_status

    empty = pd.DataFrame(columns=_COLUMNS)
    try:
        # Only this machine's file (and the pipelines): a page view costs the same at any
        # fleet size.
        configs = load_machine_configs(configs_dir, machine_id)
        machine = configs.machine(machine_id)
        pipeline = configs.pipeline_of(machine)
    except MeshInsightsError as exc:
        return Staleness(empty, f"cannot tell what is stale: {exc}")
    if pipeline.name != namespace:
        return Staleness(
            empty,
            f"cannot tell what is stale: {machine_id} now runs pipeline {pipeline.name!r} "
            f"in {configs_dir}, not {namespace!r}",
        )
    try:
        report = machine_status(store, pipeline, machine)
    except MeshInsightsError as exc:  # e.g. a damaged table: named, with its repair
        return Staleness(empty, f"cannot tell what is stale: {exc}")
    rows: list[tuple[str, str, datetime | None, datetime | None, str]] = [
        ("(all)", "", w.start, w.end, "reopened by late rows; steps not yet rerun")
        for w in report.pending
    ]
    rows += [
        ("(all)", "", None, None, f"run {r} changed; steps not yet rerun")
        for r in report.pending_runs
    ]
    rows += [(x.step, x.table, x.window.start, x.window.end, x.reason) for x in report.stale]
    return Staleness(pd.DataFrame(rows, columns=_COLUMNS))
