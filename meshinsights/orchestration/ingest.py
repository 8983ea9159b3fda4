"""Ingest: fetch a machine-window from its source, normalize, validate, write telemetry + quarantine."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from meshinsights.config import MachineConfig, PipelineConfig, SQLSource
from meshinsights.connectors.base import PluginManager, default_manager
from meshinsights.connectors.credentials import env_resolver
from meshinsights.connectors.retry import with_retry
from meshinsights.errors import ConfigError
from meshinsights.model import QUARANTINE_SCHEMA, TELEMETRY_SCHEMA, Window
from meshinsights.normalize import normalize_telemetry
from meshinsights.store import DeltaStore

__all__ = ["run_ingest", "fetch_source"]

logger = logging.getLogger(__name__)


def fetch_source(
    machine: MachineConfig,
    window: Window,
    *,
    resolver: Callable[[str], str] | None = None,
    manager: PluginManager | None = None,
) -> pd.DataFrame:
    """Raw long-form rows for one machine-window from its configured source."""
    source = machine.source
    manager = manager or default_manager()
    resolver = resolver or env_resolver
    if isinstance(source, SQLSource):
        conn = manager.get("sql", url=resolver(source.conn_id))
        params = {
            **source.params,
            "machine_id": machine.machine_id,
            "start": window.start.replace(tzinfo=None),
            "end": window.end.replace(tzinfo=None),
        }
        return with_retry(lambda: conn.query(source.query, params),
                          what=f"source query for {machine.machine_id}")
    raise ConfigError(f"source type {source.type!r} is not supported by this build yet")


def run_ingest(
    machine: MachineConfig,
    pipeline: PipelineConfig,
    window: Window,
    store: DeltaStore,
    *,
    run_id: str,
    resolver: Callable[[str], str] | None = None,
    manager: PluginManager | None = None,
) -> dict[str, Any]:
    """Source → canonical telemetry (+ quarantine) for one machine-window; returns counts."""
    started = time.perf_counter()
    raw = fetch_source(machine, window, resolver=resolver, manager=manager)
    rules = {m: r.model_dump(exclude_none=True) for m, r in pipeline.validation.items()}
    result = normalize_telemetry(
        raw, machine_id=machine.machine_id, window=window,
        timezone=getattr(machine.source, "timezone", "UTC"),
        units=getattr(machine.source, "units", None), rules=rules,
    )
    counts = result.counts
    ns, mid = pipeline.name, machine.machine_id
    meta = {"meshinsights.run_id": run_id, "meshinsights.step": "ingest", **{
        f"meshinsights.{k}": v for k, v in counts.items()}}
    q = store.overwrite(ns, "quarantine", result.quarantine, machine_ids=mid, window=window,
                        schema=QUARANTINE_SCHEMA, metadata=meta)
    # The telemetry commit goes last and carries the watermark: if anything before it fails,
    # the watermark does not move.
    watermark = result.clean["ingested_at"].max() if len(result.clean) else None
    t = store.overwrite(
        ns, "telemetry", result.clean, machine_ids=mid, window=window, schema=TELEMETRY_SCHEMA,
        metadata={**meta, "meshinsights.watermark": None if pd.isna(watermark) else str(watermark)},
    )
    summary = {
        "step": "ingest",
        "table": "telemetry",
        "window": window.as_dict(),
        **counts,
        "rows_out": t.rows,
        "version": t.version,
        "quarantine_version": q.version,
        "seconds": round(time.perf_counter() - started, 4),
        "run_id": run_id,
    }
    logger.info("ingest machine=%s window=%s %s", mid, window, counts)
    return summary
