"""Where the GenAI step's key and endpoint come from: an Airflow Connection or the environment.

Never YAML: the pipeline config names a connection id or an environment variable, and this
module reads the secret at call time, in the same order as source connections
(:func:`meshinsights.credentials.env_value`): the ``AIRFLOW_CONN_<ID>`` variable Airflow itself
honours (URI or JSON form) or the key variable, from the environment and then the local ``.env``
file; inside Airflow, failing those, the Connection API (so secrets backends apply). A key is
never logged, stored or shown by ``repr``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

from meshinsights.credentials import env_value, env_var_name, remember_secrets
from meshinsights.errors import ConfigError

__all__ = ["Provider", "PROVIDERS", "DEFAULT_CONN_ID", "Credentials", "resolve"]

Provider = Literal["auto", "offline", "openai", "azure", "compatible"]
PROVIDERS: tuple[str, ...] = get_args(Provider)
DEFAULT_CONN_ID = "meshinsights_genai"
DEFAULT_AZURE_API_VERSION = "2024-10-21"  # GA version with structured outputs


@dataclass(frozen=True)
class Credentials:
    """Where to send requests and the key to send; ``repr`` never shows the key."""

    api_key: str | None = field(repr=False)
    source: str  # e.g. "env OPENAI_API_KEY" — names where the key came from, never the key
    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None


@dataclass(frozen=True)
class _Conn:
    password: str | None = field(repr=False)
    host: str | None
    extra: dict[str, Any]
    conn_type: str = ""


def _url_from_host(host: str | None, path: str = "") -> str | None:
    if not host:
        return None
    return host if host.startswith(("http://", "https://")) else f"https://{host}{path}"


def _conn_from_env(conn_id: str) -> _Conn | None:
    raw = (env_value(env_var_name(conn_id)) or "").strip()
    if not raw:
        return None
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(
                f"{env_var_name(conn_id)} holds invalid JSON; use Airflow's JSON "
                "connection form or a URI"
            ) from exc
        extra = data.get("extra") or {}
        extra = json.loads(extra) if isinstance(extra, str) else dict(extra)
        return _Conn(
            data.get("password"),
            _url_from_host(data.get("host")),
            extra,
            str(data.get("conn_type") or ""),
        )
    parts = urlsplit(raw)
    host = unquote(parts.netloc.rsplit("@", 1)[-1])  # Airflow URL-encodes a host with a scheme
    return _Conn(
        unquote(parts.password) if parts.password else None,
        _url_from_host(host, parts.path),
        dict(parse_qsl(parts.query)),
        parts.scheme,
    )


def _conn_from_airflow(conn_id: str) -> _Conn | None:
    # Only inside Airflow (the SDK is already loaded there); the local runner never pays for
    # importing Airflow, and reads AIRFLOW_CONN_<ID> above instead.
    if "airflow.sdk" not in sys.modules:
        return None
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:  # not defined: the env var / offline path decides
        return None
    extra = dict(conn.extra_dejson or {})
    return _Conn(conn.password, _url_from_host(conn.host), extra, conn.conn_type or "")


def _check(provider: str, conn_id: str | None, *urls: str | None) -> None:
    if provider not in PROVIDERS:
        raise ConfigError(f"genai provider {provider!r} is unknown; use one of {list(PROVIDERS)}")
    for url in urls:
        if url and urlsplit(url).password is not None:
            raise ConfigError(
                "genai base_url/azure_endpoint must not embed credentials; put the key in the "
                f"Connection {conn_id!r} or an environment variable"
            )


def resolve(
    provider: str,
    *,
    conn_id: str | None = DEFAULT_CONN_ID,
    api_key_env: str | None = None,
    base_url: str | None = None,
    azure_endpoint: str | None = None,
    api_version: str | None = None,
) -> tuple[str, Credentials | None]:
    """The provider to call and its credentials; ``('offline', None)`` when none is configured.

    The key comes from the Connection ``conn_id`` if it exists, else from the environment
    variable ``api_key_env`` (default OPENAI_API_KEY, or AZURE_OPENAI_API_KEY for Azure).
    With ``auto``, a key selects Azure (an Azure endpoint or connection type is configured), a
    compatible server (a base URL is configured) or OpenAI; no key selects the offline analyst.
    """
    _check(provider, conn_id, base_url, azure_endpoint)
    if provider == "offline":
        return "offline", None
    conn = (_conn_from_env(conn_id) or _conn_from_airflow(conn_id)) if conn_id else None
    extra, host = (conn.extra, conn.host) if conn else ({}, None)
    is_azure = provider == "azure" or (
        provider == "auto"
        and bool(
            azure_endpoint or extra.get("azure_endpoint") or (conn and "azure" in conn.conn_type)
        )
    )
    env_name = api_key_env or ("AZURE_OPENAI_API_KEY" if is_azure else "OPENAI_API_KEY")
    key: str | None = env_value(env_name) or None
    source = f"env {env_name}"
    if conn is not None and conn.password:
        key, source = conn.password, f"connection {conn_id}"
    if key:
        remember_secrets(key)  # redacted from every later error and log line of this process
    url = base_url or extra.get("base_url") or host
    if provider == "auto":
        if key is None:
            return "offline", None
        provider = "azure" if is_azure else "compatible" if url else "openai"
    if provider == "azure":
        endpoint = (
            azure_endpoint
            or extra.get("azure_endpoint")
            or host
            or env_value("AZURE_OPENAI_ENDPOINT")
        )
        version = (
            api_version
            or extra.get("api_version")
            or env_value("OPENAI_API_VERSION")
            or DEFAULT_AZURE_API_VERSION
        )
        return "azure", Credentials(key, source, azure_endpoint=endpoint, api_version=version)
    if provider == "compatible" and key is None:
        key, source = "not-needed", "none (a compatible server without a key)"
    return provider, Credentials(key, source, base_url=url)
