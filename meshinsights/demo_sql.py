"""Writing the demo fleet to SQL: the schema per dialect and each driver's bulk insert path.

SQLite and MySQL take ``executemany``; PostgreSQL takes ``COPY ... FROM STDIN``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import pandas as pd

__all__ = ["SQLWriter"]

_DDL = {
    "sqlite": ("TEXT", "REAL"),
    "mysql": ("DATETIME", "DOUBLE"),
    "postgresql": ("TIMESTAMP", "DOUBLE PRECISION"),
}


def _dialect(url: str) -> str:
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    return {"mariadb": "mysql", "postgres": "postgresql"}.get(scheme, scheme)


def _ddl(dialect: str) -> list[str]:
    ts, real = _DDL[dialect]
    return [
        "DROP TABLE IF EXISTS telemetry",
        "DROP TABLE IF EXISTS events",
        f"CREATE TABLE telemetry (machine_id VARCHAR(128) NOT NULL, ts {ts} NOT NULL, "
        f"metric VARCHAR(64) NOT NULL, value {real}, unit VARCHAR(16), ingested_at {ts})",
        f"CREATE TABLE events (machine_id VARCHAR(128) NOT NULL, ts {ts} NOT NULL, "
        f"kind VARCHAR(16), severity VARCHAR(16), code VARCHAR(64), message VARCHAR(1024), "
        f"ingested_at {ts})",
    ]


_INDEXES = [
    "CREATE INDEX ix_telemetry_machine_ts ON telemetry (machine_id, ts)",
    "CREATE INDEX ix_events_machine_ts ON events (machine_id, ts)",
]


class SQLWriter:
    """Bulk inserts through the raw DB-API connection of SQLite, MySQL or PostgreSQL."""

    def __init__(self, url: str, *, mode: Literal["create", "append"] = "create") -> None:
        from sqlalchemy import create_engine

        from meshinsights.credentials import normalize_url

        self.dialect = _dialect(url)
        if self.dialect not in _DDL:
            raise ValueError(f"demo seed supports sqlite, mysql and postgresql URLs, not {url!r}")
        self.engine = create_engine(normalize_url(url))
        self.conn = self.engine.raw_connection()
        self.mark = "?" if self.dialect == "sqlite" else "%s"
        if mode == "append":  # the live feeder: small commits next to readers, journal on
            return
        cur = self.conn.cursor()
        if self.dialect == "sqlite":  # a demo seed is rewritten whole: skip the journal
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-200000"):
                cur.execute(f"PRAGMA {pragma}")
        for stmt in _ddl(self.dialect):
            cur.execute(stmt)
        self.conn.commit()

    def insert(self, table: str, rows: Iterable[tuple[Any, ...]]) -> None:
        cur: Any = self.conn.cursor()
        if self.dialect == "postgresql":
            import io

            buf = io.StringIO()
            pd.DataFrame(list(rows)).to_csv(buf, header=False, index=False)
            buf.seek(0)
            cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", buf)
        else:
            cur.executemany(
                f"INSERT INTO {table} VALUES ({', '.join([self.mark] * 7)})"
                if table == "events"
                else f"INSERT INTO {table} VALUES ({', '.join([self.mark] * 6)})",
                rows,
            )

    def finish(self) -> None:
        cur = self.conn.cursor()
        for stmt in _INDEXES:
            cur.execute(stmt)
        self.close()

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()
        self.engine.dispose()
