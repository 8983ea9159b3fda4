"""The one I/O edge of the GenAI step: a chat completion on OpenAI, Azure OpenAI or a compatible server.

The key comes from an Airflow Connection (or its ``AIRFLOW_CONN_<ID>`` variable) or an
environment variable — never from YAML — and is never logged or stored. Retries are our own
loop (the SDK's are switched off): 429 and 5xx (and timeouts, dropped connections) are retried
with exponential backoff, honouring ``Retry-After``; any other 4xx fails at once. Each attempt
and wait is reported back so the audit row shows what the call cost in time.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

from meshinsights.connectors.credentials import env_var_name, redact
from meshinsights.errors import ConfigError, MeshInsightsError
from meshinsights.genai.models import RESPONSE_SCHEMA, Analysis, parse_answer

__all__ = [
    "Provider",
    "PROVIDERS",
    "DEFAULT_CONN_ID",
    "Credentials",
    "ClientConfig",
    "Completion",
    "GenAIError",
    "resolve",
    "complete",
    "estimate_cost",
    "retry_after",
]

logger = logging.getLogger(__name__)

Provider = Literal["auto", "offline", "openai", "azure", "compatible"]
PROVIDERS: tuple[str, ...] = get_args(Provider)
DEFAULT_CONN_ID = "meshinsights_genai"
DEFAULT_AZURE_API_VERSION = "2024-10-21"  # GA version with structured outputs
#: USD per 1M tokens (input, output); estimates for the audit row, override with params.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1": (2.00, 8.00), "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00), "gpt-5": (1.25, 10.00),
}


class GenAIError(MeshInsightsError):
    """The provider gave no usable answer (after retries, or on a non-retryable error)."""

    def __init__(self, message: str, *, attempts: int = 0, waits: list[float] | None = None,
                 latency_s: float = 0.0) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.waits = list(waits or [])
        self.latency_s = latency_s


@dataclass(frozen=True)
class Credentials:
    """Where to send requests and the key to send; ``repr`` never shows the key."""

    api_key: str | None = field(repr=False)
    source: str  # e.g. "env OPENAI_API_KEY" — names where the key came from, never the key
    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None


@dataclass(frozen=True)
class ClientConfig:
    """Request settings (all from the pipeline config; none secret)."""

    provider: str  # openai | azure | compatible
    model: str
    temperature: float | None = 0.2
    max_tokens: int = 800
    timeout: float = 30.0
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0
    structured: Literal["json_schema", "json_object", "none"] = "json_schema"


@dataclass(frozen=True)
class Completion:
    """A usable answer and what it took to get it."""

    content: str
    analysis: Analysis
    parse_status: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    attempts: int
    waits: list[float]
    finish_reason: str | None


# ---------------------------------------------------------------------- credentials


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
    raw = (os.environ.get(env_var_name(conn_id)) or "").strip()
    if not raw:
        return None
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{env_var_name(conn_id)} holds invalid JSON; use Airflow's JSON "
                              "connection form or a URI") from exc
        extra = data.get("extra") or {}
        extra = json.loads(extra) if isinstance(extra, str) else dict(extra)
        return _Conn(data.get("password"), _url_from_host(data.get("host")), extra,
                     str(data.get("conn_type") or ""))
    parts = urlsplit(raw)
    host = unquote(parts.netloc.rsplit("@", 1)[-1])  # Airflow URL-encodes a host with a scheme
    return _Conn(unquote(parts.password) if parts.password else None,
                 _url_from_host(host, parts.path), dict(parse_qsl(parts.query)), parts.scheme)


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

    With ``auto``: a configured key picks Azure (an endpoint is set), a compatible server (a
    base URL is set) or OpenAI; no key means the offline analyst.
    """
    if provider not in PROVIDERS:
        raise ConfigError(f"genai provider {provider!r} is unknown; use one of {list(PROVIDERS)}")
    if provider == "offline":
        return "offline", None
    for url in (base_url, azure_endpoint):
        if url and urlsplit(url).password is not None:
            raise ConfigError("genai base_url/azure_endpoint must not embed credentials; put the "
                              f"key in the Connection {conn_id!r} or an environment variable")
    conn = (_conn_from_env(conn_id) or _conn_from_airflow(conn_id)) if conn_id else None
    extra = conn.extra if conn else {}
    is_azure = provider == "azure" or (provider == "auto" and bool(
        azure_endpoint or extra.get("azure_endpoint") or (conn and "azure" in conn.conn_type)))
    env_name = api_key_env or ("AZURE_OPENAI_API_KEY" if is_azure else "OPENAI_API_KEY")
    key, source = (conn.password, f"connection {conn_id}") if conn and conn.password else (
        os.environ.get(env_name) or None, f"env {env_name}")
    if provider == "auto" and key is None and not api_key_env and os.environ.get(
            "AZURE_OPENAI_API_KEY") and (azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")):
        is_azure, key, source = True, os.environ["AZURE_OPENAI_API_KEY"], "env AZURE_OPENAI_API_KEY"
    url = base_url or extra.get("base_url") or (conn.host if conn else None)
    endpoint = azure_endpoint or extra.get("azure_endpoint") or (
        conn.host if conn and is_azure else None) or os.environ.get("AZURE_OPENAI_ENDPOINT")
    version = (api_version or extra.get("api_version") or os.environ.get("OPENAI_API_VERSION")
               or DEFAULT_AZURE_API_VERSION)
    if provider == "auto":
        if key is None:
            return "offline", None
        provider = "azure" if is_azure else "compatible" if url else "openai"
    if provider == "compatible" and key is None:
        key, source = "not-needed", "none (compatible server without a key)"
    creds = Credentials(key, source, url if provider != "azure" else None,
                        endpoint if provider == "azure" else None,
                        version if provider == "azure" else None)
    return provider, creds


# ---------------------------------------------------------------------- the call


def _client(config: ClientConfig, creds: Credentials) -> Any:
    import openai

    timeout = openai.Timeout(config.timeout, connect=min(config.timeout, 10.0))
    if config.provider == "azure":
        if not creds.azure_endpoint:
            raise GenAIError("Azure OpenAI needs an endpoint: set the genai param azure_endpoint, "
                             "the Connection extra 'azure_endpoint' or AZURE_OPENAI_ENDPOINT")
        return openai.AzureOpenAI(api_key=creds.api_key, azure_endpoint=creds.azure_endpoint,
                                  api_version=creds.api_version, timeout=timeout, max_retries=0)
    return openai.OpenAI(api_key=creds.api_key, base_url=creds.base_url, timeout=timeout,
                         max_retries=0)


def _request(config: ClientConfig, system: str, user: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": config.model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    # OpenAI deprecated max_tokens (reasoning models reject it); many compatible servers
    # only know max_tokens.
    kwargs["max_tokens" if config.provider == "compatible" else "max_completion_tokens"] = (
        config.max_tokens)
    if config.temperature is not None:
        kwargs["temperature"] = config.temperature
    if config.structured == "json_schema":
        kwargs["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "window_analysis", "schema": RESPONSE_SCHEMA, "strict": True}}
    elif config.structured == "json_object":
        kwargs["response_format"] = {"type": "json_object"}
    return kwargs


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks to wait, if any."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


def _classify(exc: Exception) -> tuple[bool, str, float | None]:
    """(retryable, reason, server-requested wait) for an exception from the SDK."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        wait = retry_after(exc.response.headers if exc.response is not None else None)
        return status == 429 or status >= 500, f"HTTP {status}: {exc.message}", wait
    if isinstance(exc, openai.APITimeoutError):
        return True, "request timed out", None
    if isinstance(exc, openai.APIConnectionError):
        return True, f"connection failed: {exc}", None
    return False, f"{type(exc).__name__}: {exc}", None


def _backoff(config: ClientConfig, attempt: int, server_wait: float | None) -> float:
    if server_wait is not None:
        return server_wait
    base = min(config.backoff_max, config.backoff_base * 2 ** (attempt - 1))
    return base * (0.75 + random.random() / 4)


def _create(client: Any, kwargs: dict[str, Any], config: ClientConfig, key: str | None,
            sleep: Callable[[float], None]) -> tuple[Any, int, list[float]]:
    waits: list[float] = []
    for attempt in range(1, config.max_attempts + 1):
        try:
            return client.chat.completions.create(**kwargs), attempt, waits
        except Exception as exc:
            retryable, reason, server_wait = _classify(exc)
            reason = redact(reason, key)[:500]
            if not retryable:
                raise GenAIError(f"{config.provider} request failed, not retried: {reason}",
                                 attempts=attempt, waits=waits) from exc
            if attempt == config.max_attempts:
                raise GenAIError(f"{config.provider} request failed after {attempt} attempts: "
                                 f"{reason}", attempts=attempt, waits=waits) from exc
            if server_wait is not None and server_wait > config.max_retry_after:
                raise GenAIError(f"{config.provider} asked to retry after {server_wait:.0f}s, "
                                 f"more than max_retry_after={config.max_retry_after:.0f}s; gave "
                                 f"up: {reason}", attempts=attempt, waits=waits) from exc
            delay = _backoff(config, attempt, server_wait)
            logger.warning("genai %s attempt %d/%d failed (%s); retrying in %.2fs",
                           config.provider, attempt, config.max_attempts, reason, delay)
            waits.append(round(delay, 3))
            sleep(delay)
    raise AssertionError("unreachable")


def complete(config: ClientConfig, creds: Credentials, system: str, user: str, *,
             sleep: Callable[[float], None] = time.sleep) -> Completion:
    """One analysis from the provider, with retries; raises GenAIError when none is usable."""
    started = time.perf_counter()
    client = _client(config, creds)
    try:
        resp, attempts, waits = _create(client, _request(config, system, user), config,
                                        creds.api_key, sleep)
    except GenAIError as exc:
        exc.latency_s = time.perf_counter() - started
        raise
    finally:
        client.close()
    latency = time.perf_counter() - started
    choice = resp.choices[0] if resp.choices else None
    message = choice.message if choice else None
    content = (message.content or getattr(message, "refusal", None) or "") if message else ""
    if not content.strip():
        raise GenAIError(f"{config.provider} returned an empty answer (finish_reason="
                         f"{choice.finish_reason if choice else None}); raise max_tokens",
                         attempts=attempts, waits=waits, latency_s=latency)
    analysis, status = parse_answer(content)
    usage = resp.usage
    return Completion(content, analysis, status, resp.model or config.model,
                      usage.prompt_tokens if usage else None,
                      usage.completion_tokens if usage else None,
                      latency, attempts, waits, choice.finish_reason if choice else None)


def estimate_cost(model: str, prompt_tokens: int | None, completion_tokens: int | None, *,
                  price_in: float | None = None, price_out: float | None = None) -> float | None:
    """Estimated USD cost from token usage; None when the price or the usage is unknown."""
    if prompt_tokens is None or completion_tokens is None:
        return None
    if price_in is None or price_out is None:
        known = max((m for m in PRICES if model == m or model.startswith(m + "-")), key=len,
                    default=None)
        if known is None:
            return None
        price_in = PRICES[known][0] if price_in is None else price_in
        price_out = PRICES[known][1] if price_out is None else price_out
    return round((prompt_tokens * price_in + completion_tokens * price_out) / 1e6, 8)
