"""Resolve a connection id to a URL: Airflow Connections inside Airflow, env vars outside.

The local runner reads ``AIRFLOW_CONN_<CONN_ID>`` (URI or Airflow's JSON form) — the same
variable Airflow itself honours — from the environment or, failing that, a ``.env`` file
(``$MESHINSIGHTS_ENV_FILE``, ``./.env`` or the checkout's ``.env``; keep it out of git). Nothing
here logs a secret, and YAML configs only ever name a connection id.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from meshinsights.errors import ConnectorError

if TYPE_CHECKING:
    from meshinsights.settings import Settings

__all__ = [
    "ConnectionResolver",
    "env_resolver",
    "airflow_resolver",
    "redact",
    "remember_secrets",
    "env_var_name",
    "dotenv_value",
    "env_value",
    "demo_source_url",
    "adx_url",
]

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


_ADX_TYPES = ("azure_data_explorer", "azure-data-explorer", "adx")


def adx_url(
    host: str, login: str | None, password: str | None, extra: dict[str, object] | None
) -> str:
    """An ADX connector URL from Airflow Connection fields (host = the cluster URL)."""
    scheme, _, rest = host.partition("://")
    if not rest:
        scheme, rest = "https", host
    auth = f"{quote(login, safe='')}:{quote(password or '', safe='')}@" if login else ""
    query = {
        k.removeprefix("extra__azure_data_explorer__"): v
        for k, v in (extra or {}).items()
        if v not in (None, "")
    }
    if "tenant" not in query and "tenant_id" in query:
        query["tenant"] = query.pop("tenant_id")
    url = f"{scheme}://{auth}{rest.rstrip('/')}"
    if query:
        url += "?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in sorted(query.items()))
    return url


def _from_json(data: dict[str, object]) -> str:
    conn_type = str(data.get("conn_type", ""))
    host = str(data.get("host") or "")
    if conn_type == "sqlite":
        return f"sqlite:///{host}"
    if conn_type in _ADX_TYPES:
        extra = data.get("extra")
        return adx_url(
            host,
            str(data.get("login") or "") or None,
            str(data.get("password") or "") or None,
            extra if isinstance(extra, dict) else None,
        )
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


def _env_file() -> Path | None:
    """The ``.env`` file the local runner reads: $MESHINSIGHTS_ENV_FILE, ./.env, <repo>/.env."""
    explicit = os.environ.get("MESHINSIGHTS_ENV_FILE")
    if explicit:
        return Path(explicit)
    from meshinsights.settings import PROJECT_ROOT

    for candidate in (Path.cwd() / ".env", PROJECT_ROOT / ".env"):
        if candidate.is_file():
            return candidate
    return None


def dotenv_value(name: str) -> str | None:
    """``name`` from the local ``.env`` file (never written into os.environ), if any."""
    path = _env_file()
    if path is None or not path.is_file():
        return None
    from dotenv import dotenv_values

    return dotenv_values(path).get(name)


def env_value(name: str) -> str | None:
    """``name`` from the environment, else the local ``.env`` file: the one lookup order every
    caller outside Airflow uses (source connections, the GenAI key and connection, the demo)."""
    return os.environ.get(name) or dotenv_value(name)


def env_resolver(conn_id: str) -> str:
    """The URL in ``AIRFLOW_CONN_<CONN_ID>`` (environment, then ``.env``); clear error if unset."""
    name = env_var_name(conn_id)
    raw = env_value(name)
    if not raw and conn_id == DEMO_CONN_ID:
        # Day one works with no set-up: the demo connection defaults to the seeded SQLite file.
        from meshinsights.settings import get_settings

        return get_settings().demo_source_url
    if not raw:
        raise ConnectorError(
            f"connection {conn_id!r} is not configured: set {name} (a URL such as "
            f"mysql://user:pass@host:3306/db) in the environment or a .env file, or create the "
            f"Airflow Connection {conn_id!r}"
        )
    raw = raw.strip()
    if raw.startswith("{") or "://" in raw:  # a URL or the JSON form: learn its secrets
        remember_secrets(raw)
    if raw.startswith("{"):
        try:
            return _from_json(json.loads(raw))
        except ValueError as exc:
            raise ConnectorError(
                f"{name} holds invalid JSON; use a URL or Airflow's JSON form"
            ) from exc
    return raw


def demo_source_url(settings: Settings) -> str:
    """Where the pipelines read the demo (so where a seed writes): the demo connection if
    set, else the settings' SQLite file (its folder created)."""
    if env_value(env_var_name(DEMO_CONN_ID)):
        return env_resolver(DEMO_CONN_ID)
    settings.demo_source.parent.mkdir(parents=True, exist_ok=True)
    return settings.demo_source_url


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
    remember_secrets(conn.password or "", conn.extra_dejson or {})
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    if conn.conn_type in _ADX_TYPES:
        return adx_url(conn.host or "", conn.login, conn.password, conn.extra_dejson)
    uri = conn.get_uri()
    remember_secrets(uri)
    return uri


#: Secret values seen while resolving connections in this process: redact() removes every one
#: of them (as written and URL-encoded) from any text, whatever shape the URL had.
_KNOWN: set[str] = set()
#: Query-string / JSON ``extra`` keys whose values are secrets.
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|credential|signature|sig$|sas", re.I)


def _url_secrets(url: str) -> list[str]:
    """The password and secret query values of a URL, parsed leniently (spaces, raw ``@``)."""
    from urllib.parse import parse_qsl, unquote

    _, sep, rest = url.partition("://")
    if not sep:
        return []
    head, _, query = rest.partition("?")
    found = []
    userinfo = head.rpartition("@")[0] if "@" in head else ""
    if ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    found += [v for k, v in parse_qsl(query, keep_blank_values=True) if _SECRET_KEY.search(k)]
    return [f for raw in found for f in (raw, unquote(raw))]


def remember_secrets(*values: object) -> None:
    """Learn the secrets in connection values (URLs, Airflow's JSON form, bare secrets)."""
    for value in values:
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    remember_secrets(v)
                elif v not in (None, "") and (k == "password" or _SECRET_KEY.search(str(k))):
                    _remember(str(v))
            continue
        if not isinstance(value, str) or not value:
            continue
        text = value.strip()
        if text.startswith("{"):
            with contextlib.suppress(ValueError):  # not JSON: env_resolver says so
                remember_secrets(json.loads(text))
            continue
        if "://" in text:
            for secret in _url_secrets(text):
                _remember(secret)
        else:
            _remember(text)


def _remember(secret: str) -> None:
    if len(secret) >= 3:
        _KNOWN.update({secret, quote(secret, safe=""), quote(secret)})


def redact(text: str, *secrets: str | None) -> str:
    """Remove secrets from ``text`` (error messages, log lines): the ones given, every one
    :func:`remember_secrets` learnt (longest first), then any ``scheme://user:pw@`` left."""
    known = _KNOWN.union(s for s in secrets if s and len(s) >= 3)
    for secret in sorted(known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
