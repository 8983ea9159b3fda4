"""SQL connector over SQLAlchemy: SQLite (embedded default), MySQL/MariaDB (PyMySQL), PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from meshinsights.config.machines import SourceOptions, SQLSource
from meshinsights.connectors.base import DBConnector
from meshinsights.credentials import normalize_url, redact, remember_secrets
from meshinsights.errors import ConnectorError, TransientConnectorError

if TYPE_CHECKING:
    from meshinsights.connectors.sources import SourceAccess

__all__ = ["SQLConnector"]

logger = logging.getLogger(__name__)

# MySQL/MariaDB error codes worth a retry: lost/refused connection, server gone, deadlock,
# lock wait timeout, too many connections.
_MYSQL_TRANSIENT = {1040, 1205, 1213, 2002, 2003, 2006, 2013, 2055}
# PostgreSQL SQLSTATE classes/codes worth a retry: connection exceptions, serialization
# failure, deadlock, admin shutdown, too many connections.
_PG_TRANSIENT_PREFIX = ("08", "57P", "53")
# lock not available (lock_timeout) and query canceled (statement_timeout) too.
_PG_TRANSIENT = {"40001", "40P01", "55P03", "57014"}
_UNKNOWN_HOST = (
    "name or service not known",
    "could not translate host name",
    "nodename nor servname",
    "temporary failure in name resolution",
    "unknown mysql server host",
    "getaddrinfo failed",
)
_TRANSIENT_TEXT = (
    "timeout",
    "timed out",
    "connection refused",
    "server closed",
    "lost connection",
    "server has gone away",
    "database is locked",
    "connection reset",
    "could not connect",
)


class SQLConnector(DBConnector):
    """Parameterized SQL into a DataFrame. Config: ``url`` (any SQLAlchemy URL)."""

    conn_type = "sql"
    options = SQLSource

    @classmethod
    def config_from_source(
        cls, source: SourceOptions, *, machine_id: str, access: SourceAccess
    ) -> dict[str, Any]:
        assert isinstance(source, SQLSource)
        return {"url": access.resolver(source.conn_id)}

    def __init__(self, *, url: str, connect_timeout: int = 10, **options: Any) -> None:
        super().__init__(url=url, connect_timeout=connect_timeout, **options)
        remember_secrets(url)  # a URL given directly (not through a connection id) too
        self.url = normalize_url(url)

    def describe(self) -> str:
        return redact(self.url)

    @property
    def _password(self) -> str | None:
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).password
        except Exception:
            return None

    def connect(self) -> Any:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        try:
            url = make_url(self.url)
        except Exception:
            raise ConnectorError(
                f"connection URL {self.describe()} is not a valid database URL; "
                "use e.g. mysql://user:pass@host:3306/db"
            ) from None
        if (
            url.get_backend_name() == "sqlite"
            and url.database not in (None, "", ":memory:")
            and not Path(url.database).exists()
        ):
            # sqlite3 would silently create an empty file and fail later on "no such table".
            raise ConnectorError(
                f"SQLite file {url.database} does not exist; run "
                "`meshinsights demo seed` or fix the path in the connection"
            )
        args: dict[str, Any] = {}
        if self.url.startswith(("mysql", "postgresql")):
            args["connect_timeout"] = self.config["connect_timeout"]
        try:
            return create_engine(self.url, connect_args=args, pool_pre_ping=True)
        except Exception as exc:
            raise ConnectorError(
                f"cannot create a database engine for {self.describe()}: "
                f"{redact(str(exc), self._password)}; check the connection URL"
            ) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.dispose()
        super().close()

    def _bind(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        bound = dict(params or {})
        if self.url.startswith("sqlite"):
            # SQLite keeps timestamps as text; bind the same 'YYYY-MM-DD HH:MM:SS' form the
            # data uses so string comparison equals time comparison.
            for k, v in bound.items():
                if isinstance(v, datetime):
                    fmt = "%Y-%m-%d %H:%M:%S" + (".%f" if v.microsecond else "")
                    bound[k] = v.strftime(fmt)
        return bound

    def query(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        from sqlalchemy import text

        try:
            with self.client.connect() as conn:
                return pd.read_sql(text(query), conn, params=self._bind(params))
        except ConnectorError:
            raise
        except Exception as exc:
            raise self._wrap(exc) from None

    def _wrap(self, exc: Exception) -> ConnectorError:
        """One actionable line, secret-free; transient faults as TransientConnectorError."""
        orig = _driver_error(exc)
        text = str(orig).strip()
        detail = redact(text.splitlines()[0] if text else type(orig).__name__, self._password)
        where = self.describe()
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        pgcode = getattr(orig, "pgcode", None)
        low = detail.lower()
        # Permanent causes first: a DNS failure also carries MySQL's "can't connect" code.
        if (
            "access denied" in low
            or "password authentication failed" in low
            or code == 1045
            or pgcode == "28P01"
        ):
            return ConnectorError(
                f"{where}: authentication failed ({detail}); check the login "
                "and password of the connection"
            )
        if any(p in low for p in _UNKNOWN_HOST):
            return ConnectorError(f"{where}: unknown host ({detail}); check the host name")
        if (
            code in (1146, 1054)
            or pgcode in ("42P01", "42703")
            or "no such table" in low
            or "no such column" in low
            or "doesn't exist" in low
        ):
            return ConnectorError(
                f"{where}: missing table or column ({detail}); check the query "
                "and that the source is seeded"
            )
        if code == 1049 or pgcode == "3D000" or ("database" in low and "does not exist" in low):
            return ConnectorError(
                f"{where}: unknown database ({detail}); check the database name in the connection"
            )
        if code == 1064 or pgcode == "42601" or "syntax" in low:
            return ConnectorError(f"{where}: SQL syntax error ({detail}); fix the query")
        if (
            code in _MYSQL_TRANSIENT
            or (pgcode and (pgcode in _PG_TRANSIENT or pgcode.startswith(_PG_TRANSIENT_PREFIX)))
            or any(p in low for p in _TRANSIENT_TEXT)
        ):
            return TransientConnectorError(
                f"{where}: transient database error ({detail}); the "
                "server may be down or busy — retrying"
            )
        return ConnectorError(f"{where}: query failed ({detail})")


def _driver_error(exc: BaseException) -> BaseException:
    """The DB-API error under SQLAlchemy's and pandas' wrappers (it carries the codes)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        orig = getattr(cur, "orig", None)
        if orig is not None:
            return orig
        if getattr(cur, "pgcode", None) or type(cur).__module__.startswith(
            ("pymysql", "psycopg2", "sqlite3")
        ):
            return cur
        cur = cur.__cause__ or cur.__context__
    return exc
