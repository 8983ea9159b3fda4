"""Auto compaction: merge a machine-month partition's files once a write brings it to a bound.

Every commit and open of a Delta table costs in proportion to its active files (delta-rs
rebuilds the file list), and daily runs add one file per machine-day: left alone, one
machine-day overwrite in a 1,000-machine table is 4.7x slower after 30 days than in a
10-machine one (bench/partitions.py). Merging each partition as it reaches ``bound`` files
keeps a table at <= bound files per machine-month with no maintenance job, the way Delta's
own auto compaction does (``delta.autoOptimize.autoCompact``). It is a separate commit after
the write and best effort: if a concurrent writer wins, the files wait for the next write or
``meshinsights maintenance compact``.

The merge is an ordinary overwrite of the partition (read its rows, write them back as one
file), not ``optimize.compact()``: delta-rs 1.6 accepts an overwrite that removed a file a
concurrent OPTIMIZE had already merged (its removes carry ``dataChange=false``), so the
merged file and the overwrite's replacement both kept the row. A data-changing rewrite is
checked like any other overwrite: the loser fails its commit and retries on the new files
(tests/store/test_compaction.py: a race in one process, and four spawned writers).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake

from meshinsights.errors import ConfigError
from meshinsights.store.predicates import partition_predicate

__all__ = ["AUTO_COMPACT_FILES", "auto_compact", "auto_compact_bound", "partitions_to_compact"]

logger = logging.getLogger(__name__)

#: Default: off. Opt in with ``MESHINSIGHTS_AUTO_COMPACT_FILES=8`` (what bench/partitions.py
#: measures). The first version merged with ``optimize.compact()`` and, with parallel
#: writers on one partition, duplicated rows (17 run records for 9 in a CI integration run;
#: 1,434 rows for 48 in the stress test). The data-changing merge below passes that stress
#: test; it stays opt-in until a full CI cycle has run with it on.
AUTO_COMPACT_FILES = 0
ENV = "MESHINSIGHTS_AUTO_COMPACT_FILES"


def auto_compact_bound(value: int | None = None) -> int:
    """``value`` if given, else ``$MESHINSIGHTS_AUTO_COMPACT_FILES``, else the default."""
    given: object = value
    if value is None:
        given = os.environ.get(ENV, "").strip()
        if not given:
            return AUTO_COMPACT_FILES
        value = int(given) if str(given).isdigit() else -1
    if value < 0 or value == 1:
        raise ConfigError(
            f"{ENV} / auto_compact_files must be 0 (off) or a file count >= 2, got {given!r}"
        )
    return value


def partitions_to_compact(
    actions: pa.Table, machines: list[str], months: list[str], bound: int
) -> dict[str, list[str]]:
    """``{month: [machine, ...]}`` of the written partitions holding ``bound`` files or more.

    ``actions`` is ``DeltaTable.get_add_actions(flatten=True)`` (one row per active file).
    """
    if not bound or actions.num_rows < bound:
        return {}
    mids, mos = actions.column("partition.machine_id"), actions.column("partition.month")
    written = actions.filter(
        pc.and_(
            pc.is_in(mids, value_set=pa.array(machines, pa.string())),
            pc.is_in(mos, value_set=pa.array(months, pa.string())),
        )
    )
    counts = written.group_by(["partition.month", "partition.machine_id"]).aggregate(
        [([], "count_all")]
    )
    full = counts.filter(pc.greater_equal(counts.column("count_all"), bound)).to_pylist()
    out: dict[str, list[str]] = {}
    for row in full:
        out.setdefault(row["partition.month"], []).append(row["partition.machine_id"])
    return {month: sorted(ms) for month, ms in sorted(out.items())}


def auto_compact(
    table: DeltaTable, machines: list[str], months: list[str], bound: int, meta: dict[str, str]
) -> list[dict[str, Any]]:
    """Merge the written partitions that reached ``bound`` files; one commit per month.

    Returns what each merge rewrote. A failure (a concurrent writer's conflicting
    commit, a transient store error) is logged, never raised: the write itself has committed.
    """
    done: list[dict[str, Any]] = []
    if not bound:
        return done
    todo = partitions_to_compact(
        pa.table(table.get_add_actions(flatten=True)), machines, months, bound
    )
    for month, ms in todo.items():
        props = CommitProperties(custom_metadata={**meta, "meshinsights.operation": "auto-compact"})
        try:
            rows = table.to_pyarrow_dataset(
                file_pruning_predicate=[("machine_id", "in", ms), ("month", "=", month)]
            ).to_table()
            write_deltalake(
                table,
                rows,
                mode="overwrite",
                predicate=partition_predicate(ms, month),
                commit_properties=props,
            )
        except Exception as exc:  # best effort: the data is committed either way
            logger.warning(
                "auto compaction of %s month %s (%d machine(s)) skipped: %s",
                table.table_uri,
                month,
                len(ms),
                exc,
            )
            continue
        logger.info(
            "auto-compacted %s month %s: %d machine(s), %d rows rewritten",
            table.table_uri,
            month,
            len(ms),
            rows.num_rows,
        )
        done.append({"month": month, "machines": len(ms), "rows": rows.num_rows})
    return done
