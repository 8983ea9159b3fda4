"""Tabular responses as JSON, CSV or Arrow IPC: chosen by ``?format=`` or the Accept header."""

from __future__ import annotations

import io
import json
import math
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from fastapi import Response

from meshinsights.errors import ConfigError

__all__ = ["FORMATS", "MEDIA_TYPES", "Format", "choose_format", "columns_of", "tabular_response"]

Format = Literal["json", "csv", "arrow"]
FORMATS: tuple[Format, ...] = ("json", "csv", "arrow")
MEDIA_TYPES: dict[Format, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
}
#: Header carrying the continuation token (CSV and Arrow have no body field for it).
NEXT_HEADER = "X-Next-Page-Token"


def choose_format(explicit: str | None, accept: str | None) -> Format:
    """``?format=`` wins; else the first Accept media type we serve; else JSON."""
    if explicit:
        fmt = explicit.strip().lower()
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        return fmt  # type: ignore[return-value]
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        for fmt, served in MEDIA_TYPES.items():
            if media == served.split(";")[0]:
                return fmt
    return "json"


def columns_of(schema: pa.Schema) -> list[dict[str, str]]:
    """Column names and Arrow types, as a client needs them to rebuild the table."""
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def _json_ready(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts: times as ISO 8601 strings, NaN as null (JSON has no NaN)."""
    arrays = []
    for f, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(f.type):
            zone = f.type.tz
            suffix = "" if zone is None else ("Z" if zone in ("UTC", "+00:00") else "%z")
            col = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S" + suffix)
        elif pa.types.is_date(f.type):
            col = pc.cast(col, pa.string())
        arrays.append(col)
    rows = pa.table(arrays, names=table.column_names).to_pylist()
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    if floats:
        for row in rows:
            for name in floats:
                v = row[name]
                if v is not None and math.isnan(v):
                    row[name] = None
    return rows


def tabular_response(
    table: pa.Table,
    fmt: Format,
    *,
    meta: dict[str, Any],
    next_token: str | None,
) -> Response:
    """One page in the chosen format; ``meta`` (version, query) goes into the JSON body."""
    headers = {NEXT_HEADER: next_token} if next_token else {}
    if fmt == "arrow":
        sink = io.BytesIO()
        schema = table.schema.with_metadata(
            {"next_page_token": next_token or "", **{k: str(v) for k, v in meta.items()}}
        )
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(table.cast(schema))
        return Response(sink.getvalue(), media_type=MEDIA_TYPES["arrow"], headers=headers)
    if fmt == "csv":
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return Response(sink.getvalue(), media_type=MEDIA_TYPES["csv"], headers=headers)
    body = {
        **meta,
        "columns": columns_of(table.schema),
        "count": table.num_rows,
        "rows": _json_ready(table),
        "next_page_token": next_token,
    }
    text = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str)
    return Response(text, media_type=MEDIA_TYPES["json"], headers=headers)
