"""What the store accepts: a step's output validated, typed and given its ``month`` partition.

Pure pandas/Arrow (no deltalake): every problem is a StoreError that names the column and
the fix, raised before anything is written.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from meshinsights.errors import StoreError
from meshinsights.model import TS, Windows, spans

__all__ = ["check_in_scope", "check_new_columns", "prepare"]

logger = logging.getLogger(__name__)

#: Below this many rows, Arrow <-> pandas conversions run on the calling thread: pyarrow's
#: thread pool costs more to start than it saves (1,440 rows: 0.63 -> 0.21 ms to Arrow,
#: 0.39 -> 0.21 ms back; at 1.44 M rows threads win, 6.9 -> 5.3 ms).
SERIAL_ROWS = 200_000


def prepare(
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
    # A shallow copy: with pandas' copy-on-write the caller's frame never sees the columns
    # set below, and nothing is copied up front (the index is not written to Arrow).
    df = frame.drop(columns="month") if "month" in frame.columns else frame.copy(deep=False)
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
        arrow = pa.Table.from_pandas(
            df, preserve_index=False, nthreads=1 if len(df) < SERIAL_ROWS else None
        )
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
            "them in the step's schema, or set evolve: true on the step in the pipeline config "
            "to add them (schema evolution, recorded in the commit)"
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


def check_in_scope(arrow: pa.Table, machines: list[str], window: Windows, table: str) -> None:
    if arrow.num_rows == 0:
        return
    ids = arrow.column("machine_id")
    foreign = pc.sum(pc.invert(pc.is_in(ids, value_set=pa.array(machines)))).as_py() or 0
    if foreign:
        raise StoreError(
            f"{table}: {foreign} row(s) belong to machines other than {machines}; a step may only "
            "write the machines it was run for"
        )
    ranges = spans(window)
    run = ranges[0].run
    if run is not None:
        if "run_id" not in arrow.column_names:
            raise StoreError(f"{table}: a run window's rows need a run_id column (run {run})")
        other = pc.sum(pc.invert(pc.fill_null(pc.equal(arrow.column("run_id"), run), False)))
        if other.as_py():
            raise StoreError(
                f"{table}: {other.as_py()} row(s) belong to runs other than {run!r}; a step "
                "writes only the run it was run for"
            )
    ts = arrow.column("ts")
    lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
    if lo < ranges[0].start or hi >= ranges[-1].end or len(ranges) > 1:
        inside = [
            pc.and_(pc.greater_equal(ts, pa.scalar(r.start, TS)), pc.less(ts, pa.scalar(r.end, TS)))
            for r in ranges
        ]
        outside = pc.sum(pc.invert(functools.reduce(pc.or_, inside))).as_py() or 0
        if outside:
            where = ranges[0] if len(ranges) == 1 else ", ".join(map(str, ranges))
            raise StoreError(
                f"{table}: {outside} row(s) fall outside the window {where} (min ts {lo}, max "
                f"ts {hi}); a step writes only its own window — filter its output to the window"
            )


def check_new_columns(current: pa.Schema, arrow: pa.Table, table: str, evolve: bool) -> None:
    """A column the stored table lacks is only added with ``evolve`` (schema evolution)."""
    extra = [c for c in arrow.column_names if c not in current.names]
    if extra and not evolve:
        raise StoreError(
            f"{table}: the stored table lacks column(s) {extra}; set evolve: true on the step in "
            "the pipeline config to add them (recorded in the commit), or drop them from the output"
        )
