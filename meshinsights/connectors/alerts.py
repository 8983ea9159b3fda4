"""The alert-threshold sink: write a window's threshold updates to the SQL alert database.

Steps stay pure: ``update_thresholds`` computes the rows (Delta table ``threshold_updates``)
and this sink, called by the runner after the step's commit, writes them to SQL (SQLite by
default, MySQL/MariaDB or PostgreSQL in production) through a connection id:

- ``<table>_history``: one row per machine, stage and ``valid_from``. A rerun of the same window
  updates its row (idempotent); every window keeps its own row, with the run id that wrote it.
- ``<table>``: the current thresholds, an upsert keyed by machine and stage. A row only
  replaces one with an earlier or equal ``valid_from``, so backfilling an old window never
  overwrites newer thresholds.

Both writes happen in one transaction. Times are stored as naive UTC.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from meshinsights.connectors.sql import SQLConnector
from meshinsights.credentials import normalize_url
from meshinsights.errors import ConfigError, ConnectorError

__all__ = [
    "ALERTS_CONN_ID",
    "AlertThresholdSink",
    "alerts_url",
    "run_sink",
    "write_threshold_updates",
]

logger = logging.getLogger(__name__)

#: Connection id of the alert database; unset, it defaults to a SQLite file under data/.
ALERTS_CONN_ID = "meshinsights_alerts"
#: Columns the sink needs from a ``threshold_updates`` frame.
REQUIRED = (
    "machine_id",
    "stage",
    "metric",
    "lower",
    "upper",
    "center",
    "method",
    "n_cycles",
    "variance_class",
    "cv",
    "valid_from",
)
_VALUES = (
    "metric",
    "lower_limit",
    "upper_limit",
    "center",
    "method",
    "n_cycles",
    "variance_class",
    "cv",
    "run_id",
    "written_at",
)


def default_alerts_path() -> Path:
    """``MESHINSIGHTS_ALERTS_DB`` or ``alerts.db`` next to the demo source (see settings)."""
    from meshinsights.settings import get_settings

    return get_settings().alerts_db


def alerts_url(conn_id: str = ALERTS_CONN_ID, resolver: Callable[[str], str] | None = None) -> str:
    """The alert database URL: the connection if configured, else (default id) the SQLite file."""
    from meshinsights.credentials import env_resolver

    try:
        return (resolver or env_resolver)(conn_id)
    except ConnectorError:
        if conn_id != ALERTS_CONN_ID:
            raise
        return f"sqlite:///{default_alerts_path().resolve()}"


def _tables(name: str) -> tuple[Any, Any]:
    import sqlalchemy as sa

    meta = sa.MetaData()

    def columns() -> list[Any]:
        return [
            sa.Column("machine_id", sa.String(128), nullable=False),
            sa.Column("stage", sa.Integer, nullable=False),
            sa.Column("metric", sa.String(64), nullable=False),
            sa.Column("lower_limit", sa.Double, nullable=False),
            sa.Column("upper_limit", sa.Double, nullable=False),
            sa.Column("center", sa.Double),
            sa.Column("method", sa.String(32)),
            sa.Column("n_cycles", sa.Integer),
            sa.Column("variance_class", sa.String(16)),
            sa.Column("cv", sa.Double),
            sa.Column("valid_from", sa.DateTime, nullable=False),
            sa.Column("run_id", sa.String(250)),
            sa.Column("written_at", sa.DateTime, nullable=False),
        ]

    current = sa.Table(name, meta, *columns(), sa.PrimaryKeyConstraint("machine_id", "stage"))
    history = sa.Table(
        f"{name}_history",
        meta,
        *columns(),
        sa.PrimaryKeyConstraint("machine_id", "stage", "valid_from"),
    )
    return current, history


def _records(frame: pd.DataFrame, run_id: str) -> list[dict[str, Any]]:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"threshold sink: rows lack column(s) {missing}; the sink expects the "
            "output of the update_thresholds step (table threshold_updates)"
        )
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime()
    valid_from = pd.to_datetime(frame["valid_from"], utc=True).dt.tz_localize(None)
    out = []
    for row, vf in zip(frame.to_dict("records"), valid_from, strict=True):
        out.append(
            {
                "machine_id": str(row["machine_id"]),
                "stage": int(row["stage"]),
                "metric": str(row["metric"]),
                "lower_limit": float(row["lower"]),
                "upper_limit": float(row["upper"]),
                "center": _num(row["center"]),
                "method": row["method"],
                "n_cycles": None if pd.isna(row["n_cycles"]) else int(row["n_cycles"]),
                "variance_class": row["variance_class"],
                "cv": _num(row["cv"]),
                "valid_from": vf.to_pydatetime(),
                "run_id": run_id,
                "written_at": now,
            }
        )
    return out


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _sqlite_or_pg(
    conn: Any, table: Any, rows: list[dict[str, Any]], keys: list[str], newer_only: bool
) -> Any:
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt: Any = sqlite_insert(table).values(rows)
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(rows)
    return stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c: stmt.excluded[c] for c in (*_VALUES, "valid_from") if c not in keys},
        where=(table.c.valid_from <= stmt.excluded.valid_from) if newer_only else None,
    )


def _mysql(table: Any, rows: list[dict[str, Any]], keys: list[str], newer_only: bool) -> Any:
    import sqlalchemy as sa
    from sqlalchemy.dialects.mysql import insert as mysql_insert

    stmt: Any = mysql_insert(table).values(rows)
    newer = table.c.valid_from <= stmt.inserted.valid_from
    # MySQL applies assignments left to right: valid_from must be compared before it moves.
    cols = [c for c in (*_VALUES, "valid_from") if c not in keys]
    return stmt.on_duplicate_key_update(
        [
            (
                c,
                sa.case((newer, stmt.inserted[c]), else_=table.c[c])
                if newer_only
                else stmt.inserted[c],
            )
            for c in cols
        ]
    )


def _upsert(
    conn: Any, table: Any, rows: list[dict[str, Any]], keys: list[str], newer_only: bool
) -> None:
    """Insert, or update the row with the same key (only from a newer valid_from if asked)."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        stmt = _sqlite_or_pg(conn, table, rows, keys, newer_only)
    elif dialect in ("mysql", "mariadb"):
        stmt = _mysql(table, rows, keys, newer_only)
    else:
        raise ConfigError(
            f"threshold sink: database dialect {dialect!r} is not supported; use "
            "SQLite, MySQL/MariaDB or PostgreSQL"
        )
    conn.execute(stmt)


class AlertThresholdSink:
    """Writes ``threshold_updates`` rows to ``<table>`` (current) and ``<table>_history``."""

    def __init__(self, url: str, *, table: str = "alert_thresholds") -> None:
        from meshinsights.model import check_table_name

        self.table = check_table_name(table)
        self.url = normalize_url(url)
        if self.url.startswith("sqlite:///"):
            path = Path(self.url[len("sqlite:///") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        self._sql = SQLConnector(url=self.url)
        self.current, self.history = _tables(self.table)

    def close(self) -> None:
        self._sql.close()

    def _run(self, what: str, fn: Callable[[Any], Any]) -> Any:
        try:
            with self._sql.client.begin() as conn:
                return fn(conn)
        except (ConnectorError, ConfigError):
            raise
        except Exception as exc:
            err = self._sql._wrap(exc)
            raise type(err)(f"threshold sink ({what}): {err}") from None

    def write(self, frame: pd.DataFrame, *, run_id: str) -> dict[str, Any]:
        """Upsert the rows (one transaction); returns counts for the run summary."""
        started = time.perf_counter()
        rows = _records(frame, run_id)
        if rows:

            def tx(conn: Any) -> None:
                self.current.metadata.create_all(conn, checkfirst=True)
                _upsert(conn, self.history, rows, ["machine_id", "stage", "valid_from"], False)
                _upsert(conn, self.current, rows, ["machine_id", "stage"], True)

            self._run("write", tx)
        summary = {
            "sink": "alert_thresholds",
            "table": self.table,
            "rows": len(rows),
            "target": self._sql.describe(),
            "seconds": round(time.perf_counter() - started, 4),
        }
        logger.info(
            "threshold sink: %d row(s) to %s in %s", len(rows), self.table, summary["target"]
        )
        return summary

    def read(self, *, history: bool = False, machine_id: str | None = None) -> pd.DataFrame:
        """Current (or historical) thresholds, sorted by machine, stage and valid_from."""
        import sqlalchemy as sa

        table = self.history if history else self.current

        def tx(conn: Any) -> pd.DataFrame:
            if not sa.inspect(conn).has_table(table.name):
                return pd.DataFrame(columns=[c.name for c in table.columns])
            query = sa.select(table)
            if machine_id is not None:
                query = query.where(table.c.machine_id == machine_id)
            return pd.read_sql(
                query.order_by(table.c.machine_id, table.c.stage, table.c.valid_from), conn
            )

        return self._run("read", tx)


def write_threshold_updates(
    frame: pd.DataFrame, *, url: str, run_id: str, table: str = "alert_thresholds"
) -> dict[str, Any]:
    """One-shot: write ``frame`` (a ``threshold_updates`` partition) to the alert database."""
    sink = AlertThresholdSink(url, table=table)
    try:
        return sink.write(frame, run_id=run_id)
    finally:
        sink.close()


def run_sink(
    sink: Mapping[str, Any],
    frame: pd.DataFrame,
    *,
    run_id: str,
    resolver: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Entry point for the runner: ``sink`` is the step's ``sink:`` config mapping.

    ``{type: alert_thresholds, conn_id: meshinsights_alerts, table: alert_thresholds}``
    (``conn_id`` and ``table`` optional).
    """
    kind = sink.get("type", "alert_thresholds")
    if kind != "alert_thresholds":
        raise ConfigError(f"unknown sink type {kind!r}; known: ['alert_thresholds']")
    unknown = sorted(set(sink) - {"type", "conn_id", "table"})
    if unknown:
        raise ConfigError(f"sink has unknown field(s) {unknown}; allowed: type, conn_id, table")
    url = alerts_url(sink.get("conn_id", ALERTS_CONN_ID), resolver)
    return write_threshold_updates(
        frame, url=url, run_id=run_id, table=sink.get("table", "alert_thresholds")
    )
