"""Table maintenance: compact small files and vacuum old versions, table by table.

Every overwrite adds files (one per machine-month partition it touches) and a log entry; a fleet
of daily runs makes thousands of small files that slow every read. Compaction merges each
machine-month partition into one file (a data-changing rewrite, one commit per batch of
partitions: safe while pipelines write; readers are unaffected) and checkpoints the log;
vacuum deletes the files no version younger than the retention needs (time travel to older
versions stops working, by design).
Used by ``meshinsights maintenance`` and the ``meshinsights_maintenance`` DAG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from meshinsights.errors import ConfigError

__all__ = [
    "TableMaintenance",
    "select_tables",
    "compact_tables",
    "vacuum_tables",
    "DEFAULT_RETENTION_HOURS",
]

logger = logging.getLogger(__name__)

#: Delta Lake's own default: a week of versions stays readable (time travel, slow readers).
DEFAULT_RETENTION_HOURS = 168


@dataclass(frozen=True)
class TableMaintenance:
    """What maintenance did to one table (small enough for XCom)."""

    namespace: str
    table: str
    action: str
    files_before: int | None
    files_after: int | None
    files_removed: int
    files_added: int
    version: int | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_tables(
    store: Any, *, namespaces: Sequence[str] = (), tables: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """``(namespace, table)`` pairs to maintain; a name that matches nothing is an error."""
    found = [(t.namespace, t.name) for t in store.tables()]
    for label, wanted, have in (
        ("pipeline", namespaces, {n for n, _ in found}),
        ("table", tables, {t for _, t in found}),
    ):
        missing = sorted(set(wanted) - have)
        if missing:
            raise ConfigError(
                f"no {label} named {', '.join(missing)} in {store.root}; "
                f"existing: {', '.join(sorted(have)) or 'none'}"
            )
    return [
        (n, t)
        for n, t in found
        if (not namespaces or n in namespaces) and (not tables or t in tables)
    ]


def _file_counts(store: Any) -> dict[tuple[str, str], int]:
    try:
        return {(t.namespace, t.name): t.files for t in store.tables()}
    except Exception as exc:  # a store whose root cannot be listed (yet): counts unknown
        logger.warning(
            "cannot list tables in %s to count files (%s); maintenance goes on",
            store.root,
            type(exc).__name__,
        )
        return {}


def compact_tables(store: Any, pairs: Sequence[tuple[str, str]]) -> list[TableMaintenance]:
    """Merge each table's machine-month partitions of 2+ files (``DeltaStore.compact``)."""
    before = _file_counts(store)
    done = []
    for namespace, table in pairs:
        t0 = time.perf_counter()
        metrics = store.compact(namespace, table)
        done.append((namespace, table, metrics, time.perf_counter() - t0))
    after = _file_counts(store)
    out = []
    for namespace, table, metrics, seconds in done:
        key = (namespace, table)
        out.append(
            TableMaintenance(
                namespace=namespace,
                table=table,
                action="compact",
                files_before=before.get(key),
                files_after=after.get(key),
                files_removed=int(metrics.get("numFilesRemoved", 0)),
                files_added=int(metrics.get("numFilesAdded", 0)),
                version=store.version(namespace, table),
                seconds=round(seconds, 4),
            )
        )
        logger.info(
            "compacted %s/%s: %s -> %s files", namespace, table, before.get(key), after.get(key)
        )
    return out


def vacuum_tables(
    store: Any, pairs: Sequence[tuple[str, str]], *, retention_hours: int
) -> list[TableMaintenance]:
    """Delete files that no version younger than ``retention_hours`` references."""
    if retention_hours < 0:
        raise ConfigError(
            f"retention_hours must be >= 0, got {retention_hours}; "
            f"{DEFAULT_RETENTION_HOURS} (a week) is Delta's default"
        )
    if retention_hours < 24:
        logger.warning(
            "vacuum with retention %dh: readers older than that and time travel "
            "to earlier versions will fail",
            retention_hours,
        )
    counts = _file_counts(store)
    out = []
    for namespace, table in pairs:
        t0 = time.perf_counter()
        files = counts.get((namespace, table))
        removed = store.vacuum(namespace, table, retention_hours=retention_hours)
        out.append(
            TableMaintenance(
                namespace=namespace,
                table=table,
                action="vacuum",
                files_before=files,
                files_after=files,
                files_removed=len(removed),
                files_added=0,
                version=store.version(namespace, table),
                seconds=round(time.perf_counter() - t0, 4),
            )
        )
        logger.info(
            "vacuumed %s/%s: %d unreferenced file(s) deleted (retention %dh)",
            namespace,
            table,
            len(removed),
            retention_hours,
        )
    return out
