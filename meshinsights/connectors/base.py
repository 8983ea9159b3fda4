"""``DBConnector`` (the connector contract) and ``PluginManager`` (registry + pooled instances).

Connectors look like Airflow hooks: a ``conn_type``, a lazily created client, ``query(...)``
returning a DataFrame, and vendor errors wrapped with ``raise ... from exc``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from meshinsights.errors import ConnectorError

if TYPE_CHECKING:
    import pandas as pd

    from meshinsights.config.machines import SourceOptions
    from meshinsights.connectors.sources import SourceAccess

__all__ = ["DBConnector", "PluginManager", "ENTRY_POINT_GROUP", "default_manager"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "meshinsights.connectors"

#: Built-in connectors, imported on first use (DAG parsing must not pay for pandas/kusto).
BUILTINS = {
    "sql": "meshinsights.connectors.sql:SQLConnector",
    "adx": "meshinsights.connectors.adx:ADXConnector",
    "file": "meshinsights.connectors.files:FileConnector",
}


class DBConnector(ABC):
    """A source connection: connect lazily, run a parameterized query, close.

    ``config`` holds everything that identifies the connection (URL, credentials, options);
    it is never logged. Use as a context manager to close on exit.
    """

    conn_type: ClassVar[str] = ""
    #: The options a machine's ``source: {type: <conn_type>, ...}`` may set: a pydantic model
    #: subclassing :class:`meshinsights.config.SourceOptions`, validated when configs load.
    options: ClassVar[type[SourceOptions] | None] = None
    #: Options passed to :meth:`query` per run rather than to the constructor.
    QUERY_OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {"query", "events_query", "late_query", "params"}
    )

    @classmethod
    def config_from_source(
        cls, source: SourceOptions, *, machine_id: str, access: SourceAccess
    ) -> dict[str, Any]:
        """This connector's constructor arguments for one machine's source.

        Default: the source's own options (not the shared layout/time options, not the
        queries), with ``conn_id`` resolved to ``url`` through the Connection/env resolver —
        credentials never come from YAML.
        """
        from meshinsights.config.machines import SHAPE_KEYS

        own = source.model_dump(exclude={"type", *SHAPE_KEYS, *cls.QUERY_OPTIONS})
        conn_id = own.pop("conn_id", None)
        if conn_id is not None:
            own["url"] = access.resolver(conn_id)
        return own

    def __init__(self, **config: Any) -> None:
        self.config = dict(config)
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The vendor client, created on first use."""
        if self._client is None:
            self._client = self.connect()
        return self._client

    @abstractmethod
    def connect(self) -> Any:
        """Create and return the vendor client (engine, session, ...)."""

    @abstractmethod
    def query(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run ``query`` with bound ``params`` (never string-formatted) into a DataFrame."""

    def close(self) -> None:
        """Release the client; the connector can be used again (it reconnects lazily)."""
        self._client = None

    def __enter__(self) -> DBConnector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """A safe one-line description for logs (no secrets)."""
        return self.conn_type


def config_key(conn_type: str, config: Mapping[str, Any]) -> str:
    """Stable hash of a connector config: identical configs share an instance, others never do."""
    blob = json.dumps({"type": conn_type, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class PluginManager:
    """Registers connector classes by ``conn_type`` and pools their instances by config hash."""

    def __init__(self, *, load_entry_points: bool = True, builtins: bool = True) -> None:
        self._classes: dict[str, type[DBConnector]] = {}
        self._lazy: dict[str, str] = dict(BUILTINS) if builtins else {}
        self._pool: dict[str, DBConnector] = {}
        self._lock = threading.Lock()
        self._load_eps = load_entry_points
        self._eps_loaded = False

    def __enter__(self) -> PluginManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def register(self, cls: type[DBConnector], *, name: str | None = None) -> type[DBConnector]:
        """Register a connector class (usable as a decorator)."""
        key = name or cls.conn_type
        if not key:
            raise ConnectorError(f"{cls.__qualname__} has no conn_type; set the class attribute")
        self._classes[key] = cls
        return cls

    def _load_entry_points(self) -> None:
        if self._eps_loaded or not self._load_eps:
            return
        self._eps_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.value in self._lazy.values() or ep.name in self._classes:
                continue  # a built-in (declared in our own pyproject) or registered explicitly
            try:
                cls = ep.load()
                self._classes.setdefault(cls.conn_type or ep.name, cls)
            except Exception:  # one broken plugin must not hide the others
                logger.exception("could not load connector plugin %s (%s)", ep.name, ep.value)

    def known(self) -> list[str]:
        self._load_entry_points()
        return sorted(set(self._classes) | set(self._lazy))

    def connector_class(self, conn_type: str) -> type[DBConnector]:
        self._load_entry_points()
        if conn_type in self._classes:
            return self._classes[conn_type]
        if conn_type in self._lazy:
            module, _, attr = self._lazy[conn_type].partition(":")
            cls = getattr(importlib.import_module(module), attr)
            self._classes[conn_type] = cls
            return cls
        close = difflib.get_close_matches(conn_type, self.known(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConnectorError(
            f"unknown connector type {conn_type!r}.{hint} Known: {', '.join(self.known())}"
        )

    def get(self, conn_type: str, **config: Any) -> DBConnector:
        """A pooled connector for this exact config (created on first request).

        The pool key hashes the whole config, secrets included: two machines with the same
        URL share one engine; another tenant, login or password always gets its own.
        """
        cls = self.connector_class(conn_type)
        key = config_key(conn_type, config)
        with self._lock:
            if key not in self._pool:
                self._pool[key] = cls(**config)
            return self._pool[key]

    def pooled(self) -> int:
        return len(self._pool)

    def cleanup(self) -> None:
        """Close every pooled connector."""
        with self._lock:
            pool, self._pool = self._pool, {}
        for conn in pool.values():
            try:
                conn.close()
            except Exception:  # closing is best effort; keep closing the rest
                logger.warning("closing %s failed", conn.describe(), exc_info=True)


_default: PluginManager | None = None


def default_manager() -> PluginManager:
    """The process-wide manager with the built-in and entry-point connectors."""
    global _default
    if _default is None:
        _default = PluginManager()
    return _default
