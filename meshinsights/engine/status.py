"""Which partitions are stale: made by an older step definition, or from inputs changed since.

Every step commit records the step's fingerprint (merged params, code, inputs, output schema)
and the versions of the tables it read. Read back from the Delta logs, that tells for each
machine × window of each step whether its rows are what the current pipeline would write:

- ``definition changed``: the stored fingerprint differs from the current one (a param
  override, a new version of the function);
- ``input changed``: a table the step reads has a data commit for this machine, overlapping
  the window's read range (lookback included), newer than the version the step read;
- ``no provenance``: the commit predates fingerprints (made by an older MeshInsights).

:func:`stale_windows` is pure over the logs (read-only), so the CLI, the dashboard and a
backfill recipe share it; :func:`run_stale` recomputes exactly the stale windows, step by step
in pipeline order (a recomputed upstream window makes its downstream windows stale in turn).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from meshinsights import schedules
from meshinsights.config import MachineConfig, PipelineConfig
from meshinsights.engine.plan import PlannedStep, plan
from meshinsights.model import Window

__all__ = [
    "StaleWindow",
    "Commit",
    "StatusReport",
    "IngestState",
    "ingest_state",
    "machine_status",
    "stale_windows",
    "run_stale",
    "table_commits",
]

logger = logging.getLogger(__name__)

#: Commits that hold no data of their own (ledger records, compaction merges have no step).
_NO_DATA = frozenset({"ingest_drained", "retention", "erasure"})
#: History depths scanned for a machine's last watermark before reading the whole log.
_HISTORY_DEPTHS = (256, 4096, None)
#: Telemetry commits that carry a machine's ingest state (watermark, pending windows).
_INGEST_STEPS = ("ingest", "ingest_drained")


@dataclass(frozen=True)
class IngestState:
    """Where a machine's ingest stands: its watermark and the reopened windows still pending.

    A window reopened by late rows is *pending* from the ingest commit that re-ingested it until
    a later commit says every step ran over it (:func:`record_drained`); every run (and an
    Airflow retry) reruns the pending windows' steps, so a step that fails after late data, or
    a process killed between the ingest commit and the steps, never leaves derived tables stale.
    """

    watermark: pd.Timestamp | None = None
    pending: tuple[Window, ...] = ()
    #: A pipeline windowed by run: the runs whose rows changed and whose steps have yet to run.
    pending_runs: tuple[str, ...] = ()


def ingest_state(store: Any, namespace: str, machine_id: str) -> IngestState:
    """The machine's watermark (newest ``ingested_at`` committed) and its pending windows."""
    for depth in _HISTORY_DEPTHS:
        commits = store.history(namespace, "telemetry", limit=depth)
        mine = [
            c
            for c in commits
            if c.get("meshinsights.step") in _INGEST_STEPS
            and machine_id in (c.get("meshinsights.machines") or [])
        ]
        if mine:  # the machine's commits are here: their running maximum is the watermark
            marks = [
                pd.Timestamp(c["meshinsights.watermark"])
                for c in mine
                if c.get("meshinsights.watermark")
            ]
            pending: list[dict[str, str]] = next(
                (c["meshinsights.pending"] for c in mine if "meshinsights.pending" in c), []
            )
            runs: list[str] = next(
                (c["meshinsights.pending_runs"] for c in mine if "meshinsights.pending_runs" in c),
                [],
            )
            return IngestState(
                max(marks) if marks else None,
                tuple(Window.parse(w["start"], w["end"]) for w in pending or []),
                tuple(runs or ()),
            )
        if depth is None or len(commits) < depth:
            return IngestState()
    return IngestState()


@dataclass(frozen=True)
class Commit:
    """One data commit of a table as provenance needs it."""

    version: int
    step: str
    machines: tuple[str, ...] | None  # None: a large group recorded as a count (any machine)
    spans: tuple[Window, ...]
    fingerprint: str | None
    inputs: dict[str, int] | None
    #: An ingest commit of a source with runs: the runs whose rows it changed.
    changed_runs: frozenset[str] | None = None

    def touches(self, machine_id: str) -> bool:
        return self.machines is None or machine_id in self.machines

    def changes(self, read: Window) -> bool:
        """Whether this commit changed rows a step reading ``read`` reads.

        A run window reads its run's rows only: an ingest commit changes it if it changed that
        run (another run's rows in the same time window do not make it stale).
        """
        if read.run is not None and self.changed_runs is not None:
            return read.run in self.changed_runs
        return any(s.overlaps(read) for s in self.spans)


@dataclass(frozen=True)
class StaleWindow:
    """One machine-window of one step whose stored rows are not what the pipeline would write."""

    step: str
    table: str
    window: Window
    reason: str
    version: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "table": self.table,
            **self.window.as_dict(),
            "reason": self.reason,
            "version": self.version,
        }


def _commit(raw: dict[str, Any]) -> Commit | None:
    step = raw.get("meshinsights.step")
    if not step or step in _NO_DATA:
        return None
    machines = raw.get("meshinsights.machines")
    windows = raw.get("meshinsights.windows") or (
        [raw["meshinsights.window"]] if isinstance(raw.get("meshinsights.window"), dict) else []
    )
    inputs = raw.get("meshinsights.inputs")
    return Commit(
        version=int(raw["version"]),
        step=str(step),
        machines=tuple(machines) if isinstance(machines, list) else None,
        spans=tuple(Window.from_dict(w) for w in windows),
        fingerprint=raw.get("meshinsights.fingerprint"),
        inputs={str(k): int(v) for k, v in inputs.items()} if isinstance(inputs, dict) else None,
        changed_runs=frozenset(runs)
        if isinstance(runs := raw.get("meshinsights.changed_runs"), list)
        else None,
    )


def table_commits(store: Any, namespace: str, table: str, machine_id: str) -> list[Commit]:
    """The table's data commits that may touch ``machine_id``, oldest first."""
    found = (_commit(c) for c in reversed(store.history(namespace, table)))
    return [c for c in found if c is not None and c.touches(machine_id)]


def _latest_by_window(
    commits: list[Commit], step_id: str, schedule: str | None
) -> dict[Window, Commit]:
    """For each schedule window the step wrote, the newest commit that wrote it."""
    latest: dict[Window, Commit] = {}
    by_run: dict[str, tuple[Window, Commit]] = {}
    for c in commits:
        if c.step != step_id:
            continue
        for span in c.spans:
            if span.run is not None:  # a run: the window is the run (its newest span)
                by_run[span.run] = (span, c)
                continue
            for w in schedules.windows(schedule, span):
                latest[w] = c
    return {**latest, **dict(by_run.values())}


def _changed_input(
    step: PlannedStep, w: Window, made: Commit, history: dict[str, list[Commit]]
) -> str | None:
    read = step.read_window(w)
    for table in sorted(step.tables_read):
        seen = (made.inputs or {}).get(table, -1)
        for c in history.get(table, []):
            if c.version > seen and c.changes(read):
                return f"input {table} changed (version {c.version} > {seen} read)"
    return None


def stale_windows(
    store: Any,
    pipeline: PipelineConfig,
    machine: MachineConfig,
    *,
    since: datetime | None = None,
    steps: list[PlannedStep] | None = None,
) -> list[StaleWindow]:
    """Every stale machine-window of the machine's steps (see the module doc), in plan order."""
    steps = steps if steps is not None else plan(pipeline, machine)
    mid, ns = machine.machine_id, pipeline.name
    tables = {t for s in steps for t in (*s.tables_read, s.output)}
    history = {t: table_commits(store, ns, t, mid) for t in sorted(tables) if store.exists(ns, t)}
    out: list[StaleWindow] = []
    for s in steps:
        written = _latest_by_window(history.get(s.output, []), s.id, machine.schedule)
        for w, made in sorted(written.items()):
            if since is not None and w.end <= since:
                continue
            if made.fingerprint is None:
                reason: str | None = "no provenance (written before fingerprints were recorded)"
            elif made.fingerprint != s.fingerprint:
                reason = "definition changed (params or code)"
            else:
                reason = _changed_input(s, w, made, history)
            if reason:
                out.append(StaleWindow(s.id, s.output, w, reason, made.version))
    return out


@dataclass(frozen=True)
class StatusReport:
    """What ``meshinsights status`` and the dashboard show for one machine: the windows (and
    runs) reopened by late rows whose steps have not all run, and the stale partitions."""

    machine_id: str
    pending: tuple[Window, ...]
    pending_runs: tuple[str, ...]
    stale: tuple[StaleWindow, ...]

    @property
    def clean(self) -> bool:
        return not (self.pending or self.pending_runs or self.stale)


def machine_status(
    store: Any,
    pipeline: PipelineConfig,
    machine: MachineConfig,
    *,
    since: datetime | None = None,
) -> StatusReport:
    """The machine's pending and stale work (read-only over the Delta logs)."""
    state = ingest_state(store, pipeline.name, machine.machine_id)
    stale = stale_windows(store, pipeline, machine, since=since)
    return StatusReport(machine.machine_id, state.pending, state.pending_runs, tuple(stale))


def run_stale(
    store: Any,
    pipeline: PipelineConfig,
    machine: MachineConfig,
    *,
    run_steps: Callable[..., list[dict[str, Any]]],
    run_id: str,
    since: datetime | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Recompute exactly the stale windows, step by step in plan order; the run summaries.

    After each step the staleness of the later ones is read again: a window a step recomputes
    changes the inputs of the steps downstream of it, which then recompute it too.
    """
    summaries: list[dict[str, Any]] = []
    for s in plan(pipeline, machine):
        found = stale_windows(store, pipeline, machine, since=since, steps=[s])
        stale = sorted({x.window for x in found})
        if stale:
            logger.info(
                "machine %s: step %s recomputes %d stale window(s)",
                machine.machine_id,
                s.id,
                len(stale),
            )
            summaries += run_steps(
                [s], machine.machine_id, pipeline.name, stale, store, run_id=run_id, **kwargs
            )
    return summaries
