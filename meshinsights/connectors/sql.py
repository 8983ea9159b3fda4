"""SQL connector over SQLAlchemy: SQLite (embedded default), MySQL/MariaDB (PyMySQL), PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from meshinsights.connectors.base import DBConnector
from meshinsights.connectors.credentials import normalize_url, redact
from meshinsights.errors import ConnectorError, TransientConnectorError

__all__ = ["SQLConnector"]

logger = logging.getLogger(__name__)

# MySQL/MariaDB error codes worth a retry: lost/refused connection, server gone, deadlock,
# lock wait timeout, too many connections.
_MYSQL_TRANSIENT = {1040, 1205, 1213, 2002, 2003, 2006, 2013, 2055}
# PostgreSQL SQLSTATE classes/codes worth a retry: connection exceptions, serialization
# failure, deadlock, admin shutdown, too many connections.
_PG_TRANSIENT_PREFIX = ("08", "57P", "53")
_PG_TRANSIENT = {"40001", "40P01"}


class SQLConnector(DBConnector):
    """Parameterized SQL into a DataFrame. Config: ``url`` (any SQLAlchemy URL)."""

    conn_type = "sql"

    def __init__(self, *, url: str, connect_timeout: int = 10, **options: Any) -> None:
        super().__init__(url=url, connect_timeout=connect_timeout, **options)
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
                    bound[k] = v.strftime("%Y-%m-%d %H:%M:%S")
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
        orig = getattr(exc, "orig", None) or exc
        detail = redact(str(orig).splitlines()[0] if str(orig) else type(orig).__name__,
                        self._password)
        where = self.describe()
        code = getattr(orig, "args", [None])[0] if orig.args else None
        pgcode = getattr(orig, "pgcode", None)
        if isinstance(code, int) and code in _MYSQL_TRANSIENT and "Unknown" not in detail:
            return TransientConnectorError(f"{where}: transient database error ({detail}); retrying helps")
        if pgcode and (pgcode in _PG_TRANSIENT or pgcode.startswith(_PG_TRANSIENT_PREFIX)):
            return TransientConnectorError(f"{where}: transient database error ({detail})")
        low = detail.lower()
        if "access denied" in low or "password authentication failed" in low:
            return ConnectorError(f"{where}: authentication failed ({detail}); check the login "
                                  "and password of the connection")
        if "unknown" in low and "host" in low or "name or service not known" in low \
                or "could not translate host name" in low:
            return ConnectorError(f"{where}: unknown host ({detail}); check the host name")
        if "doesn't exist" in low or "no such table" in low or "does not exist" in low:
            return ConnectorError(f"{where}: missing table or column ({detail}); check the query "
                                  "and that the source is seeded")
        if "syntax" in low:
            return ConnectorError(f"{where}: SQL syntax error ({detail}); fix the query")
        if ("timeout" in low or "timed out" in low or "connection refused" in low
                or "server closed" in low or "lost connection" in low):
            return TransientConnectorError(f"{where}: {detail}; the server may be down or busy")
        return ConnectorError(f"{where}: query failed ({detail})")
