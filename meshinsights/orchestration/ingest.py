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
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from meshinsights.config import ADXSource, FileSource, MachineConfig, PipelineConfig, SQLSource
from meshinsights.connectors.base import DBConnector, PluginManager, default_manager
from meshinsights.connectors.credentials import env_resolver
from meshinsights.connectors.layout import to_long
from meshinsights.connectors.retry import with_retry
from meshinsights.errors import ConfigError
from meshinsights.model import EVENTS_SCHEMA, QUARANTINE_SCHEMA, TELEMETRY_SCHEMA, Window
from meshinsights.normalize import NormalizeResult, normalize_events, normalize_telemetry, to_utc
from meshinsights.store import DeltaStore

__all__ = ["run_ingest", "run_incremental", "fetch_source", "fetch_events", "late_windows",
           "last_watermark"]

logger = logging.getLogger(__name__)

Resolver = Callable[[str], str]
#: History depths scanned for a machine's last watermark before reading the whole log.
_HISTORY_DEPTHS = (256, 4096, None)


def _connector(machine: MachineConfig, resolver: Resolver, manager: PluginManager,
               base_dir: Path | None) -> DBConnector:
    source = machine.source
    if isinstance(source, SQLSource):
        return manager.get("sql", url=resolver(source.conn_id))
    if isinstance(source, ADXSource):
        return manager.get("adx", url=resolver(source.conn_id), database=source.database)
    if isinstance(source, FileSource):
        return manager.get(
            "file", path=str(_file_path(source, machine.machine_id, base_dir)),
            format=source.format, separator=source.separator, decimal=source.decimal,
            header=source.header, names=source.names, na_values=source.na_values,
            encoding=source.encoding, ts_column="time" if source.layout == "tsdb"
            else source.ts_column, ts_format=source.ts_format, timezone=source.timezone,
        )
    raise ConfigError(f"source type {source.type!r} is not supported")


def _file_path(source: FileSource, machine_id: str, base_dir: Path | None) -> Path:
    path = Path(source.path.replace("{machine_id}", machine_id))
    if not path.is_absolute():
        from meshinsights.settings import get_settings

        path = (base_dir or get_settings().configs_dir) / path
    return path


def _query(conn: DBConnector, query: str, params: dict[str, Any], what: str) -> pd.DataFrame:
    return with_retry(lambda: conn.query(query, params), what=what)


def _params(machine: MachineConfig, window: Window, **extra: Any) -> dict[str, Any]:
    # SQL drivers compare naive UTC datetimes with the source's naive UTC columns; ADX gets
    # typed datetime literals from the same values.
    return {**getattr(machine.source, "params", {}), "machine_id": machine.machine_id,
            "start": window.start.replace(tzinfo=None), "end": window.end.replace(tzinfo=None),
            **extra}


def fetch_source(
    machine: MachineConfig,
    window: Window,
    *,
    resolver: Resolver | None = None,
    manager: PluginManager | None = None,
    base_dir: Path | None = None,
) -> pd.DataFrame:
    """Raw long-form telemetry rows for one machine-window from its configured source."""
    source = machine.source
    conn = _connector(machine, resolver or env_resolver, manager or default_manager(), base_dir)
    what = f"source query for {machine.machine_id}"
    if isinstance(source, FileSource):
        raw = with_retry(lambda: conn.query("", _params(machine, window)), what=what)
        return to_long(raw, layout=source.layout, ts_column=source.ts_column,
                       machine_column=source.machine_column,
                       ingested_column=source.ingested_column, metrics=source.metrics)
    raw = _query(conn, source.query, _params(machine, window), what)
    return to_long(raw, layout=source.layout, metrics=source.metrics)


def fetch_events(
    machine: MachineConfig,
    window: Window,
    *,
    resolver: Resolver | None = None,
    manager: PluginManager | None = None,
) -> pd.DataFrame | None:
    """Raw events/alarms/logs for one machine-window, or None if the source has no events."""
    query = getattr(machine.source, "events_query", None)
    if not query:
        return None
    conn = _connector(machine, resolver or env_resolver, manager or default_manager(), None)
    return _query(conn, query, _params(machine, window), f"events query for {machine.machine_id}")


def last_watermark(store: DeltaStore, namespace: str, machine_id: str) -> pd.Timestamp | None:
    """The newest ``ingested_at`` recorded by this machine's telemetry commits, if any."""
    for depth in _HISTORY_DEPTHS:
        commits = store.history(namespace, "telemetry", limit=depth)
        marks = [c.get("meshinsights.watermark") for c in commits
                 if c.get("meshinsights.step") == "ingest"
                 and machine_id in (c.get("meshinsights.machines") or [])]
        found = [pd.Timestamp(m) for m in marks if m]
        if marks:  # the machine's commits are here: their running maximum is the watermark
            return max(found) if found else None
        if depth is None or len(commits) < depth:
            return None
    return None


def late_windows(
    machine: MachineConfig,
    window: Window,
    watermark: pd.Timestamp | None,
    *,
    resolver: Resolver | None = None,
    manager: PluginManager | None = None,
    interval: timedelta | None = None,
    base_dir: Path | None = None,
) -> list[Window]:
    """Windows before ``window`` holding rows ingested after ``watermark`` (oldest first).

    Windows are aligned to the run's grid (``interval``, default the run window's length)
    and reach back ``late_lookback`` (never before the machine's start date).
    """
    source = machine.source
    if watermark is None:
        return []
    interval = interval or (window.end - window.start)
    since = max(window.start - pd.Timedelta(source.late_lookback).to_pytimedelta(),
                pd.Timestamp(machine.start_date, tz="UTC").to_pydatetime())
    if since >= window.start:
        return []
    ts = _late_timestamps(machine, window, watermark, since, resolver=resolver,
                          manager=manager, base_dir=base_dir)
    ts = ts[(ts >= pd.Timestamp(since)) & (ts < pd.Timestamp(window.start))]
    if ts.empty:
        return []
    step = pd.Timedelta(interval)
    k = ((ts - pd.Timestamp(window.start)) // step).unique()
    starts = sorted(pd.Timestamp(window.start) + int(i) * step for i in k)
    return [Window(s.to_pydatetime(), (s + step).to_pydatetime()) for s in starts]


def _late_timestamps(machine: MachineConfig, window: Window, watermark: pd.Timestamp,
                     since: Any, *, resolver: Resolver | None, manager: PluginManager | None,
                     base_dir: Path | None) -> pd.Series:
    source = machine.source
    conn = _connector(machine, resolver or env_resolver, manager or default_manager(), base_dir)
    if isinstance(source, FileSource):
        if not source.ingested_column:
            return pd.Series([], dtype="datetime64[us, UTC]")
        frame, anchor = conn.read()  # type: ignore[attr-defined]
        ingested = to_utc(frame[source.ingested_column], "UTC")
        return anchor[ingested > watermark].reset_index(drop=True)
    if not source.late_query:
        return pd.Series([], dtype="datetime64[us, UTC]")
    wm = watermark.tz_convert("UTC").tz_localize(None).to_pydatetime()
    params = _params(machine, window, watermark=wm, since=since.replace(tzinfo=None))
    found = _query(conn, source.late_query, params, f"late-data query for {machine.machine_id}")
    if found.empty:
        return pd.Series([], dtype="datetime64[us, UTC]")
    column = found["ts"] if "ts" in found.columns else found.iloc[:, 0]
    return to_utc(column, source.timezone, source.ts_format).dropna()


def _max_ingested(raw: pd.DataFrame | None) -> pd.Timestamp | None:
    if raw is None or raw.empty or "ingested_at" not in raw.columns:
        return None
    value = to_utc(raw["ingested_at"], "UTC").max()
    return None if pd.isna(value) else value


def _latest(*marks: pd.Timestamp | None) -> pd.Timestamp | None:
    present = [m for m in marks if m is not None and not pd.isna(m)]
    return max(present) if present else None


def _meta(prefix: str, result: NormalizeResult) -> dict[str, Any]:
    return {**{f"meshinsights.{prefix}{k}": v for k, v in result.counts.items()},
            f"meshinsights.{prefix}quarantine_rules": result.by_rule}


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
) -> dict[str, Any]:
    """Source → canonical telemetry, events and quarantine for one machine-window.

    The telemetry commit records ``max(previous watermark, newest ingested_at seen)``, or just
    the previous one with ``advance_watermark=False`` (late-window reprocessing). Returns a
    small summary fit for XCom (counts, versions, the watermark seen).
    """
    started = time.perf_counter()
    ns, mid, source = pipeline.name, machine.machine_id, machine.source
    prev = last_watermark(store, ns, mid) if isinstance(previous_watermark, str) \
        else previous_watermark
    raw = fetch_source(machine, window, resolver=resolver, manager=manager, base_dir=base_dir)
    raw_events = fetch_events(machine, window, resolver=resolver, manager=manager)
    result = normalize_telemetry(
        raw, machine_id=mid, window=window, timezone=source.timezone, ts_format=source.ts_format,
        units=source.units, rules=pipeline.validation,
    )
    events = None if raw_events is None else normalize_events(
        raw_events, machine_id=mid, window=window, timezone=source.timezone,
        rules=pipeline.events,
    )
    seen = _latest(_max_ingested(raw), _max_ingested(raw_events))
    watermark = _latest(prev, seen) if advance_watermark else prev
    meta = {"meshinsights.run_id": run_id, "meshinsights.step": "ingest",
            **_meta("", result), **(_meta("events.", events) if events else {})}
    quarantine = result.quarantine if events is None or events.quarantine.empty else \
        pd.concat([result.quarantine, events.quarantine], ignore_index=True)
    q = store.overwrite(ns, "quarantine", quarantine, machine_ids=mid, window=window,
                        schema=QUARANTINE_SCHEMA, metadata=meta)
    ev = None if events is None else store.overwrite(
        ns, "events", events.clean, machine_ids=mid, window=window, schema=EVENTS_SCHEMA,
        metadata=meta)
    # Last: the telemetry commit carries the watermark, so it never moves without its data.
    t = store.overwrite(ns, "telemetry", result.clean, machine_ids=mid, window=window,
                        schema=TELEMETRY_SCHEMA, metadata={
                            **meta, "meshinsights.watermark": None if watermark is None
                            else str(watermark)})
    summary = {
        "step": "ingest", "table": "telemetry", "window": window.as_dict(), **result.counts,
        "rows_out": t.rows, "version": t.version, "quarantine_version": q.version,
        "quarantine_rules": result.by_rule, "missing_required": result.missing_required,
        "watermark": None if watermark is None else str(watermark),
        "seen_watermark": None if seen is None else str(seen),
        "seconds": round(time.perf_counter() - started, 4), "run_id": run_id,
    }
    if events is not None and ev is not None:
        summary["events"] = {**events.counts, "version": ev.version,
                             "quarantine_rules": events.by_rule}
    logger.info("ingest machine=%s window=%s %s", mid, window, result.counts)
    return summary


def run_incremental(
    machine: MachineConfig,
    pipeline: PipelineConfig,
    window: Window,
    store: DeltaStore,
    *,
    run_id: str,
    resolver: Resolver | None = None,
    manager: PluginManager | None = None,
    interval: timedelta | None = None,
    base_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Reprocess the windows that received late rows, then ingest ``window``.

    Returns one summary per window ingested: the late ones first (``"late": True``), the run
    window last. Only the run window's commit advances the watermark (to the newest
    ``ingested_at`` seen in any of them), so a failure anywhere leaves it unchanged and the
    next run finds the same late windows again.
    """
    prev = last_watermark(store, pipeline.name, machine.machine_id)
    late = late_windows(machine, window, prev, resolver=resolver, manager=manager,
                        interval=interval, base_dir=base_dir)
    if late:
        logger.info("machine %s: late rows since %s reopen %d window(s): %s",
                    machine.machine_id, prev, len(late), ", ".join(str(w) for w in late))
    summaries: list[dict[str, Any]] = []
    seen = prev
    for w in late:
        s = run_ingest(machine, pipeline, w, store, run_id=run_id, resolver=resolver,
                       manager=manager, previous_watermark=prev, advance_watermark=False,
                       base_dir=base_dir)
        summaries.append({**s, "late": True})
        seen = _latest(seen, pd.Timestamp(s["seen_watermark"]) if s["seen_watermark"] else None)
    final = run_ingest(machine, pipeline, window, store, run_id=run_id, resolver=resolver,
                       manager=manager, previous_watermark=seen, base_dir=base_dir)
    summaries.append({**final, "late": False})
    return summaries
