"""Resolve a connection id to a URL: Airflow Connections inside Airflow, env vars outside.

The local runner reads ``AIRFLOW_CONN_<CONN_ID>`` (URI or Airflow's JSON form) — the same
variable Airflow itself honours — so one setting serves both. Nothing here logs a secret.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from urllib.parse import quote

from meshinsights.errors import ConnectorError

__all__ = ["ConnectionResolver", "env_resolver", "airflow_resolver", "redact", "env_var_name"]

ConnectionResolver = Callable[[str], str]

#: The demo source's connection id; unset, it points at the SQLite file `demo seed` writes.
DEMO_CONN_ID = "meshinsights_demo"

_SCHEMES = {
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "sqlite": "sqlite",
}


def env_var_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + re.sub(r"[^A-Za-z0-9]", "_", conn_id).upper()


def _from_json(data: dict[str, object]) -> str:
    conn_type = str(data.get("conn_type", ""))
    host = str(data.get("host") or "")
    if conn_type == "sqlite":
        return f"sqlite:///{host}"
    login = quote(str(data.get("login") or ""), safe="")
    password = quote(str(data.get("password") or ""), safe="")
    auth = f"{login}:{password}@" if login or password else ""
    port = f":{data['port']}" if data.get("port") else ""
    schema = f"/{data['schema']}" if data.get("schema") else ""
    extra = data.get("extra")
    url = f"{conn_type}://{auth}{host}{port}{schema}"
    if isinstance(extra, dict) and extra:
        url += "?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in extra.items())
    return url


def normalize_url(url: str) -> str:
    """Map Airflow-style schemes (mysql://, postgres://) to SQLAlchemy drivers."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{_SCHEMES.get(scheme, scheme)}://{rest}"


def env_resolver(conn_id: str) -> str:
    """The URL in ``AIRFLOW_CONN_<CONN_ID>``; a clear error naming the variable if unset."""
    name = env_var_name(conn_id)
    raw = os.environ.get(name)
    if not raw and conn_id == DEMO_CONN_ID:
        # Day one works with no set-up: the demo connection defaults to the seeded SQLite file.
        from meshinsights.settings import get_settings

        return get_settings().demo_source_url
    if not raw:
        raise ConnectorError(
            f"connection {conn_id!r} is not configured: set {name} (a URL such as "
            f"mysql://user:pass@host:3306/db) or create the Airflow Connection {conn_id!r}"
        )
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            return _from_json(json.loads(raw))
        except ValueError as exc:
            raise ConnectorError(f"{name} holds invalid JSON; use a URL or Airflow's JSON form") from exc
    return raw


def airflow_resolver(conn_id: str) -> str:
    """Inside an Airflow task: the Connection's URI (env vars and secrets backends included)."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise ConnectorError(
            f"Airflow Connection {conn_id!r} not found: create it (UI: Admin → Connections, or "
            f"`airflow connections add {conn_id} --conn-uri ...`) or set {env_var_name(conn_id)}"
        ) from exc
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    return conn.get_uri()


def redact(text: str, *secrets: str | None) -> str:
    """Remove secrets and URL passwords from ``text`` (error messages, log lines)."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
