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

``compact_table`` (``meshinsights maintenance compact``) uses the same merge over every
partition with two or more files, in bounded batches, so maintenance is safe to run while
pipelines write.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from meshinsights.errors import ConfigError, StoreError
from meshinsights.retry import COMPACTION, retrying
from meshinsights.store.predicates import partition_predicate

__all__ = [
    "AUTO_COMPACT_FILES",
    "auto_compact",
    "auto_compact_bound",
    "compact_table",
    "merge_batches",
    "merge_partitions",
    "partitions_to_compact",
]

logger = logging.getLogger(__name__)

#: Default: merge a machine-month partition when a write brings it to 8 files (what
#: bench/partitions.py measures; 0 turns it off). The first version merged with
#: ``optimize.compact()`` and, with parallel writers on one partition, duplicated rows (17 run
#: records for 9 in a CI integration run; 1,434 rows for 48 in the stress test), so it was
#: opt-in until the data-changing merge below had passed that stress test and a full CI cycle.
AUTO_COMPACT_FILES = 8
ENV = "MESHINSIGHTS_AUTO_COMPACT_FILES"
#: Rows per maintenance merge commit: one batch is read into memory at a time (a machine-month
#: at 1-minute resolution is ~45k rows per metric).
MERGE_BATCH_ROWS = 2_000_000


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


def _partition_files(actions: pa.Table, *, rows: bool = False) -> pa.Table:
    """Files (and, with ``rows``, records) per machine-month partition of ``actions``."""
    aggs: list[tuple[Any, str]] = [([], "count_all")]
    if rows:
        aggs.append(("num_records", "sum"))
    return actions.group_by(["partition.month", "partition.machine_id"]).aggregate(aggs)


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
    counts = _partition_files(written)
    full = counts.filter(pc.greater_equal(counts.column("count_all"), bound)).to_pylist()
    out: dict[str, list[str]] = {}
    for row in full:
        out.setdefault(row["partition.month"], []).append(row["partition.machine_id"])
    return {month: sorted(ms) for month, ms in sorted(out.items())}


def merge_batches(actions: pa.Table, max_rows: int) -> list[tuple[str, list[str], int, int]]:
    """Every partition with 2+ files, as ``(month, machines, files, rows)`` merge batches.

    A batch is one commit: machines of one month, up to ``max_rows`` rows (a partition larger
    than that is a batch of its own), so a merge holds at most one batch in memory.
    """
    if actions.num_rows < 2:
        return []
    counts = _partition_files(actions, rows=True)
    todo = counts.filter(pc.greater_equal(counts.column("count_all"), 2)).to_pylist()
    todo.sort(key=lambda r: (r["partition.month"], r["partition.machine_id"]))
    batches: list[tuple[str, list[str], int, int]] = []
    for row in todo:
        month, machine = row["partition.month"], row["partition.machine_id"]
        files, rows = int(row["count_all"]), int(row["num_records_sum"] or 0)
        last = batches[-1] if batches else None
        if last and last[0] == month and last[3] + rows <= max_rows:
            batches[-1] = (month, [*last[1], machine], last[2] + files, last[3] + rows)
        else:
            batches.append((month, [machine], files, rows))
    return batches


def merge_partitions(
    table: DeltaTable, month: str, machines: list[str], meta: dict[str, str]
) -> int:
    """Rewrite these machine-month partitions as one file, in one data-changing commit.

    Returns the rows rewritten. Raises CommitFailedError when a concurrent writer changed
    the partitions first (nothing is committed; reload and call again).
    """
    rows = table.to_pyarrow_dataset(
        file_pruning_predicate=[("machine_id", "in", machines), ("month", "=", month)]
    ).to_table()
    write_deltalake(
        table,
        rows,
        mode="overwrite",
        predicate=partition_predicate(machines, month),
        commit_properties=CommitProperties(custom_metadata=meta),
    )
    return rows.num_rows


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
    meta = {**meta, "meshinsights.operation": "auto-compact"}
    for month, ms in todo.items():
        try:
            rows = merge_partitions(table, month, ms, meta)
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
            rows,
        )
        done.append({"month": month, "machines": len(ms), "rows": rows})
    return done


def compact_table(
    table: DeltaTable,
    meta: dict[str, str],
    *,
    max_rows: int = MERGE_BATCH_ROWS,
    retries: int = 8,
) -> dict[str, int]:
    """Merge every machine-month partition with 2+ files into one file (maintenance).

    The same data-changing rewrite as auto compaction, so it is safe beside pipelines writing
    the table: a batch that loses a race to a writer is reread and retried (up to
    ``retries`` times, then StoreError; batches already merged stay merged). One commit per
    batch of ``max_rows`` rows, which bounds memory. Returns optimize-style metrics.
    """
    meta = {**meta, "meshinsights.operation": "compact"}
    batches = merge_batches(pa.table(table.get_add_actions(flatten=True)), max_rows)
    metrics = dict.fromkeys(
        ("numFilesRemoved", "numFilesAdded", "partitionsOptimized", "commits", "rowsRewritten"), 0
    )
    for month, machines, _files, _rows in batches:
        policy = COMPACTION.with_(attempts=retries + 1)
        what = f"compacting {table.table_uri} month {month}"
        try:
            for attempt in retrying(policy, retry_on=CommitFailedError, what=what):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        table.update_incremental()  # see the winner's commit
                    # Count the files the commit actually replaces: a retry sees the winner's.
                    before = _partition_file_count(table, month, machines)
                    rows = merge_partitions(table, month, machines, meta)
        except CommitFailedError as exc:
            raise StoreError(
                f"compacting {table.table_uri} month {month} lost {retries + 1} races "
                "to concurrent writers; rerun maintenance compact (merged partitions "
                "stay merged)"
            ) from exc
        metrics["numFilesRemoved"] += before
        metrics["numFilesAdded"] += _partition_file_count(table, month, machines)
        metrics["partitionsOptimized"] += len(machines)
        metrics["commits"] += 1
        metrics["rowsRewritten"] += rows
    return metrics


def _partition_file_count(table: DeltaTable, month: str, machines: list[str]) -> int:
    pruning = [("machine_id", "in", machines), ("month", "=", month)]
    return len(table.file_uris(file_pruning_predicate=pruning))
