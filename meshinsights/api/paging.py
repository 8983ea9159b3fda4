"""Pages of a time-ordered result: a deterministic order and an opaque continuation token.

A page is cut from rows sorted by ``ts`` and then every other sortable column, so the order of
one table version is total (rows equal on every key are interchangeable). The token pins the
table version the first page read — later pages read that same version even if a pipeline
commits in between, so paging returns every row exactly once — and records where the page
ended: the last ``ts`` and how many rows at that ``ts`` were already returned. The next page
then reads only ``[ts, end)`` (pruned like any window read) instead of re-reading the range.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from meshinsights.errors import ConfigError

__all__ = ["Cursor", "Page", "cut_page", "decode_token", "encode_token", "query_fingerprint"]

_SORTABLE = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_boolean,
    pa.types.is_timestamp,
    pa.types.is_date,
)


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended, and which query and table version it belongs to."""

    query: str
    version: int
    ts_us: int
    skip: int


@dataclass(frozen=True)
class Page:
    """One page of rows and the token of the next one (None on the last page)."""

    rows: pa.Table
    next_token: str | None


def query_fingerprint(*parts: Any) -> str:
    """A short digest of the parameters that define a paged query (a token only fits its own)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def encode_token(cursor: Cursor) -> str:
    raw = json.dumps(
        {"q": cursor.query, "v": cursor.version, "ts": cursor.ts_us, "n": cursor.skip},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, query: str) -> Cursor:
    """The cursor in ``token``; ConfigError if it is malformed or belongs to another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        cursor = Cursor(str(data["q"]), int(data["v"]), int(data["ts"]), int(data["n"]))
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            "page_token is not a token this API issued; pass the next_page_token of the "
            "previous page unchanged, or drop it to start again"
        ) from exc
    if cursor.query != query or cursor.skip < 0 or cursor.version < 0:
        raise ConfigError(
            "page_token belongs to a different query; repeat the parameters of the first page "
            "(machine, range, metric, columns) or drop page_token to start again"
        )
    return cursor


def sort_keys(table: pa.Table) -> list[tuple[str, str]]:
    """``ts`` first, then every other column whose type orders totally."""
    keys = [("ts", "ascending")] if "ts" in table.column_names else []
    for f in table.schema:
        if f.name != "ts" and any(check(f.type) for check in _SORTABLE):
            keys.append((f.name, "ascending"))
    return keys


def cut_page(
    table: pa.Table, *, limit: int, skip: int, query: str, version: int, cursor_ts_us: int | None
) -> Page:
    """Sort ``table`` (rows from the cursor's ``ts`` on), drop ``skip`` rows, keep ``limit``.

    ``cursor_ts_us`` is the ``ts`` the read started at when it continues a previous page: the
    ``skip`` rows dropped are exactly that page's rows at that ``ts``.
    """
    keys = sort_keys(table)
    if keys and table.num_rows > 1:
        table = table.sort_by(keys)
    page = table.slice(skip, limit)
    if skip + page.num_rows >= table.num_rows or page.num_rows == 0:
        return Page(page, None)
    col = page.column("ts")
    ts = col.cast(pa.timestamp("us", tz=col.type.tz)).cast(pa.int64())
    last = ts[page.num_rows - 1].as_py()
    at_last = pc.sum(pc.equal(ts, last)).as_py() or 0
    # A page wholly inside one timestamp carries the earlier pages' rows at that time forward.
    carried = skip if cursor_ts_us is not None and last == cursor_ts_us else 0
    token = encode_token(Cursor(query, version, last, carried + at_last))
    return Page(page, token)
