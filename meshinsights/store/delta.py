"""Delta Lake partition store: read one machine-window, idempotently overwrite exactly it.

Layout is ``<root>/<namespace>/<table>`` (namespace = pipeline name), partitioned by
``machine_id`` and ``month``. Every write is one Delta commit whose metadata carries the run
id, step, window, code version and row counts (and, for sources, the watermark), so a
watermark can never advance without its data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from meshinsights import __version__
from meshinsights.errors import BrokenTableError, StoreError
from meshinsights.model import (
    RUN,
    Window,
    Windows,
    check_machine_id,
    check_table_name,
    spans,
)
from meshinsights.retry import COMMIT, retrying
from meshinsights.store.compaction import auto_compact, auto_compact_bound, compact_table
from meshinsights.store.filesystems import list_namespaces, list_table_names
from meshinsights.store.frames import SERIAL_ROWS, check_in_scope, check_new_columns, prepare
from meshinsights.store.handles import KeptTables, broken
from meshinsights.store.predicates import window_predicate
from meshinsights.store.records import (
    TableInfo,
    WriteResult,
    commit_metadata,
    decode_commit,
    write_metadata,
)

__all__ = ["DeltaStore", "TableInfo", "WriteResult"]

logger = logging.getLogger(__name__)

#: Tables are created with a checkpoint every this many commits (deltalake's default is 100):
#: opening replays at most this many JSON commits after the Parquet checkpoint.
CHECKPOINT_INTERVAL = 10
#: Set on every table at creation, and by compact() on tables created before they existed.
#: Per-file statistics are kept for ``ts`` only: machine_id and month are partition values
#: (pruned without statistics) and window reads filter on ts. Min/max/null counts of every
#: column made each file's log entry larger and every commit and open slower in proportion:
#: at 30,000 files, overwrite 223 -> 118 ms and open 97 -> 63 ms (bench/partitions.py).
TABLE_PROPERTIES = {
    "delta.checkpointInterval": str(CHECKPOINT_INTERVAL),
    "delta.dataSkippingStatsColumns": "ts",
}

#: The description of tables a pipeline windowed by run writes (Delta's table properties
#: accept no custom keys): their files are a run's each, and compaction leaves them so.
RUN_LAYOUT = "meshinsights: laid out by run (a file per run)"


class DeltaStore:
    """Artifact tables under one root URI (a local folder or any deltalake URI)."""

    def __init__(
        self,
        root: str,
        *,
        storage_options: Mapping[str, str] | None = None,
        auto_compact_files: int | None = None,
    ) -> None:
        """``auto_compact_files``: merge a machine-month partition when a write brings it to
        this many files (default 8, 0 = never; ``$MESHINSIGHTS_AUTO_COMPACT_FILES``)."""
        self.root = root.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.auto_compact_files = auto_compact_bound(auto_compact_files)
        self._tables = KeptTables(self.storage_options)
        #: Tables the last :meth:`tables` call could not read: ``namespace/table`` -> reason.
        self.broken: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"DeltaStore({self.root!r})"

    # ------------------------------------------------------------------ locations
    def uri(self, namespace: str, table: str) -> str:
        """Where ``namespace/table`` lives; both names are validated (they become paths)."""
        return f"{self.root}/{check_table_name(namespace)}/{check_table_name(table)}"

    def _open(self, namespace: str, table: str) -> DeltaTable | None:
        """The table at its latest version (kept per thread), or None if it does not exist."""
        return self._tables.open(self.uri(namespace, table))

    def exists(self, namespace: str, table: str) -> bool:
        return self._open(namespace, table) is not None

    # ------------------------------------------------------------------ reads
    def read(
        self,
        namespace: str,
        table: str,
        machine_ids: str | Iterable[str],
        window: Window,
        *,
        columns: list[str] | None = None,
        version: int | None = None,
    ) -> pd.DataFrame:
        """Rows of ``table`` for these machines in ``window``, sorted by machine and time.

        Files are pruned by partition and statistics inside delta-rs, so the cost depends on
        the partition read, not on the size of the table. Raises StoreError if the table is
        missing.
        """
        machines = [machine_ids] if isinstance(machine_ids, str) else sorted(set(machine_ids))
        arrow = self.read_arrow(
            namespace, table, machines, window, columns=columns, version=version
        )
        if "month" in arrow.column_names and (columns is None or "month" not in columns):
            arrow = arrow.drop_columns(["month"])  # in Arrow: free; in pandas: a copy
        # Sorted in Arrow before conversion: a pandas sort of the converted frame (by
        # machine_id and ts, which factorizes the strings) was 7 % of a daily hvac_power run.
        keys = [(c, "ascending") for c in ("machine_id", "ts") if c in arrow.column_names]
        if len(machines) == 1:
            keys = [k for k in keys if k[0] == "ts"]
        if keys and arrow.num_rows > 1:
            arrow = arrow.sort_by(keys)
        return arrow.to_pandas(use_threads=arrow.num_rows >= SERIAL_ROWS)

    def read_arrow(
        self,
        namespace: str,
        table: str,
        machine_ids: str | Iterable[str],
        window: Window,
        *,
        columns: list[str] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(
                f"table {namespace}/{table} does not exist in {self.root}; run the step that "
                "produces it first (meshinsights run / meshinsights step)"
            )
        if version is not None:
            dt.load_as_version(version)
        machines = [machine_ids] if isinstance(machine_ids, str) else sorted(set(machine_ids))
        partitions = [("machine_id", "in", machines), ("month", "in", window.months())]
        terms = [
            *partitions,
            ("ts", ">=", pd.Timestamp(window.start)),
            ("ts", "<", pd.Timestamp(window.end)),
        ]
        if window.run is not None:  # a run window: that run's rows only
            if RUN not in dt.schema().to_arrow().names:
                raise StoreError(
                    f"table {namespace}/{table} has no {RUN} column, so it cannot be read by "
                    f"run ({window}); it was written by a pipeline windowed by time"
                )
            terms.append((RUN, "=", window.run))
        rows = pq.filters_to_expression(terms)
        # Prune to the partitions' files while the log is replayed; to_pyarrow_table(filters=)
        # would first build a fragment for every file in the table (29 s instead of 0.4 s for
        # one machine-day among 30,000 files: bench/partitions.py). Only partition columns go
        # into the pruning predicate: a ts term there is checked against every file's
        # statistics, which costs more than it saves.
        pruning: list[Any] = list(partitions)
        if window.run is not None:
            # A run's rows sit in its own files (one per run overwrite): their ts statistics
            # prune the machine-month's other runs, which the partition terms cannot.
            pruning += [
                ("ts", ">=", pd.Timestamp(window.start)),
                ("ts", "<", pd.Timestamp(window.end)),
            ]
        try:
            dataset = dt.to_pyarrow_dataset(file_pruning_predicate=pruning)
            return dataset.to_table(columns=columns, filter=rows)
        except OSError as exc:  # a data file the log names is gone (FileNotFoundError et al.)
            raise broken(self.uri(namespace, table), exc) from None

    def read_machine(self, namespace: str, table: str, machine_id: str) -> pd.DataFrame:
        """Every row of one machine (its partitions only): small per-machine tables such as
        the run index. An empty frame if the table does not exist yet."""
        dt = self._open(namespace, table)
        if dt is None:
            return pd.DataFrame()
        try:
            part = [("machine_id", "=", check_machine_id(machine_id))]
            return dt.to_pyarrow_dataset(file_pruning_predicate=part).to_table().to_pandas()
        except OSError as exc:
            raise broken(self.uri(namespace, table), exc) from None

    def read_all(self, namespace: str, table: str, *, version: int | None = None) -> pd.DataFrame:
        """The whole current table (small tables and tests only)."""
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        try:
            if version is not None:
                dt.load_as_version(version)
            return dt.to_pandas()
        except OSError as exc:
            raise broken(self.uri(namespace, table), exc) from None

    def dataset(self, namespace: str, table: str) -> Any:
        """The current version as a pyarrow dataset (what DuckDB scans); never a file glob."""
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        return dt.to_pyarrow_dataset()

    # ------------------------------------------------------------------ writes
    def overwrite(
        self,
        namespace: str,
        table: str,
        frame: pd.DataFrame | pa.Table,
        *,
        machine_ids: str | Iterable[str],
        window: Windows,
        schema: pa.Schema | None = None,
        metadata: Mapping[str, Any] | None = None,
        evolve: bool = False,
    ) -> WriteResult:
        """Replace exactly these machines' rows in ``window`` with ``frame``, in one commit.

        Running it twice with the same frame leaves the same rows; other machines and windows
        are untouched. An empty frame deletes the window's rows (a rerun that finds nothing
        clears what an earlier run wrote). ``schema`` is enforced (cast, with a clear error on
        mismatch); a new column is only accepted with ``evolve=True`` and is logged. Several
        windows that do not overlap (a batched run) are replaced together in the one commit.
        """
        machines = [machine_ids] if isinstance(machine_ids, str) else sorted(set(machine_ids))
        for m in machines:
            check_machine_id(m)
        self.uri(namespace, table)  # validates both names before any work
        started = time.perf_counter()
        existing = self._open(namespace, table)
        target = (
            schema
            if schema is not None
            else (pa.schema(existing.schema().to_arrow()) if existing is not None else None)
        )
        arrow = prepare(frame, table=f"{namespace}/{table}", schema=target, evolve=evolve)
        if existing is not None and schema is not None:
            current = pa.schema(existing.schema().to_arrow())
            check_new_columns(current, arrow, f"{namespace}/{table}", evolve)
        check_in_scope(arrow, machines, window, f"{namespace}/{table}")
        ranges = spans(window)
        meta = write_metadata(__version__, ranges, machines, arrow.num_rows, metadata or {})
        predicate = window_predicate(machines, window)
        version, written = self._commit_with_retry(
            namespace,
            table,
            arrow,
            predicate,
            commit_metadata(meta),
            evolve,
            existing,
            by_run=ranges[0].run is not None,
        )
        # A run window's rows stay in files of their own (one per run overwrite): merging runs
        # into one file would make every later run's overwrite rewrite all of them
        # (bench/runs.py: 100 runs, 2.95x slower than 10 with merging, 1.23x without).
        if arrow.num_rows and self.auto_compact_files and ranges[0].run is None:
            auto_compact(
                written,
                machines,
                sorted({m for r in ranges for m in r.months()}),
                self.auto_compact_files,
                commit_metadata({"meshinsights.code_version": __version__}),
            )
        result = WriteResult(
            table=f"{namespace}/{table}",
            version=version,
            rows=arrow.num_rows,
            machines=len(machines),
            seconds=time.perf_counter() - started,
        )
        logger.info(
            "overwrote %s for %d machine(s) %s: %d rows, version %d, %.3fs",
            result.table,
            len(machines),
            ", ".join(map(str, ranges)),
            result.rows,
            version,
            result.seconds,
        )
        return result

    def _commit_with_retry(
        self,
        namespace: str,
        table: str,
        arrow: pa.Table,
        predicate: str,
        meta: dict[str, str],
        evolve: bool,
        opened: DeltaTable | None,
        *,
        by_run: bool = False,
    ) -> tuple[int, DeltaTable]:
        """Commit, retrying on conflicts; returns the version and the table it was made on.

        ``opened`` (just brought up to date by the caller) serves the first attempt; a retry
        reopens to see the commit it lost to.
        """
        uri = self.uri(namespace, table)
        # Concurrent writers to one table (a fleet run, two Airflow workers) can collide on a
        # commit; the overwrite is idempotent, so retrying the whole operation is safe.
        try:
            for attempt in retrying(COMMIT, retry_on=CommitFailedError, what=f"commit to {uri}"):
                with attempt:
                    first = attempt.retry_state.attempt_number == 1
                    try:
                        return self._commit_once(
                            namespace,
                            table,
                            arrow,
                            predicate,
                            meta,
                            evolve,
                            opened if first else None,
                            by_run=by_run,
                        )
                    except (CommitFailedError, StoreError):
                        raise
                    except Exception as exc:  # deltalake raises bare DeltaError/OSError variants
                        if "failed to fetch metadata for file" in str(exc).lower():
                            raise broken(uri, exc) from None
                        raise StoreError(f"writing {uri} failed: {exc}") from exc
        except CommitFailedError as exc:
            raise StoreError(
                f"commit to {uri} failed {COMMIT.attempts} times on conflicts with "
                "concurrent writers; rerun the step (it is idempotent)"
            ) from exc
        raise AssertionError("unreachable")

    def _commit_once(
        self,
        namespace: str,
        table: str,
        arrow: pa.Table,
        predicate: str,
        meta: dict[str, str],
        evolve: bool,
        opened: DeltaTable | None = None,
        *,
        by_run: bool = False,
    ) -> tuple[int, DeltaTable]:
        props = CommitProperties(custom_metadata=meta)
        existing = (
            opened
            or self._open(namespace, table)
            or self._create(namespace, table, arrow.schema, by_run=by_run)
        )
        if arrow.num_rows == 0:
            before = existing.version()
            existing.delete(predicate, commit_properties=props)
            if existing.version() == before:
                # Nothing to delete: delta-rs makes no commit. Record one anyway, so an empty
                # result has its run in the history (what made it, from which inputs).
                write_deltalake(existing, arrow, mode="append", commit_properties=props)
        else:
            write_deltalake(
                existing,
                arrow,
                mode="overwrite",
                predicate=predicate,
                schema_mode="merge" if evolve else None,
                commit_properties=props,
            )
        # The table object now holds the snapshot of its own commit: this is our version even
        # when other writers commit right after us.
        return int(existing.version()), existing

    def _create(
        self, namespace: str, table: str, schema: pa.Schema, *, by_run: bool = False
    ) -> DeltaTable:
        """Create an empty table; if a concurrent writer created it first, open theirs.

        A table first written by a run window is described as laid out by run
        (``RUN_LAYOUT``): compaction leaves its one-file-per-run layout alone.
        """
        uri = self.uri(namespace, table)
        try:
            write_deltalake(
                uri,
                schema.empty_table(),
                mode="append",
                partition_by=["machine_id", "month"],
                configuration=TABLE_PROPERTIES,
                description=RUN_LAYOUT if by_run else None,
                storage_options=self.storage_options,
            )
        except Exception as exc:  # lost the creation race (or a real failure: reopen tells)
            logger.info("creating %s: %s; opening the existing table", uri, exc)
        created = self._open(namespace, table)
        if created is None:
            raise StoreError(f"could not create table {uri}; check the store URI and permissions")
        return created

    def record(
        self,
        namespace: str,
        table: str,
        *,
        machine_ids: str | Iterable[str],
        metadata: Mapping[str, Any],
    ) -> int:
        """A commit that changes no rows and carries ``metadata`` (a ledger entry); its version.

        The ingest state (watermark, pending windows) lives in telemetry's commits, so a
        record that the steps have caught up travels in the same log as the data it is about.
        """
        machines = [machine_ids] if isinstance(machine_ids, str) else sorted(set(machine_ids))
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        meta = commit_metadata(
            {
                "meshinsights.code_version": __version__,
                "meshinsights.machines": machines,
                "meshinsights.rows_written": 0,
                **metadata,
            }
        )
        empty = pa.schema(dt.schema().to_arrow()).empty_table()
        try:
            write_deltalake(
                dt, empty, mode="append", commit_properties=CommitProperties(custom_metadata=meta)
            )
        except Exception as exc:  # deltalake raises bare DeltaError/OSError variants
            raise StoreError(f"recording on {self.uri(namespace, table)} failed: {exc}") from exc
        return int(dt.version())

    def delete_where(
        self, namespace: str, table: str, predicate: str, *, metadata: Mapping[str, Any]
    ) -> tuple[int, int, int]:
        """Delete the rows matching ``predicate`` in one commit carrying ``metadata``.

        Returns ``(version before, version after, rows deleted)``; nothing matching makes no
        commit (both versions equal). Used by retention and erasure, never by steps (a step's
        delete is an overwrite of its window). Build the predicate with store/predicates.py.
        """
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        before = int(dt.version())
        meta = commit_metadata({"meshinsights.code_version": __version__, **metadata})
        try:
            metrics = dt.delete(predicate, commit_properties=CommitProperties(custom_metadata=meta))
        except Exception as exc:  # deltalake raises bare DeltaError/OSError variants
            raise StoreError(f"deleting from {self.uri(namespace, table)} failed: {exc}") from exc
        return before, int(dt.version()), int(metrics.get("num_deleted_rows", 0) or 0)

    # ------------------------------------------------------------------ metadata
    def history(self, namespace: str, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first, with MeshInsights metadata decoded from JSON."""
        dt = self._open(namespace, table)
        if dt is None:
            return []
        return [decode_commit(commit) for commit in dt.history(limit)]

    def version(self, namespace: str, table: str) -> int | None:
        dt = self._open(namespace, table)
        return None if dt is None else int(dt.version())

    def schema(self, namespace: str, table: str) -> pa.Schema:
        """The current version's Arrow schema, from the log (no data file is read)."""
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        return pa.schema(dt.schema().to_arrow())

    def namespaces(self) -> list[str]:
        """The pipelines (folders) under the root that hold tables."""
        return list_namespaces(self.root, self.storage_options)

    def table_names(self, namespace: str) -> list[str]:
        """The Delta tables of one namespace."""
        return list_table_names(self.root, self.storage_options, namespace)

    def tables(self) -> list[TableInfo]:
        """Every readable artifact table with its current version, row count and file count.

        A table that cannot be read is left out, logged, and listed in :attr:`broken` (URI ->
        reason) until the next call: one broken table never hides the others.
        """
        out = []
        self.broken = {}
        for ns in self.namespaces():
            for name in self.table_names(ns):
                try:
                    dt = self._open(ns, name)
                except BrokenTableError as exc:
                    logger.warning("%s", exc)
                    self.broken[f"{ns}/{name}"] = str(exc)
                    continue
                if dt is None:
                    continue
                actions = pa.table(dt.get_add_actions(flatten=True))
                rows = pc.sum(actions.column("num_records")).as_py() if actions.num_rows else 0
                out.append(
                    TableInfo(
                        namespace=ns,
                        name=name,
                        uri=self.uri(ns, name),
                        version=int(dt.version()),
                        rows=int(rows or 0),
                        files=actions.num_rows,
                        columns=[f.name for f in dt.schema().fields],
                    )
                )
        return out

    def compact(self, namespace: str, table: str) -> dict[str, Any]:
        """Merge each machine-month partition's files into one (safe beside running writers).

        A data-changing rewrite per batch of partitions (store/compaction.py), not
        ``optimize.compact()``, whose ``dataChange=false`` removes let a concurrent overwrite
        keep a row twice. A table created before TABLE_PROPERTIES changed gets them first, so
        the rewritten files carry only the statistics the store uses.
        """
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        try:
            current = dt.metadata().configuration
            if dt.metadata().description == RUN_LAYOUT:
                logger.info("%s is laid out by run (a file per run): not compacted", dt.table_uri)
                return {"skipped": "laid out by run: one file per run keeps run writes flat"}
            if any(current.get(k) != v for k, v in TABLE_PROPERTIES.items()):
                dt.alter.set_table_properties(TABLE_PROPERTIES)
            metrics = compact_table(dt, commit_metadata({"meshinsights.code_version": __version__}))
            dt.create_checkpoint()
        except StoreError:
            raise
        except Exception as exc:  # a read-only store, a lost file: one line naming the table
            raise _failed("compacting", self.uri(namespace, table), exc) from None
        return dict(metrics)

    def vacuum(self, namespace: str, table: str, *, retention_hours: int) -> list[str]:
        """Delete files no version newer than ``retention_hours`` needs; returns their paths."""
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        try:
            return list(
                dt.vacuum(
                    retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
                )
            )
        except Exception as exc:
            raise _failed("vacuuming", self.uri(namespace, table), exc) from None


def _failed(doing: str, uri: str, exc: BaseException) -> StoreError:
    """A maintenance failure as one line: what, on which table, the first line of the cause."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if isinstance(exc, PermissionError) or any(
        w in detail.lower() for w in ("permission denied", "read-only", "access denied")
    ):
        return StoreError(
            f"{doing} {uri} failed: {detail}; the store is read-only for this user: run "
            "maintenance as one that can write it"
        )
    if isinstance(exc, FileNotFoundError) or "fetch metadata" in detail.lower():
        return broken(uri, exc)
    return StoreError(f"{doing} {uri} failed: {detail}")
