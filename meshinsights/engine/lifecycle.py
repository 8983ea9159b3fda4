"""Data lifecycle: keep N days per table (retention) and erase one machine everywhere.

Both are Delta deletes with a commit that says why (``meshinsights.step`` = ``retention`` or
``erasure``, the cutoff or machine, the rows removed), so the table's own log is the receipt.
Erasure then vacuums every table it touched with zero retention: the deleted rows' files go,
and time travel to a version from before the erase stops returning them (it fails instead).
That also ends time travel for every other machine's older versions of those tables — the
price of an erasure that actually erases. Zero-retention vacuum also deletes files a writer
has written but not yet committed: erase while no pipeline writes to the store (pause its
DAGs), then rerun anything that failed meanwhile. Retention leaves vacuuming to the normal schedule
(``maintenance vacuum`` / the maintenance DAG), so time travel keeps its usual week.

Used by ``meshinsights erase``, ``meshinsights maintenance retain`` and the maintenance DAG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from meshinsights.config import PipelineConfig
from meshinsights.errors import ConfigError
from meshinsights.model import check_machine_id
from meshinsights.store.predicates import before_predicate, machine_predicate

__all__ = ["Deletion", "erase_machine", "retain_tables", "retention_for"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deletion:
    """What one delete did to one table: the receipt line (small enough for XCom)."""

    namespace: str
    table: str
    action: str  # erase | retain
    version_before: int
    version_after: int
    rows_removed: int
    files_vacuumed: int
    cutoff: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase_machine(store: Any, machine_id: str, *, run_id: str = "manual") -> list[Deletion]:
    """Delete ``machine_id``'s rows from every table of every namespace, then vacuum them.

    Every table with a ``machine_id`` column is covered — ingest's telemetry, events and
    quarantine, every step's output, the runs registry — whether or not a config still names
    the machine (a machine whose config was removed is erased too). Tables without the
    machine's rows get no commit. An unknown machine (no rows anywhere) is an error, so a typo
    never reads as "erased".
    """
    check_machine_id(machine_id)
    out: list[Deletion] = []
    for info in store.tables():
        if "machine_id" not in info.columns:
            continue
        t0 = time.perf_counter()
        before, after, rows = store.delete_where(
            info.namespace,
            info.name,
            machine_predicate(machine_id),
            metadata={
                "meshinsights.step": "erasure",
                "meshinsights.run_id": run_id,
                "meshinsights.erased_machine": machine_id,
            },
        )
        if after == before:
            continue
        vacuumed = store.vacuum(info.namespace, info.name, retention_hours=0)
        out.append(
            Deletion(
                namespace=info.namespace,
                table=info.name,
                action="erase",
                version_before=before,
                version_after=after,
                rows_removed=rows,
                files_vacuumed=len(vacuumed),
                cutoff=None,
                seconds=round(time.perf_counter() - t0, 4),
            )
        )
        logger.info(
            "erased machine %s from %s/%s: %d row(s), version %d -> %d, %d file(s) vacuumed",
            machine_id,
            info.namespace,
            info.name,
            rows,
            before,
            after,
            len(vacuumed),
        )
    if not out:
        raise ConfigError(
            f"machine {machine_id!r} has no rows in any table of {store.root}; check the id "
            "(meshinsights tables / meshinsights sql list what is stored)"
        )
    return out


def retention_for(pipeline: PipelineConfig, table: str) -> timedelta | None:
    """How long ``table`` keeps rows under ``pipeline.retention`` (None: forever)."""
    import pandas as pd

    keep = pipeline.retention.get(table, pipeline.retention.get("default"))
    return None if keep is None else pd.Timedelta(keep).to_pytimedelta()


def retain_tables(
    store: Any,
    pipelines: Mapping[str, PipelineConfig],
    *,
    now: datetime | None = None,
    namespaces: Sequence[str] = (),
    run_id: str = "manual",
) -> list[Deletion]:
    """Delete rows older than each table's retention (``retention:`` in the pipeline YAML).

    Only namespaces whose pipeline sets a retention are touched; a table the retention names
    that does not exist is reported, so a misspelt table name is not a silent no-op.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    present = {(t.namespace, t.name): t for t in store.tables()}
    stored = {ns for ns, _ in present}
    unknown = sorted(set(namespaces) - set(pipelines) - stored)
    if unknown:
        configured = ", ".join(sorted(pipelines)) or "none"
        raise ConfigError(
            f"no pipeline named {', '.join(unknown)}; configured: {configured}, "
            f"stored: {', '.join(sorted(stored)) or 'none'}"
        )
    for ns in sorted((set(namespaces) & stored) - set(pipelines)):
        logger.warning("namespace %s has no pipeline config: no retention applies to it", ns)
    out: list[Deletion] = []
    for name, pipeline in sorted(pipelines.items()):
        if not pipeline.retention or (namespaces and name not in namespaces):
            continue
        tables = sorted(t for ns, t in present if ns == name)
        missing = sorted(set(pipeline.retention) - {"default"} - set(tables))
        if missing:
            logger.warning(
                "pipeline %s: retention names table(s) %s that are not in the store (yet)",
                name,
                ", ".join(missing),
            )
        for table in tables:
            keep = retention_for(pipeline, table)
            if keep is None or "ts" not in present[(name, table)].columns:
                continue
            cutoff = now - keep
            t0 = time.perf_counter()
            before, after, rows = store.delete_where(
                name,
                table,
                before_predicate(cutoff),
                metadata={
                    "meshinsights.step": "retention",
                    "meshinsights.run_id": run_id,
                    "meshinsights.cutoff": cutoff.isoformat(),
                },
            )
            out.append(
                Deletion(
                    namespace=name,
                    table=table,
                    action="retain",
                    version_before=before,
                    version_after=after,
                    rows_removed=rows,
                    files_vacuumed=0,
                    cutoff=cutoff.isoformat(),
                    seconds=round(time.perf_counter() - t0, 4),
                )
            )
            logger.info("retention %s/%s: %d row(s) before %s deleted", name, table, rows, cutoff)
    return out
