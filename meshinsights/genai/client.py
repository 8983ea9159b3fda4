"""The one I/O edge of the GenAI step: a chat completion on OpenAI, Azure OpenAI or compatible.

Any server speaking the OpenAI chat-completions API works through ``base_url``; credentials
come from :mod:`meshinsights.genai.credentials` and are never logged. Retries follow the
library's one policy (:data:`meshinsights.retry.MODEL`; the SDK's are switched off): 429 and
5xx (and timeouts, dropped connections) are retried with exponential backoff, honouring
``Retry-After``; any other 4xx fails at once. Each attempt
and wait is reported back so the audit row shows what the call cost in time.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tenacity import RetryCallState

from meshinsights.credentials import redact
from meshinsights.errors import MeshInsightsError
from meshinsights.genai.credentials import Credentials
from meshinsights.genai.models import RESPONSE_SCHEMA, Analysis, parse_answer
from meshinsights.retry import MODEL, Backoff, retrying

__all__ = [
    "ClientConfig",
    "Completion",
    "GenAIError",
    "complete",
    "estimate_cost",
    "retry_after",
]

logger = logging.getLogger(__name__)

#: USD per 1M tokens (input, output); estimates for the audit row, override with params.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
}


class GenAIError(MeshInsightsError):
    """The provider gave no usable answer (after retries, or on a non-retryable error)."""

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 0,
        waits: list[float] | None = None,
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.waits = list(waits or [])
        self.latency_s = latency_s


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


# ---------------------------------------------------------------------- the call


def _client(config: ClientConfig, creds: Credentials) -> Any:
    import openai

    timeout = openai.Timeout(config.timeout, connect=min(config.timeout, 10.0))
    try:
        return _make(openai, config, creds, timeout)
    except (openai.OpenAIError, ValueError) as exc:  # e.g. an Azure setting is missing
        raise GenAIError(f"cannot create the {config.provider} client: {exc}") from exc


def _make(openai: Any, config: ClientConfig, creds: Credentials, timeout: Any) -> Any:
    if config.provider == "azure":
        if not creds.azure_endpoint:
            raise GenAIError(
                "Azure OpenAI needs an endpoint: set the genai param azure_endpoint, "
                "the Connection extra 'azure_endpoint' or AZURE_OPENAI_ENDPOINT"
            )
        return openai.AzureOpenAI(
            api_key=creds.api_key,
            azure_endpoint=creds.azure_endpoint,
            api_version=creds.api_version,
            timeout=timeout,
            max_retries=0,
        )
    return openai.OpenAI(
        api_key=creds.api_key, base_url=creds.base_url, timeout=timeout, max_retries=0
    )


def _request(config: ClientConfig, system: str, user: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": config.model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    # OpenAI deprecated max_tokens (reasoning models reject it); many compatible servers
    # only know max_tokens.
    kwargs["max_tokens" if config.provider == "compatible" else "max_completion_tokens"] = (
        config.max_tokens
    )
    if config.temperature is not None:
        kwargs["temperature"] = config.temperature
    if config.structured == "json_schema":
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "window_analysis", "schema": RESPONSE_SCHEMA, "strict": True},
        }
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


def _classify(exc: BaseException) -> tuple[bool, str, float | None]:
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


def _policy(config: ClientConfig) -> Backoff:
    return MODEL.with_(
        attempts=config.max_attempts, base=config.backoff_base, cap=config.backoff_max
    )


def _create(
    client: Any,
    kwargs: dict[str, Any],
    config: ClientConfig,
    key: str | None,
    sleep: Callable[[float], None],
) -> tuple[Any, int, list[float]]:
    waits: list[float] = []

    def retryable(exc: BaseException) -> bool:
        ok, _reason, server_wait = _classify(exc)
        return ok and (server_wait is None or server_wait <= config.max_retry_after)

    def server_wait(state: RetryCallState) -> float | None:
        exc = state.outcome.exception() if state.outcome else None
        return _classify(exc)[2] if exc is not None else None

    retrier = retrying(
        _policy(config),
        retry_on=retryable,
        what=f"genai {config.provider}",
        sleep=sleep,
        wait=server_wait,
        on_retry=lambda _state, delay: waits.append(round(delay, 3)),
        describe=lambda exc: redact(_classify(exc)[1], key)[:500],
    )
    try:
        for attempt in retrier:
            with attempt:
                return (
                    client.chat.completions.create(**kwargs),
                    attempt.retry_state.attempt_number,
                    waits,
                )
    except Exception as exc:
        attempts = retrier.statistics.get("attempt_number", 1)
        ok, reason, wait_s = _classify(exc)
        reason = redact(reason, key)[:500]
        if not ok:
            message = f"{config.provider} request failed, not retried: {reason}"
        elif attempts >= config.max_attempts:
            message = f"{config.provider} request failed after {attempts} attempts: {reason}"
        elif wait_s is not None and wait_s > config.max_retry_after:
            message = (
                f"{config.provider} asked to retry after {wait_s:.0f}s, more than "
                f"max_retry_after={config.max_retry_after:.0f}s; gave up: {reason}"
            )
        else:  # unreachable: a retryable error before the budget ran out was retried
            message = f"{config.provider} request failed after {attempts} attempts: {reason}"
        raise GenAIError(message, attempts=attempts, waits=waits) from exc
    raise AssertionError("unreachable")


def complete(
    config: ClientConfig,
    creds: Credentials,
    system: str,
    user: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Completion:
    """One analysis from the provider, with retries; raises GenAIError when none is usable."""
    started = time.perf_counter()
    client = _client(config, creds)
    try:
        resp, attempts, waits = _create(
            client, _request(config, system, user), config, creds.api_key, sleep
        )
    except GenAIError as exc:
        exc.latency_s = time.perf_counter() - started
        raise
    finally:
        client.close()
    latency = time.perf_counter() - started
    try:
        choice, content, tokens = _unpack(resp)
    except (AttributeError, TypeError, IndexError, KeyError) as exc:
        # A 200 whose body is JSON but not a chat completion (a proxy, a wrong base_url).
        raise GenAIError(
            f"{config.provider} returned a malformed response ({type(exc).__name__}: {exc}); "
            "check that base_url points at an OpenAI-compatible chat-completions API",
            attempts=attempts,
            waits=waits,
            latency_s=latency,
        ) from exc
    if not content.strip():
        raise GenAIError(
            f"{config.provider} returned an empty answer (finish_reason="
            f"{choice.finish_reason if choice else None}); raise max_tokens",
            attempts=attempts,
            waits=waits,
            latency_s=latency,
        )
    analysis, status = parse_answer(content)
    return Completion(
        content,
        analysis,
        status,
        resp.model or config.model,
        *tokens,
        latency,
        attempts,
        waits,
        choice.finish_reason if choice else None,
    )


def _unpack(resp: Any) -> tuple[Any, str, tuple[int | None, int | None]]:
    """(first choice, its text, (prompt, completion) tokens); raises on a malformed body."""
    choice = resp.choices[0] if resp.choices else None
    message = choice.message if choice else None
    content = (message.content or getattr(message, "refusal", None) or "") if message else ""
    if not isinstance(content, str):
        raise TypeError(f"message content is {type(content).__name__}, not text")
    usage = resp.usage
    tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (None, None)
    return choice, content, tokens


def estimate_cost(
    model: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    *,
    price_in: float | None = None,
    price_out: float | None = None,
) -> float | None:
    """Estimated USD cost from token usage; None when the price or the usage is unknown."""
    if prompt_tokens is None or completion_tokens is None:
        return None
    if price_in is None or price_out is None:
        known = max(
            (m for m in PRICES if model == m or model.startswith(m + "-")), key=len, default=None
        )
        if known is None:
            return None
        price_in = PRICES[known][0] if price_in is None else price_in
        price_out = PRICES[known][1] if price_out is None else price_out
    return round((prompt_tokens * price_in + completion_tokens * price_out) / 1e6, 8)
