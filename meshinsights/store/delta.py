"""Delta Lake partition store: read one machine-window, idempotently overwrite exactly it.

Layout is ``<root>/<namespace>/<table>`` (namespace = pipeline name), partitioned by
``machine_id`` and ``month``. Every write is one Delta commit whose metadata carries the run
id, step, window, code version and row counts (and, for sources, the watermark), so a
watermark can never advance without its data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from meshinsights import __version__
from meshinsights.errors import StoreError
from meshinsights.model import TS, Window, check_machine_id, check_table_name
from meshinsights.store.filesystems import filesystem_for
from meshinsights.store.predicates import window_predicate

__all__ = ["DeltaStore", "TableInfo", "WriteResult"]

logger = logging.getLogger(__name__)

_MAX_COMMIT_RETRIES = 12
#: Open tables kept per thread and store; a Delta snapshot costs O(active files) to load
#: (≈0.5 s at 30,000 files), refreshing a kept one costs O(new commits).
_HANDLES_PER_THREAD = 32
#: A kept table grows in memory with every commit it is brought forward by; past this many it
#: is loaded afresh. 150 machines of a fleet run, one process: RSS 258 -> 339 MB unbounded,
#: 256 -> 298 MB with 20, 259 -> 300 MB with no kept tables at all.
_MAX_REFRESHED_COMMITS = 20
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


@dataclass(frozen=True)
class WriteResult:
    """What one overwrite did: small enough for XCom."""

    table: str
    version: int
    rows: int
    machines: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "version": self.version,
            "rows": self.rows,
            "machines": self.machines,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class TableInfo:
    """One artifact table as listed by :meth:`DeltaStore.tables`."""

    namespace: str
    name: str
    uri: str
    version: int
    rows: int
    files: int
    columns: list[str] = field(default_factory=list)


def _json_meta(metadata: Mapping[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in metadata.items()}


class DeltaStore:
    """Artifact tables under one root URI (a local folder or any deltalake URI)."""

    def __init__(self, root: str, *, storage_options: Mapping[str, str] | None = None) -> None:
        self.root = root.rstrip("/")
        self.storage_options = dict(storage_options or {})
        # Per-thread: a DeltaTable object is never shared between threads (the dashboard's
        # server runs sessions on threads). Never shared between processes either (no fork).
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"DeltaStore({self.root!r})"

    # ------------------------------------------------------------------ locations
    def uri(self, namespace: str, table: str) -> str:
        """Where ``namespace/table`` lives; both names are validated (they become paths)."""
        return f"{self.root}/{check_table_name(namespace)}/{check_table_name(table)}"

    def _open(self, namespace: str, table: str) -> DeltaTable | None:
        """The table at its latest version, or None if it does not exist yet.

        A table this thread opened before is brought up to date with the commits made since
        (by anyone), instead of loading its whole snapshot again.
        """
        uri = self.uri(namespace, table)
        handles = self._handles()
        kept = handles.get(uri)
        if kept is not None:
            table_, loaded = kept
            try:
                table_.update_incremental()
            except Exception as exc:  # removed or replaced underneath us: load it afresh
                logger.info("reloading %s: %s", uri, exc)
                del handles[uri]
            else:
                if table_.version() - loaded <= _MAX_REFRESHED_COMMITS:
                    handles.move_to_end(uri)
                    return table_
                del handles[uri]  # bound the memory a long-lived handle accumulates
        dt = _try_open(uri, self.storage_options)
        if dt is not None:
            handles[uri] = (dt, dt.version())
            while len(handles) > _HANDLES_PER_THREAD:
                handles.popitem(last=False)
        return dt

    def _handles(self) -> OrderedDict[str, tuple[DeltaTable, int]]:
        """This thread's kept tables: URI -> (table, version it was loaded at)."""
        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = OrderedDict()
        return handles

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
        arrow = self.read_arrow(
            namespace, table, machine_ids, window, columns=columns, version=version
        )
        df = arrow.to_pandas()
        if "month" in df.columns and (columns is None or "month" not in columns):
            df = df.drop(columns="month")
        # One machine: sorting by ts alone gives the same order without factorizing the string
        # column (6x cheaper on a 90-day machine-window).
        keys = ("ts",) if isinstance(machine_ids, str) else ("machine_id", "ts")
        sort = [c for c in keys if c in df.columns]
        return df.sort_values(sort, kind="stable").reset_index(drop=True) if sort else df

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
        rows = pq.filters_to_expression(
            [
                *partitions,
                ("ts", ">=", pd.Timestamp(window.start)),
                ("ts", "<", pd.Timestamp(window.end)),
            ]
        )
        # Prune to the partitions' files while the log is replayed; to_pyarrow_table(filters=)
        # would first build a fragment for every file in the table (29 s instead of 0.4 s for
        # one machine-day among 30,000 files: bench/partitions.py). Only partition columns go
        # into the pruning predicate: a ts term there is checked against every file's
        # statistics, which costs more than it saves.
        dataset = dt.to_pyarrow_dataset(file_pruning_predicate=partitions)
        return dataset.to_table(columns=columns, filter=rows)

    def read_all(self, namespace: str, table: str, *, version: int | None = None) -> pd.DataFrame:
        """The whole current table (small tables and tests only)."""
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        if version is not None:
            dt.load_as_version(version)
        return dt.to_pandas()

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
        window: Window,
        schema: pa.Schema | None = None,
        metadata: Mapping[str, Any] | None = None,
        evolve: bool = False,
    ) -> WriteResult:
        """Replace exactly these machines' rows in ``window`` with ``frame``, in one commit.

        Running it twice with the same frame leaves the same rows; other machines and windows
        are untouched. An empty frame deletes the window's rows (a rerun that finds nothing
        clears what an earlier run wrote). ``schema`` is enforced (cast, with a clear error on
        mismatch); a new column is only accepted with ``evolve=True`` and is logged.
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
        arrow = _prepare(frame, table=f"{namespace}/{table}", schema=target, evolve=evolve)
        if existing is not None and schema is not None:
            _check_against_table(existing, arrow, f"{namespace}/{table}", evolve)
        _check_in_scope(arrow, machines, window, f"{namespace}/{table}")
        meta = {
            "meshinsights.code_version": __version__,
            "meshinsights.window": window.as_dict(),
            "meshinsights.machines": machines
            if len(machines) <= 20
            else f"{len(machines)} machines",
            "meshinsights.rows_written": arrow.num_rows,
            **(metadata or {}),
        }
        predicate = window_predicate(machines, window)
        version = self._commit_with_retry(
            namespace, table, arrow, predicate, _json_meta(meta), evolve
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
            window,
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
    ) -> int:
        uri = self.uri(namespace, table)
        # Concurrent writers to one table (a fleet run, two Airflow workers) can collide on a
        # commit; the overwrite is idempotent, so retrying the whole operation is safe.
        for attempt in range(_MAX_COMMIT_RETRIES):
            try:
                return self._commit_once(namespace, table, arrow, predicate, meta, evolve)
            except CommitFailedError as exc:
                if attempt == _MAX_COMMIT_RETRIES - 1:
                    raise StoreError(
                        f"commit to {uri} failed {_MAX_COMMIT_RETRIES} times on conflicts with "
                        "concurrent writers; rerun the step (it is idempotent)"
                    ) from exc
                delay = min(2.0, 0.02 * 2**attempt) * (0.5 + random.random())
                logger.warning(
                    "commit conflict on %s (attempt %d), retrying in %.2fs", uri, attempt + 1, delay
                )
                time.sleep(delay)
            except StoreError:
                raise
            except Exception as exc:  # deltalake raises bare DeltaError/OSError variants
                raise StoreError(f"writing {uri} failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _commit_once(
        self,
        namespace: str,
        table: str,
        arrow: pa.Table,
        predicate: str,
        meta: dict[str, str],
        evolve: bool,
    ) -> int:
        props = CommitProperties(custom_metadata=meta)
        existing = self._open(namespace, table) or self._create(namespace, table, arrow.schema)
        if arrow.num_rows == 0:
            existing.delete(predicate, commit_properties=props)
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
        return int(existing.version())

    def _create(self, namespace: str, table: str, schema: pa.Schema) -> DeltaTable:
        """Create an empty table; if a concurrent writer created it first, open theirs."""
        uri = self.uri(namespace, table)
        try:
            write_deltalake(
                uri,
                schema.empty_table(),
                mode="append",
                partition_by=["machine_id", "month"],
                configuration=TABLE_PROPERTIES,
                storage_options=self.storage_options,
            )
        except Exception as exc:  # lost the creation race (or a real failure: reopen tells)
            logger.info("creating %s: %s; opening the existing table", uri, exc)
        created = self._open(namespace, table)
        if created is None:
            raise StoreError(f"could not create table {uri}; check the store URI and permissions")
        return created

    # ------------------------------------------------------------------ metadata
    def history(self, namespace: str, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first, with MeshInsights metadata decoded from JSON."""
        dt = self._open(namespace, table)
        if dt is None:
            return []
        out = []
        for commit in dt.history(limit):
            row = dict(commit)
            for key, value in list(row.items()):
                if key.startswith("meshinsights.") and isinstance(value, str):
                    with contextlib.suppress(ValueError):
                        row[key] = json.loads(value)
            out.append(row)
        return out

    def version(self, namespace: str, table: str) -> int | None:
        dt = self._open(namespace, table)
        return None if dt is None else int(dt.version())

    def namespaces(self) -> list[str]:
        fs, base = filesystem_for(self.root, self.storage_options)
        from pyarrow import fs as pafs

        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        # Stray folders (lost+found, .ipynb_checkpoints) are not namespaces: skip, don't fail.
        return sorted(
            i.base_name
            for i in infos
            if i.type == pafs.FileType.Directory and _is_name(i.base_name)
        )

    def table_names(self, namespace: str) -> list[str]:
        from pyarrow import fs as pafs

        fs, base = filesystem_for(self.root, self.storage_options)
        infos = fs.get_file_info(
            pafs.FileSelector(f"{base}/{check_table_name(namespace)}", allow_not_found=True)
        )
        return sorted(
            i.base_name
            for i in infos
            if i.type == pafs.FileType.Directory
            and _is_name(i.base_name)
            and fs.get_file_info(f"{i.path}/_delta_log").type == pafs.FileType.Directory
        )

    def tables(self) -> list[TableInfo]:
        """Every artifact table with its current version, row count and file count."""
        out = []
        for ns in self.namespaces():
            for name in self.table_names(ns):
                dt = self._open(ns, name)
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
        """Bin-pack small files into larger ones (one commit; readers are unaffected).

        A table created before TABLE_PROPERTIES changed gets them first, so the rewritten
        files carry only the statistics the store uses.
        """
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        current = dt.metadata().configuration
        if any(current.get(k) != v for k, v in TABLE_PROPERTIES.items()):
            dt.alter.set_table_properties(TABLE_PROPERTIES)
        metrics = dt.optimize.compact()
        dt.create_checkpoint()
        return dict(metrics)

    def vacuum(self, namespace: str, table: str, *, retention_hours: int) -> list[str]:
        """Delete files no version newer than ``retention_hours`` needs; returns their paths."""
        dt = self._open(namespace, table)
        if dt is None:
            raise StoreError(f"table {namespace}/{table} does not exist in {self.root}")
        return list(
            dt.vacuum(
                retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
            )
        )


# ---------------------------------------------------------------------- helpers


def _is_name(name: str) -> bool:
    try:
        check_table_name(name)
    except Exception:
        return False
    return True


def _try_open(uri: str, storage_options: Mapping[str, str]) -> DeltaTable | None:
    try:
        return DeltaTable(uri, storage_options=dict(storage_options))
    except TableNotFoundError:
        return None


def _prepare(
    frame: pd.DataFrame | pa.Table, *, table: str, schema: pa.Schema | None, evolve: bool
) -> pa.Table:
    """Validate and convert a frame to Arrow with ``month``; every problem is a StoreError."""
    if isinstance(frame, pa.Table):
        frame = frame.to_pandas()
    if not isinstance(frame, pd.DataFrame):
        raise StoreError(f"{table}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("machine_id", "ts") if c not in frame.columns]
    if missing:
        raise StoreError(
            f"{table}: frame lacks key column(s) {missing}; every artifact row needs machine_id "
            "and ts (UTC) so it can be placed in its machine/window partition"
        )
    df = frame.drop(columns=["month"], errors="ignore").reset_index(drop=True)
    if df.empty:  # an empty frame carries no dtypes worth checking; the schema cast types it
        df["ts"] = pd.to_datetime(df["ts"], utc=True)
    ts = df["ts"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise StoreError(
            f"{table}: column ts has dtype {ts.dtype}, expected timezone-aware datetimes; "
            "parse it with pd.to_datetime(..., utc=True)"
        )
    if getattr(ts.dt, "tz", None) is None:
        raise StoreError(
            f"{table}: column ts is timezone-naive; localize it (ts.dt.tz_localize('UTC') or the "
            "machine's zone then tz_convert('UTC')) — the store never guesses a zone"
        )
    df["ts"] = ts.dt.tz_convert("UTC")
    for key in ("machine_id", "ts"):
        nulls = int(df[key].isna().sum())
        if nulls:
            raise StoreError(f"{table}: {nulls} row(s) with null {key}; quarantine them first")
    for col in df.columns:
        if pd.api.types.is_float_dtype(df[col]):
            n_inf = int(np.isinf(df[col].to_numpy(dtype="float64", na_value=np.nan)).sum())
            if n_inf:
                raise StoreError(
                    f"{table}: column {col} holds {n_inf} infinite value(s); replace them with "
                    "null (NaN is stored as null) or quarantine the rows"
                )
    df["month"] = _months(df["ts"])
    try:
        arrow = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(
            f"{table}: cannot convert frame to Arrow ({exc}); fix the column types"
        ) from exc
    return _conform(arrow, schema, table, evolve)


def _months(ts: pd.Series) -> np.ndarray:
    """``YYYY-MM`` of each UTC timestamp, formatting each distinct month once.

    ``dt.strftime`` per row took 0.4 s of a 90-day machine-window's write (bench/overhead.py).
    """
    months = ts.to_numpy(dtype="datetime64[us]").astype("datetime64[M]")
    codes, uniques = pd.factorize(months)
    return np.asarray(np.datetime_as_string(uniques, unit="M"), dtype=object)[codes]


def _conform(arrow: pa.Table, schema: pa.Schema | None, table: str, evolve: bool) -> pa.Table:
    """Cast to ``schema`` (plus ``month``); missing columns error, new ones need ``evolve``."""
    if schema is None:
        return arrow.set_column(
            arrow.schema.get_field_index("ts"), "ts", arrow.column("ts").cast(TS)
        )
    target = schema if "month" in schema.names else schema.append(pa.field("month", pa.string()))
    missing = [f.name for f in target if f.name not in arrow.column_names]
    if missing:
        raise StoreError(
            f"{table}: frame lacks column(s) {missing} declared in the table schema; "
            "add them (null is fine for nullable columns)"
        )
    extra = [c for c in arrow.column_names if c not in target.names]
    if extra and not evolve:
        raise StoreError(
            f"{table}: frame has column(s) {extra} the table schema does not declare; declare "
            "them in the step's schema, or pass evolve=True to add them (schema evolution)"
        )
    fields = list(target) + [arrow.schema.field(c) for c in extra]
    columns = []
    for f in fields:
        col = arrow.column(f.name)
        if f.name in target.names and not col.type.equals(f.type):
            try:
                col = col.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise StoreError(
                    f"{table}: column {f.name} has type {col.type}, the table declares {f.type}, "
                    f"and the values do not convert ({exc}); fix the step's output"
                ) from exc
        if not f.nullable and col.null_count:
            raise StoreError(
                f"{table}: column {f.name} has {col.null_count} null(s) but is required"
            )
        columns.append(col)
    if extra:
        logger.warning("%s: schema evolution adds column(s) %s", table, extra)
    return pa.Table.from_arrays(
        columns, schema=pa.schema([pa.field(f.name, f.type, nullable=True) for f in fields])
    )


def _check_against_table(existing: DeltaTable, arrow: pa.Table, table: str, evolve: bool) -> None:
    current = set(pa.schema(existing.schema().to_arrow()).names)
    extra = [c for c in arrow.column_names if c not in current]
    if extra and not evolve:
        raise StoreError(
            f"{table}: the stored table lacks column(s) {extra}; pass evolve=True (logged) to add "
            "them, or drop them from the output"
        )


def _check_in_scope(arrow: pa.Table, machines: list[str], window: Window, table: str) -> None:
    if arrow.num_rows == 0:
        return
    ids = arrow.column("machine_id")
    foreign = pc.sum(pc.invert(pc.is_in(ids, value_set=pa.array(machines)))).as_py() or 0
    if foreign:
        raise StoreError(
            f"{table}: {foreign} row(s) belong to machines other than {machines}; a step may only "
            "write the machines it was run for"
        )
    ts = arrow.column("ts")
    lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
    if lo < window.start or hi >= window.end:
        outside = pc.sum(
            pc.or_(
                pc.less(ts, pa.scalar(window.start, TS)),
                pc.greater_equal(ts, pa.scalar(window.end, TS)),
            )
        ).as_py()
        raise StoreError(
            f"{table}: {outside} row(s) fall outside the window {window} (min ts {lo}, max ts "
            f"{hi}); a step writes only its own window — filter its output to the window"
        )
