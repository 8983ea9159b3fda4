"""What the API reads: names checked against the store's catalog, bounded windows, pruned reads.

Everything goes through :class:`~meshinsights.dashboard.data.ReadOnlyStore` (the dashboard's
read side; nothing here can write). The catalog — pipelines, tables, versions, machines and
their last run — comes from the Delta logs and is kept for ``catalog_ttl`` seconds, so a
request costs one pruned read of one machine's partitions, not a listing of the store.
"""

from __future__ import annotations

import difflib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from meshinsights.api.errors import BadRequest, NotFound
from meshinsights.api.paging import Page, cut_page, decode_token, query_fingerprint
from meshinsights.dashboard.data import (
    Catalog,
    ReadOnlyStore,
    load_catalog,
    quarantine_counts,
    run_history,
)
from meshinsights.model import Window, check_machine_id, check_table_name, parse_instant
from meshinsights.store.sql import history_record

__all__ = ["DataSource", "Limits", "Result"]

#: Commits per table scanned for a machine's last run and its run history.
HISTORY_LIMIT = 500


@dataclass(frozen=True)
class Limits:
    """Bounds on one request: rows per page and the time range it may span."""

    max_page_rows: int = 100_000
    default_page_rows: int = 10_000
    max_range: timedelta = timedelta(days=31)


@dataclass(frozen=True)
class Result:
    """One page of a tabular endpoint, with what identifies it."""

    page: Page
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Snapshot:
    catalog: Catalog
    last_runs: dict[tuple[str, str], dict[str, Any]]
    loaded: float


def _close(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    shown = ", ".join(known[:20]) + (" …" if len(known) > 20 else "")
    return f"did you mean {close[0]!r}?" if close else f"known: {shown or '(none)'}"


class DataSource:
    """Checked, bounded reads for the API's endpoints."""

    def __init__(
        self, ro: ReadOnlyStore, *, limits: Limits | None = None, catalog_ttl: float = 5.0
    ) -> None:
        self.ro = ro
        self.limits = limits or Limits()
        self.catalog_ttl = catalog_ttl
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    # ------------------------------------------------------------------ catalog
    def snapshot(self) -> _Snapshot:
        with self._lock:
            snap = self._snapshot
            if snap is None or time.monotonic() - snap.loaded > self.catalog_ttl:
                catalog = load_catalog(self.ro)
                snap = _Snapshot(catalog, self._last_runs(catalog), time.monotonic())
                self._snapshot = snap
            return snap

    def _last_runs(self, catalog: Catalog) -> dict[tuple[str, str], dict[str, Any]]:
        """The newest step commit that touched each machine, per pipeline."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for ns, tables in catalog.tables.items():
            known = set(catalog.machines.get(ns, {}))
            for table in tables:
                for commit in self.ro.history(ns, table, HISTORY_LIMIT):
                    rec = history_record(ns, table, commit)
                    if rec["step"] is None or rec["committed_at"] is None:
                        continue
                    try:
                        listed = json.loads(rec["machines"] or "null")
                    except ValueError:
                        listed = None
                    for m in listed if isinstance(listed, list) else known:
                        cur = out.get((ns, m))
                        if cur is None or rec["committed_at"] > cur["committed_at"]:
                            out[(ns, m)] = rec
        return out

    def machines(self) -> list[dict[str, Any]]:
        snap = self.snapshot()
        rows = []
        for ns in snap.catalog.pipelines():
            for m, extent in snap.catalog.machines[ns].items():
                run = snap.last_runs.get((ns, m))
                rows.append(
                    {
                        "machine_id": m,
                        "pipeline": ns,
                        "rows": extent.rows,
                        "first_ts": extent.min_ts,
                        "last_ts": extent.max_ts,
                        "last_run": None
                        if run is None
                        else {
                            k: run[k]
                            for k in (
                                "run_id",
                                "committed_at",
                                "step",
                                "table_name",
                                "window_start",
                                "window_end",
                            )
                        },
                    }
                )
        return rows

    def tables(self, pipeline: str) -> list[dict[str, Any]]:
        ns = self.pipeline(pipeline)
        snap = self.snapshot()
        out = []
        for table, version in sorted(snap.catalog.tables[ns].items()):
            schema = self.ro.schema(ns, table)
            out.append(
                {
                    "table": table,
                    "version": version,
                    "columns": [
                        {"name": f.name, "type": str(f.type)} for f in schema if f.name != "month"
                    ],
                }
            )
        return out

    # ------------------------------------------------------------------ checks
    def pipeline(self, name: str) -> str:
        check_table_name(name)
        tables = self.snapshot().catalog.tables
        if name not in tables:
            raise NotFound(f"unknown pipeline {name!r}; {_close(name, sorted(tables))}")
        return name

    def table(self, pipeline: str, table: str) -> str:
        ns = self.pipeline(pipeline)
        check_table_name(table)
        tables = sorted(self.snapshot().catalog.tables[ns])
        if table not in tables:
            raise NotFound(f"pipeline {ns!r} has no table {table!r}; {_close(table, tables)}")
        return table

    def machine(self, machine_id: str, pipeline: str | None = None) -> str:
        """The pipeline holding ``machine_id`` (``pipeline`` chooses when several do)."""
        check_machine_id(machine_id)
        machines = self.snapshot().catalog.machines
        if pipeline is not None:
            ns = self.pipeline(pipeline)
            if machine_id not in machines.get(ns, {}):
                known = sorted(machines.get(ns, {}))
                raise NotFound(
                    f"machine {machine_id!r} has no data in pipeline {ns!r}; "
                    f"{_close(machine_id, known)}"
                )
            return ns
        owners = [ns for ns, ms in sorted(machines.items()) if machine_id in ms]
        if not owners:
            known = sorted({m for ms in machines.values() for m in ms})
            raise NotFound(f"unknown machine {machine_id!r}; {_close(machine_id, known)}")
        if len(owners) > 1:
            raise BadRequest(
                f"machine {machine_id!r} has data in pipelines {owners}; pass ?pipeline= to "
                "choose one"
            )
        return owners[0]

    def window(self, start: str, end: str) -> Window:
        """``[start, end)`` from ISO times (naive = UTC), at most ``limits.max_range`` long."""
        lo, hi = parse_instant(start, "start"), parse_instant(end, "end")
        if hi <= lo:
            raise BadRequest(
                f"end {hi.isoformat()} is not after start {lo.isoformat()}; pass an end later "
                "than the start (the range is [start, end))"
            )
        window = Window(lo, hi)
        span, most = window.end - window.start, self.limits.max_range
        if span > most:
            raise BadRequest(
                f"range {window} spans {_days(span)}, more than the {_days(most)} one request "
                "may cover; split it into several requests"
            )
        return window

    def page_size(self, limit: int | None) -> int:
        if limit is None:
            return self.limits.default_page_rows
        if not 1 <= limit <= self.limits.max_page_rows:
            raise BadRequest(
                f"limit={limit} is out of range; use 1..{self.limits.max_page_rows} rows per page "
                "and follow next_page_token for more"
            )
        return limit

    # ------------------------------------------------------------------ reads
    def rows(
        self,
        pipeline: str,
        table: str,
        machine_id: str,
        window: Window,
        *,
        columns: list[str] | None = None,
        where: dict[str, list[Any]] | None = None,
        limit: int | None = None,
        token: str | None = None,
        wide: bool = False,
    ) -> Result:
        """One page of ``table`` rows for ``machine_id`` in ``window``, ordered by ``ts``."""
        ns, table = self.pipeline(pipeline), self.table(pipeline, table)
        self.machine(machine_id, ns)
        size = self.page_size(limit)
        schema = self.ro.schema(ns, table)
        wanted = self._columns(schema, columns, ns, table)
        filters = {c: sorted(set(v)) for c, v in sorted((where or {}).items()) if v}
        query = query_fingerprint(ns, table, machine_id, window.as_dict(), wanted, filters, wide)
        if token:
            cursor = decode_token(token, query)
            version, skip, since = cursor.version, cursor.skip, cursor.ts_us
            start = datetime.fromtimestamp(0, window.start.tzinfo) + timedelta(microseconds=since)
            read_window = Window(max(start, window.start), window.end)
        else:
            version = self.snapshot().catalog.tables[ns][table]
            skip, since, read_window = 0, None, window
        data = self.ro.read_arrow(ns, table, machine_id, read_window, version=version)
        data = data.drop_columns([c for c in data.column_names if c not in wanted])
        for column, values in filters.items():
            data = _keep(data, column, values, machine_id, first_page=token is None)
        if wide:
            data = _wide(data)
        page = cut_page(
            data, limit=size, skip=skip, query=query, version=version, cursor_ts_us=since
        )
        meta = {
            "pipeline": ns,
            "table": table,
            "machine_id": machine_id,
            "version": version,
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
        }
        return Result(page, meta)

    def _columns(
        self, schema: pa.Schema, columns: list[str] | None, ns: str, table: str
    ) -> list[str]:
        names = [f.name for f in schema if f.name != "month"]
        if not columns:
            return names
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise BadRequest(
                f"{ns}/{table} has no column(s) {unknown}; its columns are {', '.join(names)}"
            )
        # ts and machine_id always come along: pages are cut on ts.
        return [c for c in names if c in {*columns, "ts", "machine_id"}]

    def quarantine_reasons(self, machine_id: str, window: Window, pipeline: str | None) -> pa.Table:
        ns = self.machine(machine_id, pipeline)
        self.table(ns, "quarantine")
        df = self.ro.read(ns, "quarantine", machine_id, window, columns=["rule", "reason"])
        return _strings(pa.Table.from_pandas(quarantine_counts(df), preserve_index=False))

    def runs(self, machine_id: str, window: Window, pipeline: str | None) -> tuple[str, pa.Table]:
        ns = self.machine(machine_id, pipeline)
        df = run_history(
            self.ro, self.snapshot().catalog, ns, machine_id, window, limit=HISTORY_LIMIT
        )
        return ns, _strings(pa.Table.from_pandas(df, preserve_index=False))


def _keep(
    data: pa.Table, column: str, values: list[Any], machine_id: str, *, first_page: bool
) -> pa.Table:
    """Rows whose ``column`` is one of ``values``; on the first page, 404 for absent values."""
    if column not in data.column_names:
        raise BadRequest(f"this table has no {column} column; drop ?{column}=")
    col = data.column(column)
    kept = data.filter(pc.is_in(col, pa.array(values, col.type)))
    if first_page:
        present = set(pc.unique(col).to_pylist())
        absent = [v for v in values if v not in present]
        if absent:
            have = sorted(v for v in present if v is not None)
            raise NotFound(
                f"machine {machine_id!r} has no {column} {absent} in this range; it has "
                f"{have or '(no rows)'}"
            )
    return kept


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:g} days"


def _strings(table: pa.Table) -> pa.Table:
    """pandas round trips give large_string; the store's columns are string."""
    schema = pa.schema(
        [f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in table.schema]
    )
    return table.cast(schema)


def _wide(long: pa.Table) -> pa.Table:
    """Telemetry long → one row per ``ts``, one column per metric (values of that metric)."""
    if long.num_rows == 0:
        return pa.table({"machine_id": pa.array([], pa.string()), "ts": long.column("ts")})
    df = long.select(["machine_id", "ts", "metric", "value"]).to_pandas()
    # One value per machine, ts and metric after ingest's de-duplication; "last" only decides
    # for a table written without it. An all-null metric keeps its column.
    wide = df.groupby(["machine_id", "ts", "metric"], sort=True)["value"].last().unstack("metric")
    wide.columns = [str(c) for c in wide.columns]
    return _strings(pa.Table.from_pandas(wide.reset_index(), preserve_index=False))
