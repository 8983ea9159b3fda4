"""Ingest: fetch a machine-window from its source, normalize, validate, write the source tables.

One run writes up to three commits for its machine-window: ``quarantine`` (telemetry and
events rows that failed, with rule and reason), ``events`` (when the source has an events
query) and ``telemetry`` — last, carrying the watermark (the newest ``ingested_at`` seen) in
its commit metadata. A run that fails before that commit leaves the watermark where it was.

Late data: :func:`run_incremental` first asks the source which rows were ingested after the
last watermark for times *before* the run window, reprocesses exactly those windows, then the
run window; only the final commit advances the watermark.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from meshinsights import schedules
from meshinsights.config import MachineConfig, PipelineConfig
from meshinsights.connectors.base import PluginManager
from meshinsights.connectors.sources import Resolver, SourceAccess, shape_of, times_of
from meshinsights.credentials import env_resolver
from meshinsights.engine.logging import logged_run
from meshinsights.engine.runs import RUN_INDEX_SCHEMA, index_window
from meshinsights.engine.status import IngestState, ingest_state
from meshinsights.errors import DataQualityError
from meshinsights.model import (
    EVENTS_SCHEMA,
    QUARANTINE_SCHEMA,
    RUN,
    RUN_INDEX,
    TELEMETRY_SCHEMA,
    Window,
    with_run,
)
from meshinsights.normalize import NormalizeResult, normalize_events, normalize_telemetry, to_utc
from meshinsights.normalize.quality import check_share
from meshinsights.store import DeltaStore

__all__ = [
    "run_ingest",
    "run_incremental",
    "fetch_source",
    "late_windows",
    "last_watermark",
    "ingest_state",
    "record_drained",
    "IngestState",
]

logger = logging.getLogger(__name__)


def _access(
    resolver: Resolver | None, manager: PluginManager | None, base_dir: Path | None
) -> SourceAccess:
    return SourceAccess(resolver or env_resolver, manager, base_dir)


def fetch_source(
    machine: MachineConfig,
    window: Window,
    *,
    resolver: Resolver | None = None,
    manager: PluginManager | None = None,
    base_dir: Path | None = None,
) -> pd.DataFrame:
    """Raw long-form telemetry rows for one machine-window from its configured source."""
    return _access(resolver, manager, base_dir).telemetry(machine, window).frame


def last_watermark(store: DeltaStore, namespace: str, machine_id: str) -> pd.Timestamp | None:
    """The newest ``ingested_at`` recorded by this machine's telemetry commits, if any."""
    return ingest_state(store, namespace, machine_id).watermark


def record_drained(
    store: DeltaStore,
    namespace: str,
    machine_id: str,
    drained: list[Window],
    *,
    run_id: str,
    runs: list[str] | None = None,
) -> IngestState:
    """Record that every step ran over ``drained`` (and the ``runs``): no longer pending.

    A data-free commit on ``telemetry`` (the ledger the watermark lives in), so the record and
    the watermark travel together; the windows and runs still pending, if any, are carried over.
    """
    state = ingest_state(store, namespace, machine_id)
    left = tuple(w for w in state.pending if w not in set(drained))
    runs_left = tuple(r for r in state.pending_runs if r not in set(runs or ()))
    store.record(
        namespace,
        "telemetry",
        machine_ids=machine_id,
        metadata={
            "meshinsights.run_id": run_id,
            "meshinsights.step": "ingest_drained",
            "meshinsights.watermark": _text(state.watermark),
            "meshinsights.pending": [w.as_dict() for w in left],
            "meshinsights.drained": [w.as_dict() for w in drained],
            "meshinsights.pending_runs": list(runs_left),
            **({"meshinsights.drained_runs": sorted(runs)} if runs else {}),
        },
    )
    logger.info(
        "machine %s: %d reopened window(s) and %d run(s) drained, %d and %d pending",
        machine_id,
        len(drained),
        len(runs or ()),
        len(left),
        len(runs_left),
    )
    return IngestState(state.watermark, left, runs_left)


def late_windows(
    machine: MachineConfig,
    window: Window,
    watermark: pd.Timestamp | None,
    *,
    resolver: Resolver | None = None,
    manager: PluginManager | None = None,
    base_dir: Path | None = None,
) -> list[Window]:
    """Windows before ``window`` holding rows ingested after ``watermark`` (oldest first).

    Each is the machine's schedule interval holding the late row (the window its scheduled
    run covered: :mod:`meshinsights.schedules`); without a schedule, the grid of the run
    window's length. They reach back ``late_lookback`` (never before the machine's start date).
    """
    if watermark is None:
        return []
    lookback = pd.Timedelta(machine.source.late_lookback).to_pytimedelta()
    first = pd.Timestamp(machine.start_date, tz="UTC").to_pydatetime()
    since = max(window.start - lookback, first)
    if since >= window.start:
        return []
    ts = _access(resolver, manager, base_dir).late_times(machine, window, watermark, since)
    ts = ts[(ts >= pd.Timestamp(since)) & (ts < pd.Timestamp(window.start))]
    if ts.empty:
        return []
    if machine.schedule is not None:
        found = {schedules.window_containing(machine.schedule, t.to_pydatetime()) for t in ts}
        # An unaligned run can start inside the interval a late row sits in: the part before
        # the run's start is reopened (the run itself rewrites from its start on).
        return sorted(Window(w.start, min(w.end, window.start)) for w in found if w is not None)
    step = pd.Timedelta(window.end - window.start)
    origin = pd.Timestamp(window.start)
    starts = sorted(origin + int(k) * step for k in ((ts - origin) // step).unique())
    return [Window(s.to_pydatetime(), (s + step).to_pydatetime()) for s in starts]


def _max_ingested(raw: pd.DataFrame | None, now: pd.Timestamp) -> pd.Timestamp | None:
    """The newest ``ingested_at`` in ``raw``, never later than ``now`` (the run's own time).

    A source clock that runs ahead (one row stamped 2099) must not move the watermark past
    rows that have not arrived yet: late-data handling would be off for good.
    """
    if raw is None or raw.empty or "ingested_at" not in raw.columns:
        return None
    ingested = to_utc(raw["ingested_at"], "UTC")
    ahead = int((ingested > now).sum())
    if ahead:
        logger.warning(
            "%d row(s) have ingested_at after the run's time %s (source clock ahead?); the "
            "watermark stops at the run's time",
            ahead,
            now,
        )
    value = ingested.where(ingested <= now).max()
    return None if pd.isna(value) else min(value, now)


def _latest(*marks: pd.Timestamp | None) -> pd.Timestamp | None:
    present = [m for m in marks if m is not None and not pd.isna(m)]
    return max(present) if present else None


def _meta(prefix: str, result: NormalizeResult) -> dict[str, Any]:
    return {
        **{f"meshinsights.{prefix}{k}": v for k, v in result.counts.items()},
        f"meshinsights.{prefix}quarantine_rules": result.by_rule,
        **{f"meshinsights.{prefix}{k}": v for k, v in result.notes.items()},
    }


def _check_quality(
    store: DeltaStore,
    ns: str,
    machine: MachineConfig,
    window: Window,
    result: NormalizeResult,
    events: NormalizeResult | None,
    meta: dict[str, Any],
) -> None:
    """Fail a window that quarantined more than the source allows, its quarantine written.

    The quarantined rows are committed (so the user can look at them with their reasons);
    the telemetry, the events and the watermark are not.
    """
    source = machine.source
    checks: list[tuple[NormalizeResult, str, str]] = [
        (result, "telemetry", shape_of(source).time_label)
    ]
    if events:
        checks.append((events, "events", "ts"))
    for normalized, what, column in checks:
        try:
            check_share(
                normalized,
                machine_id=machine.machine_id,
                window=window,
                max_share=source.max_quarantine_share,
                times=times_of(source),
                time_column=column,
                what=what,
            )
        except DataQualityError as exc:
            parts = [p.quarantine for p in (result, events) if p is not None]
            rows = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
            failed = {**meta, "meshinsights.failed": str(exc)[:2000]}
            store.overwrite(
                ns,
                "quarantine",
                rows,
                schema=_schema(QUARANTINE_SCHEMA, RUN in rows.columns),
                machine_ids=machine.machine_id,
                window=window,
                metadata=failed,
            )
            raise


@logged_run
def run_ingest(
    machine: MachineConfig,
    pipeline: PipelineConfig,
    window: Window,
    store: DeltaStore,
    *,
    run_id: str,
    resolver: Resolver | None = None,
    manager: PluginManager | None = None,
    previous_watermark: pd.Timestamp | None | str = "read",
    advance_watermark: bool = True,
    base_dir: Path | None = None,
    pending: list[Window] | None = None,
    pending_runs: list[str] | None = None,
) -> dict[str, Any]:
    """Source → canonical telemetry, events and quarantine for one machine-window.

    A source with runs also updates the run index (:mod:`.runs`); in a pipeline windowed by
    run, the runs whose rows changed join ``pending_runs`` (the runs still pending before this
    ingest), and the telemetry commit records them all as pending.

    The telemetry commit records ``max(previous watermark, newest ingested_at seen)`` — or
    just the previous one with ``advance_watermark=False`` (late-window reprocessing); the
    previous watermark is read from the table history unless given. Returns a small summary
    fit for XCom (counts per table, versions, watermarks).
    """
    started = time.perf_counter()
    ns, mid = pipeline.name, machine.machine_id
    prev = (
        last_watermark(store, ns, mid)
        if isinstance(previous_watermark, str)
        else previous_watermark
    )
    result, events, seen = _normalized(
        machine, pipeline, window, _access(resolver, manager, base_dir)
    )
    watermark = _latest(prev, seen) if advance_watermark else prev
    meta = {"meshinsights.run_id": run_id, "meshinsights.step": "ingest", **_meta("", result)}
    if events:
        meta.update(_meta("events.", events))
    _check_quality(store, ns, machine, window, result, events, meta)
    telemetry_meta: dict[str, Any] = {"meshinsights.watermark": _text(watermark)}
    if pending is not None:
        telemetry_meta["meshinsights.pending"] = [w.as_dict() for w in pending]
    index: pd.DataFrame | None = None
    changed: list[str] = []
    if machine.source.run_column:
        index, changed = index_window(store, ns, mid, window, result.clean, pd.Timestamp.now("UTC"))
        telemetry_meta["meshinsights.changed_runs"] = changed
        if pipeline.window == "run":
            if pending_runs is None:  # a direct call: the runs pending so far, from the ledger
                pending_runs = list(ingest_state(store, ns, mid).pending_runs)
            runs_now = sorted(set(pending_runs) | set(changed))
            telemetry_meta["meshinsights.pending_runs"] = runs_now
    meta["meshinsights.seconds"] = round(time.perf_counter() - started, 4)  # fetch + normalize
    versions = _write(store, ns, mid, window, result, events, meta, telemetry_meta)
    if index is not None:
        # After telemetry (which records the changed runs as pending): a failure in between
        # finds the same changes again on the retry, as the index still holds the old digests.
        store.overwrite(
            ns,
            RUN_INDEX,
            index,
            schema=RUN_INDEX_SCHEMA,
            machine_ids=mid,
            window=window,
            metadata={"meshinsights.run_id": run_id, "meshinsights.step": "ingest"},
        )
    summary: dict[str, Any] = {
        "step": "ingest",
        "table": "telemetry",
        "window": window.as_dict(),
        **result.counts,
        **versions,
        "quarantine_rules": result.by_rule,
        "missing_required": result.missing_required,
        **result.notes,
        "watermark": _text(watermark),
        "seen_watermark": _text(seen),
        **({"pending": [w.as_dict() for w in pending]} if pending is not None else {}),
        **({"changed_runs": changed} if machine.source.run_column else {}),
        **(
            {"pending_runs": telemetry_meta["meshinsights.pending_runs"]}
            if "meshinsights.pending_runs" in telemetry_meta
            else {}
        ),
        "seconds": round(time.perf_counter() - started, 4),
        "run_id": run_id,
    }
    if events:
        summary["events"] = {
            **events.counts,
            "version": versions.pop("events_version"),
            "quarantine_rules": events.by_rule,
        }
    logger.info("ingest machine=%s window=%s %s", mid, window, result.counts)
    return summary


def _write(
    store: DeltaStore,
    ns: str,
    mid: str,
    window: Window,
    result: NormalizeResult,
    events: NormalizeResult | None,
    meta: dict[str, Any],
    telemetry_meta: dict[str, Any],
) -> dict[str, int]:
    """Quarantine, events, then telemetry (with the watermark) for one machine-window."""
    parts = [result.quarantine] + ([events.quarantine] if events else [])
    parts = [p for p in parts if not p.empty]
    quarantine = pd.concat(parts, ignore_index=True) if parts else result.quarantine
    runs = RUN in result.clean.columns  # a source with runs: run_id in every table
    write: dict[str, Any] = {"machine_ids": mid, "window": window, "metadata": meta}
    out = {
        "quarantine_version": store.overwrite(
            ns, "quarantine", quarantine, schema=_schema(QUARANTINE_SCHEMA, runs), **write
        ).version
    }
    if events:
        out["events_version"] = store.overwrite(
            ns, "events", events.clean, schema=_schema(EVENTS_SCHEMA, runs), **write
        ).version
    # Last: the telemetry commit carries the watermark (and the pending windows), so neither
    # moves without its data.
    write["metadata"] = {**meta, **telemetry_meta}
    t = store.overwrite(
        ns, "telemetry", result.clean, schema=_schema(TELEMETRY_SCHEMA, runs), **write
    )
    return {**out, "rows_out": t.rows, "version": t.version}


def _schema(schema: pa.Schema, runs: bool) -> pa.Schema:
    return with_run(schema) if runs else schema


def _normalized(
    machine: MachineConfig, pipeline: PipelineConfig, window: Window, access: SourceAccess
) -> tuple[NormalizeResult, NormalizeResult | None, pd.Timestamp | None]:
    """Fetch and normalize telemetry (and events); also the newest ingested_at seen."""
    source, mid = machine.source, machine.machine_id
    now = pd.Timestamp.now(tz="UTC")
    rows = access.telemetry(machine, window)
    raw = rows.frame
    raw_events = access.events(machine, window)
    run_column = source.run_column
    if run_column and raw_events is not None and run_column in raw_events.columns:
        raw_events = raw_events.rename(columns={run_column: RUN})
    result = normalize_telemetry(
        raw,
        machine_id=mid,
        window=window,
        times=times_of(source),
        units=source.units,
        rules=pipeline.validation,
    )
    if rows.skipped:
        result.notes["skipped_columns"] = rows.skipped
    events = (
        None
        if raw_events is None
        else normalize_events(
            raw_events,
            machine_id=mid,
            window=window,
            times=times_of(source),
            rules=pipeline.events,
        )
    )
    seen = _latest(_max_ingested(raw, now), _max_ingested(raw_events, now))
    return result, events, seen


def _text(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else str(ts)


@logged_run
def run_incremental(
    machine: MachineConfig,
    pipeline: PipelineConfig,
    window: Window,
    store: DeltaStore,
    *,
    run_id: str,
    resolver: Resolver | None = None,
    manager: PluginManager | None = None,
    base_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Reprocess the windows that received late rows, then ingest ``window``.

    Returns one summary per window ingested: the late ones first (``"late": True``), the run
    window last, whose ``pending`` lists every reopened window whose steps have yet to run
    (these late ones and any still pending from earlier runs). Only the run window's commit
    advances the watermark (to the newest ``ingested_at`` seen in any of them) and records the
    pending windows, so a failure anywhere leaves both unchanged and the next run finds the
    same late windows again; pending windows stay pending until :func:`record_drained`.
    """
    state = ingest_state(store, pipeline.name, machine.machine_id)
    prev = state.watermark
    access: dict[str, Any] = {"resolver": resolver, "manager": manager, "base_dir": base_dir}
    late = late_windows(machine, window, prev, **access)
    if late:
        logger.info(
            "machine %s: rows ingested since %s reopen %d window(s): %s",
            machine.machine_id,
            prev,
            len(late),
            ", ".join(map(str, late)),
        )
    summaries: list[dict[str, Any]] = []
    seen = prev
    # Every ingest commit records the runs pending so far (a run pipeline), so a failure
    # after a late window's commit cannot lose the runs it changed.
    runs = list(state.pending_runs)
    for w in late:
        s = run_ingest(
            machine,
            pipeline,
            w,
            store,
            run_id=run_id,
            previous_watermark=prev,
            advance_watermark=False,
            pending_runs=runs,
            **access,
        )
        runs = s.get("pending_runs", runs)
        summaries.append({**s, "late": True})
        seen = _latest(seen, pd.Timestamp(s["seen_watermark"]) if s["seen_watermark"] else None)
    # The run window's own steps follow it (the DAG's tasks, or the local runner): it is not
    # pending work. Everything else reopened, now or before, is.
    pending = sorted((set(state.pending) | set(late)) - {window})
    final = run_ingest(
        machine,
        pipeline,
        window,
        store,
        run_id=run_id,
        previous_watermark=seen,
        pending=pending,
        pending_runs=runs,
        **access,
    )
    return [*summaries, {**final, "late": False}]
