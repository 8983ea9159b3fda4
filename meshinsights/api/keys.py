"""API keys: read from the environment or an Airflow Connection (never YAML), checked in
constant time.

Sources, first found wins:

* ``MESHINSIGHTS_API_KEYS``: comma-separated keys (several clients, rotation);
* the Connection ``meshinsights_api`` — its password holds the comma-separated keys — as
  ``AIRFLOW_CONN_MESHINSIGHTS_API`` (URI or Airflow's JSON form, the variable Airflow itself
  honours) or, inside an Airflow deployment, through Airflow's secrets backends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from meshinsights.errors import ConfigError

__all__ = ["API_CONN_ID", "KEYS_ENV", "MIN_KEY_LENGTH", "KeyRing", "load_keys"]

logger = logging.getLogger(__name__)

KEYS_ENV = "MESHINSIGHTS_API_KEYS"
API_CONN_ID = "meshinsights_api"
CONN_ENV = "AIRFLOW_CONN_MESHINSIGHTS_API"
#: Shorter keys are refused at start: a guessable key is worse than none.
MIN_KEY_LENGTH = 16


class KeyRing:
    """The accepted keys, kept as SHA-256 digests and compared with :func:`hmac.compare_digest`.

    Every key is compared (no early exit), so the time taken does not tell which key, or how
    much of one, matched.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        cleaned = [k.strip() for k in keys if k and k.strip()]
        if not cleaned:
            raise ConfigError(
                f"no API key configured: set {KEYS_ENV}=key1,key2 (or the Connection "
                f"{API_CONN_ID!r} with the keys as its password), or start with "
                "`meshinsights serve --generate-key`"
            )
        short = [i for i, k in enumerate(cleaned, 1) if len(k) < MIN_KEY_LENGTH]
        if short:
            raise ConfigError(
                f"API key #{short[0]} is shorter than {MIN_KEY_LENGTH} characters; use e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        self._digests = [hashlib.sha256(k.encode()).digest() for k in cleaned]

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).digest()
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        return matched


def _from_connection(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            password = json.loads(raw).get("password") or ""
        except (ValueError, AttributeError) as exc:
            raise ConfigError(
                f"{CONN_ENV} holds invalid JSON; use a URI or Airflow's JSON form"
            ) from exc
    else:
        password = unquote(urlsplit(raw).password or "")
    return password.split(",")


def _from_airflow() -> list[str]:
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(API_CONN_ID)
    except Exception:  # no Airflow, no such Connection, or no API server to ask
        return []
    return (conn.password or "").split(",")


def load_keys(*, extra: Iterable[str] = ()) -> KeyRing:
    """The configured keys (plus ``extra``, e.g. one generated at start); ConfigError if none."""
    keys = list(extra)
    env = os.environ.get(KEYS_ENV)
    if env:
        keys += env.split(",")
    elif os.environ.get(CONN_ENV):
        keys += _from_connection(os.environ[CONN_ENV])
    elif not keys:
        keys += _from_airflow()
    ring = KeyRing(keys)
    logger.info("API: %d key(s) accepted", len(ring))
    return ring
