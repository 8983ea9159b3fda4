"""DuckDB over the artifact tables: every Delta table's *current* version as a SQL view.

How a table reaches DuckDB, and why:

* deltalake resolves the table's current snapshot (the files its log says are live) and hands
  it over as a pyarrow dataset (:meth:`DeltaStore.dataset`); DuckDB scans that dataset with
  projection and filter pushdown, so ``WHERE machine_id = '…'`` prunes files by partition.
* Never ``read_parquet('<table>/**/*.parquet')``: until a vacuum, the folder still holds every
  file an overwrite replaced, so a glob returns rows the current version no longer has.
* Not DuckDB's ``delta`` extension: DuckDB downloads it at run time from extensions.duckdb.org,
  which this environment (and many air-gapped plants) cannot reach, and no PyPI package ships it
  pinned to duckdb 2.0. The dataset route needs nothing beyond deltalake and pyarrow.
* The dataset is re-wrapped so its scanner is single-threaded (:class:`_SerialDataset`):
  pyarrow's threaded scanner keeps reading ahead after DuckDB stops early (``LIMIT``), and its
  thread pool then hangs or crashes the interpreter at exit. DuckDB still runs the query
  itself in parallel; the connection is closed explicitly for the same reason.

Names: each table is a view ``<pipeline>__<table>``; the bare ``<table>`` is that table when one
pipeline has it, and ``UNION ALL BY NAME`` of every pipeline's table when several do (a machine
belongs to one pipeline, so the union is "this table for every machine"). ``meshinsights_history``
is built on first use from the Delta commit logs (run id, step, window, row counts).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable

from meshinsights.errors import BrokenTableError, ConfigError, StoreError
from meshinsights.model import check_table_name
from meshinsights.store.delta import DeltaStore
from meshinsights.store.scripts import Statement, StatementResult, split_statements

__all__ = [
    "ArtifactSQL",
    "MachineExtent",
    "Statement",
    "StatementResult",
    "HISTORY_VIEW",
    "history_record",
    "history_table",
    "listed_tables",
    "split_statements",
    "table_extents",
]

logger = logging.getLogger(__name__)

HISTORY_VIEW = "meshinsights_history"


class _SerialDataset(pads.FileSystemDataset):
    """A Delta snapshot's dataset whose scans run on the calling thread (see module docstring)."""

    def scanner(self, *args: Any, **kwargs: Any) -> pads.Scanner:
        kwargs["use_threads"] = False
        return super().scanner(*args, **kwargs)


def _serial(dataset: pads.FileSystemDataset) -> _SerialDataset:
    return _SerialDataset(
        list(dataset.get_fragments()), dataset.schema, dataset.format, dataset.filesystem
    )


# ---------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class MachineExtent:
    """What one table holds for one machine, from the Delta log alone (no data file is read)."""

    machine_id: str
    rows: int
    files: int
    min_ts: datetime | None
    max_ts: datetime | None


def table_extents(store: DeltaStore, namespace: str, table: str) -> dict[str, MachineExtent]:
    """Rows and time range per machine of ``namespace/table``, from the log's file statistics."""
    try:
        dt = DeltaTable(store.uri(namespace, table), storage_options=store.storage_options)
    except Exception as exc:  # TableNotFoundError and object-store errors alike
        raise StoreError(
            f"table {namespace}/{table} cannot be opened in {store.root}: {exc}"
        ) from exc
    actions = pa.table(dt.get_add_actions(flatten=True))
    if actions.num_rows == 0 or "partition.machine_id" not in actions.column_names:
        return {}
    cols = {
        name: actions.column(name).to_pylist()
        for name in ("partition.machine_id", "num_records", "min.ts", "max.ts")
        if name in actions.column_names
    }
    acc: dict[str, list[Any]] = {}
    for i, machine in enumerate(cols["partition.machine_id"]):
        rows = cols.get("num_records", [0] * actions.num_rows)[i] or 0
        lo = cols.get("min.ts", [None] * actions.num_rows)[i]
        hi = cols.get("max.ts", [None] * actions.num_rows)[i]
        cur = acc.setdefault(machine, [0, 0, None, None])
        cur[0] += rows
        cur[1] += 1
        cur[2] = lo if cur[2] is None or (lo is not None and lo < cur[2]) else cur[2]
        cur[3] = hi if cur[3] is None or (hi is not None and hi > cur[3]) else cur[3]
    return {m: MachineExtent(m, int(v[0]), int(v[1]), v[2], v[3]) for m, v in sorted(acc.items())}


def listed_tables(store: DeltaStore) -> list[tuple[str, str]]:
    """Every ``(pipeline, table)`` in the store; folders with invalid names are skipped, logged."""
    out = []
    for ns in store.namespaces():
        try:
            names = store.table_names(ns)
        except ConfigError:
            logger.warning("ignoring folder %r in %s: not a pipeline name", ns, store.root)
            continue
        for name in names:
            try:
                out.append((ns, check_table_name(name)))
            except ConfigError:
                logger.warning(
                    "ignoring table folder %r in %s/%s: invalid name", name, store.root, ns
                )
    return out


def history_table(store: DeltaStore, *, limit: int | None = None) -> pa.Table:
    """Every commit of every artifact table with its MeshInsights metadata, one row each."""
    rows = []
    for ns, name in listed_tables(store):
        try:
            commits = store.history(ns, name, limit)
        except BrokenTableError as exc:  # reported; the other tables' history stays readable
            logger.warning("%s", exc)
            continue
        rows += [history_record(ns, name, commit) for commit in commits]
    return pa.Table.from_pylist(rows, schema=_HISTORY_SCHEMA)


_HISTORY_SCHEMA = pa.schema(
    [
        ("pipeline", pa.string()),
        ("table_name", pa.string()),
        ("version", pa.int64()),
        ("committed_at", pa.timestamp("ms", tz="UTC")),
        ("operation", pa.string()),
        ("run_id", pa.string()),
        ("step", pa.string()),
        ("machines", pa.string()),  # JSON list, or "N machines" for a large group
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("window_end", pa.timestamp("us", tz="UTC")),
        ("windows", pa.string()),  # JSON [{start, end}] when a batch wrote separate stretches
        ("rows_in", pa.int64()),
        ("rows_written", pa.int64()),
        ("rows_clean", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("duplicates_removed", pa.int64()),
        ("watermark", pa.string()),
        ("code_version", pa.string()),
        # Provenance (``meshinsights status``): the step definition's fingerprint, the input
        # table versions it read (JSON), and windows reopened by late rows not yet rerun (JSON).
        ("fingerprint", pa.string()),
        ("inputs", pa.string()),
        ("pending", pa.string()),
        # Seconds of work before the commit (reads, function or fetch); None on older commits.
        ("seconds", pa.float64()),
    ]
)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def history_record(namespace: str, table: str, commit: dict[str, Any]) -> dict[str, Any]:
    """One commit (as :meth:`DeltaStore.history` gives it) as a ``meshinsights_history`` row."""
    meta = {
        k.removeprefix("meshinsights."): v
        for k, v in commit.items()
        if k.startswith("meshinsights.")
    }
    window: dict[str, Any] = meta["window"] if isinstance(meta.get("window"), dict) else {}
    machines = meta.get("machines")
    stamp = commit.get("timestamp")
    return {
        "pipeline": namespace,
        "table_name": table,
        "version": _int(commit.get("version")),
        "committed_at": datetime.fromtimestamp(stamp / 1000, UTC) if stamp else None,
        "operation": commit.get("operation"),
        "run_id": meta.get("run_id"),
        "step": meta.get("step"),
        "machines": machines
        if isinstance(machines, str) or machines is None
        else json.dumps(machines),
        "window_start": _ts(window.get("start")),
        "window_end": _ts(window.get("end")),
        "windows": json.dumps(meta["windows"]) if isinstance(meta.get("windows"), list) else None,
        "rows_in": _int(meta.get("rows_in")),
        "rows_written": _int(meta.get("rows_written")),
        "rows_clean": _int(meta.get("rows_clean")),
        "rows_quarantined": _int(meta.get("rows_quarantined")),
        "duplicates_removed": _int(meta.get("duplicates_removed")),
        "watermark": None if meta.get("watermark") is None else str(meta.get("watermark")),
        "code_version": None if meta.get("code_version") is None else str(meta["code_version"]),
        "fingerprint": None if meta.get("fingerprint") is None else str(meta["fingerprint"]),
        "inputs": json.dumps(meta["inputs"]) if isinstance(meta.get("inputs"), dict) else None,
        "pending": json.dumps(meta["pending"]) if isinstance(meta.get("pending"), list) else None,
        "seconds": _float(meta.get("seconds")),
    }


# ---------------------------------------------------------------------- engine


@dataclass(frozen=True)
class ViewInfo:
    """One registered view and the Delta table(s) behind it."""

    name: str
    sources: tuple[tuple[str, str, int], ...] = field(default_factory=tuple)  # (ns, table, version)


def _returns_rows(statement: Any) -> bool:
    expected = getattr(statement, "expected_result_type", None) or []
    return list(expected) == [duckdb.ExpectedResultType.QUERY_RESULT]


class ArtifactSQL:
    """An in-memory DuckDB connection with every artifact table registered as a view."""

    def __init__(self, store: DeltaStore) -> None:
        self.store = store
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.views: dict[str, ViewInfo] = {}
        #: Views left out because their table cannot be read: view name -> the reason.
        self.broken: dict[str, str] = {}
        self._history_loaded = False
        self._register_tables()

    def __enter__(self) -> ArtifactSQL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (before interpreter exit: see the module docstring)."""
        self.con.close()

    def _register_tables(self) -> None:
        by_name: dict[str, list[tuple[str, int]]] = {}
        for ns, name in listed_tables(self.store):
            qualified = f"{ns}__{name}"
            try:
                version = self.store.version(ns, name)
                if version is None:
                    continue
                self.con.register(qualified, _serial(self.store.dataset(ns, name)))
            except BrokenTableError as exc:  # the other tables stay queryable
                logger.warning("%s", exc)
                self.broken[qualified] = self.broken.setdefault(name, str(exc))
                continue
            self.views[qualified] = ViewInfo(qualified, ((ns, name, version),))
            by_name.setdefault(name, []).append((ns, version))
        for name, owners in sorted(by_name.items()):
            if name in self.views or name == HISTORY_VIEW:
                continue  # a pipeline literally named like a qualified view: keep the qualified
            parts = " UNION ALL BY NAME ".join(f'SELECT * FROM "{ns}__{name}"' for ns, _ in owners)
            self.con.execute(f'CREATE TEMP VIEW "{name}" AS {parts}')
            self.views[name] = ViewInfo(name, tuple((ns, name, v) for ns, v in owners))
        logger.info("registered %d view(s) over %s", len(self.views), self.store.root)

    def _ensure_history(self) -> None:
        if not self._history_loaded:
            self.con.register(HISTORY_VIEW, history_table(self.store))
            self._history_loaded = True

    def has_view(self, name: str) -> bool:
        return name in self.views or name == HISTORY_VIEW

    def execute(self, sql: str) -> pa.Table | None:
        """Run one statement; its result as Arrow, or None for a statement without rows."""
        if HISTORY_VIEW in sql.lower():
            self._ensure_history()
        try:
            parsed = duckdb.extract_statements(sql)
            rel = self.con.sql(sql)
            if rel is None or not _returns_rows(parsed[-1]):
                return None
            return rel.to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(self._explain(exc)) from exc

    def _explain(self, exc: Exception) -> str:
        first = str(exc).splitlines()[0]
        missing = re.search(r"Table with name (\S+) does not exist", first)
        names = sorted([*self.views, HISTORY_VIEW])
        if missing and missing.group(1).strip('"') in self.broken:
            return self.broken[missing.group(1).strip('"')]
        if missing:
            close = difflib.get_close_matches(missing.group(1).strip('"'), names, n=3)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else (f"views: {', '.join(names[:40])}{' …' if len(names) > 40 else ''}")
            )
            return f"query failed: {first}; {hint} (`meshinsights tables` lists the store)"
        return f"query failed: {first}"

    def run_script(self, text: str) -> list[StatementResult]:
        """Run every statement of a script in order; skip those whose ``requires`` are absent."""
        results = []
        for stmt in split_statements(text):
            missing = [name for name in stmt.requires if not self.has_view(name)]
            if missing:
                results.append(
                    StatementResult(
                        stmt,
                        skipped=(
                            f"needs table(s) {', '.join(missing)}, not in the store yet "
                            "(run a pipeline that produces them, e.g. hvac_power)"
                        ),
                    )
                )
                continue
            try:
                results.append(StatementResult(stmt, table=self.execute(stmt.sql)))
            except StoreError as exc:
                raise StoreError(f"statement {stmt.label!r}: {exc}") from exc
        return results
