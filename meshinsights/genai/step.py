"""The ``genai_analysis`` step: analyse one machine-window's curated tables, audited and cached.

Every analysis is a row of the ``genai_analysis`` table (prompt, answer, parsed findings,
tokens, latency, cost). The step reads its own table for the window as an optional input: a
row with the same cache key (provider + model + prompt hash) answers a rerun without calling
the API. When the provider fails after its retries, the failure is recorded and the offline
analyst answers instead, flagged ``status = 'fallback'``, so the pipeline carries on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeAlias, get_args

import pandas as pd
from pydantic import Field

from meshinsights.errors import ConfigError, StepError
from meshinsights.genai import offline
from meshinsights.genai.client import (
    ClientConfig,
    Completion,
    GenAIError,
    complete,
    estimate_cost,
)
from meshinsights.genai.credentials import DEFAULT_CONN_ID, Credentials, Provider, resolve
from meshinsights.genai.models import GENAI_SCHEMA
from meshinsights.genai.prompt import PROMPT_VERSION, Prompt, build_prompt, is_absent
from meshinsights.model import Window
from meshinsights.steps.params import NonNegative, Positive, PositiveInt
from meshinsights.steps.registry import Resources, step

__all__ = ["genai_analysis", "OPTIONAL_INPUTS", "GENAI_SCHEMA"]

#: The model call a run may inject (``resources["genai_client"]``): complete()'s signature.
GenAIClient: TypeAlias = Callable[[ClientConfig, Credentials, str, str], Completion]

logger = logging.getLogger(__name__)

_TABLES = ("summary", "variance", "thresholds", "issues", "anomalies", "forecasts", "events")
OPTIONAL_INPUTS = [
    "variance",
    "thresholds",
    "issues",
    "anomalies",
    "forecasts",
    "events",
    "genai_analysis",
]
Structured = Literal["json_schema", "json_object", "none"]
_STRUCTURED: tuple[str, ...] = get_args(Structured)
#: The sampling temperature range the OpenAI API accepts.
Temperature = Annotated[float, Field(ge=0, le=2)]


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's rows in an order fixed by their values (time first).

    Reads sort by time, and rows sharing a timestamp come back in file order, which a
    compaction or a batched write changes; the prompt (and so the cache key and the bill)
    must not change with it.
    """
    if is_absent(frame) or len(frame) < 2:
        return frame
    cols = (["ts"] if "ts" in frame.columns else []) + [c for c in frame.columns if c != "ts"]
    # Object cells (None among text, lists, dicts) may not compare: they sort by their text.
    keys = pd.DataFrame(
        {
            i: frame[c].astype(str) if frame[c].dtype == object else frame[c]
            for i, c in enumerate(cols)
        }
    ).reset_index(drop=True)
    order = keys.sort_values(list(keys.columns), kind="stable", na_position="last").index
    return frame.iloc[order].reset_index(drop=True)


def _fingerprint(frame: pd.DataFrame) -> str:
    body = frame.drop(columns=[c for c in ("machine_id", "month") if c in frame.columns])
    try:
        digest = pd.util.hash_pandas_object(body, index=False).to_numpy().tobytes()
    except TypeError:  # unhashable cells (lists, dicts)
        digest = body.to_json(orient="split", date_format="iso").encode()
    h = hashlib.sha256("|".join(map(str, body.columns)).encode())
    h.update(digest)
    return h.hexdigest()[:16]


def _inputs(tables: dict[str, pd.DataFrame]) -> tuple[str, str]:
    info = {
        name: "absent" if is_absent(f) else {"rows": len(f), "hash": _fingerprint(f)}
        for name, f in sorted(tables.items())
    }
    text = json.dumps(info, sort_keys=True)
    return text, hashlib.sha256(text.encode()).hexdigest()


def _cache_key(provider: str, model: str, content_hash: str) -> str:
    return hashlib.sha256(f"{provider}\0{model}\0{content_hash}".encode()).hexdigest()


def _base_row(prompt: Prompt, window: Window, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in GENAI_SCHEMA.names if name != "machine_id"}
    row.update(
        ts=pd.Timestamp(window.start),
        window_end=pd.Timestamp(window.end),
        analyzed_at=pd.Timestamp.now(tz="UTC"),
        current=True,
        prompt_hash=prompt.hash,
        prompt_version=PROMPT_VERSION,
        system_prompt=prompt.system,
        user_prompt=prompt.user,
        prompt_tokens_est=prompt.tokens,
        sections=prompt.stats_json(),
    )
    row.update(fields)
    return row


def _offline_fields(tables: dict[str, pd.DataFrame], window: Window) -> dict[str, Any]:
    started = time.perf_counter()
    analysis = offline.analyze(tables, window=window)
    text = analysis.model_dump_json()
    return dict(
        provider="offline",
        model=offline.OFFLINE_MODEL,
        response=text,
        parse_status="offline",
        findings=text,
        summary=analysis.summary,
        overall_severity=analysis.overall_severity,
        attempts=0,
        retry_waits="[]",
        latency_s=round(time.perf_counter() - started, 4),
        estimated_cost_usd=0.0,
    )


def _llm_fields(
    config: ClientConfig,
    creds: Credentials,
    prompt: Prompt,
    prices: tuple[float | None, float | None],
    client: GenAIClient,
) -> dict[str, Any]:
    done = client(config, creds, prompt.system, prompt.user)
    return dict(
        provider=config.provider,
        model=done.model,
        response=done.content,
        parse_status=done.parse_status,
        findings=done.analysis.model_dump_json(),
        summary=done.analysis.summary,
        overall_severity=done.analysis.overall_severity,
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        latency_s=round(done.latency_s, 4),
        attempts=done.attempts,
        retry_waits=json.dumps(done.waits),
        estimated_cost_usd=estimate_cost(
            done.model,
            done.prompt_tokens,
            done.completion_tokens,
            price_in=prices[0],
            price_out=prices[1],
        ),
    )


def _split(previous: pd.DataFrame, window: Window) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stored rows of exactly this window, and rows of other windows inside it (kept as is)."""
    cols = [c for c in GENAI_SCHEMA.names if c != "machine_id"]
    if is_absent(previous) or previous.empty:
        empty = pd.DataFrame(columns=cols)
        return empty, empty
    if window.run is not None:  # read by run: every stored row is this run's, whatever span
        return previous.loc[:, cols], previous.iloc[:0].loc[:, cols]
    same = (previous["ts"] == pd.Timestamp(window.start)) & (
        previous["window_end"] == pd.Timestamp(window.end)
    )
    return previous.loc[same, cols], previous.loc[~same, cols]


def _history(
    same: pd.DataFrame, others: pd.DataFrame, keep: int, new: dict[str, Any] | None, key: str
) -> pd.DataFrame:
    """This window's analyses, newest first (at most ``keep``) with one current, then others."""
    rows = [pd.DataFrame([new], columns=same.columns)] if new is not None else []
    out = pd.concat([*rows, same], ignore_index=True) if len(same) else rows[0]
    out = out.sort_values("analyzed_at", ascending=False, kind="stable").reset_index(drop=True)
    if new is not None:
        out = out.head(max(keep, 1))
        out["current"] = out.index == 0
    else:  # a cache hit: the newest ok row with that key becomes current, nothing else changes
        hits = out.index[(out["cache_key"] == key) & (out["status"] == "ok")]
        out["current"] = out.index == hits[0]
    return pd.concat([out, others], ignore_index=True) if len(others) else out


def _has_answer(same: pd.DataFrame, key: str) -> bool:
    """Whether the window's stored analyses hold a successful answer under this cache key."""
    return bool(((same["cache_key"] == key) & (same["status"] == "ok")).any())


def _check(provider: str, structured: str, max_attempts: int, timeout: float) -> None:
    if structured not in _STRUCTURED:
        raise ConfigError(f"genai structured={structured!r}; use one of {list(_STRUCTURED)}")
    if max_attempts < 1 or timeout <= 0:
        raise ConfigError(
            f"genai max_attempts={max_attempts} / timeout={timeout}: need "
            "max_attempts >= 1 and timeout > 0"
        )


@step(
    inputs=["summary", *OPTIONAL_INPUTS],
    output="genai_analysis",
    schema=GENAI_SCHEMA,
    optional=OPTIONAL_INPUTS,
)
def genai_analysis(
    summary: pd.DataFrame,
    variance: pd.DataFrame,
    thresholds: pd.DataFrame,
    issues: pd.DataFrame,
    anomalies: pd.DataFrame,
    forecasts: pd.DataFrame,
    events: pd.DataFrame,
    genai_analysis: pd.DataFrame,
    *,
    provider: Provider = "auto",
    model: str = "gpt-4o-mini",
    temperature: Temperature | None = 0.2,
    max_tokens: PositiveInt = 800,
    prompt_budget: PositiveInt = 6000,
    max_rows: PositiveInt = 40,
    conn_id: str | None = DEFAULT_CONN_ID,
    api_key_env: str | None = None,
    base_url: str | None = None,
    azure_endpoint: str | None = None,
    api_version: str | None = None,
    timeout: Positive = 30.0,
    max_attempts: PositiveInt = 4,
    backoff_base: NonNegative = 0.5,
    max_retry_after: NonNegative = 60.0,
    structured: Structured = "json_schema",
    price_in_per_1m: NonNegative | None = None,
    price_out_per_1m: NonNegative | None = None,
    keep_history: PositiveInt = 10,
    window: Window | None = None,
    machine_id: str | None = None,
    resources: Resources | None = None,
) -> pd.DataFrame:
    """Findings, severity and recommended actions for the window, by an LLM or offline rules.

    The one I/O, the model call, goes through ``resources["genai_client"]`` when the runner
    supplies it (a callable like :func:`meshinsights.genai.client.complete`; tests pass a
    fake), else the real client; everything else — prompt, cache, audit row — is pure.
    """
    if window is None:
        raise StepError("genai_analysis needs the run window (the runner passes it)")
    _check(provider, structured, max_attempts, timeout)
    frames = (summary, variance, thresholds, issues, anomalies, forecasts, events)
    # One row order for the same rows (see _canonical): the prompt and the cache key follow it.
    tables = {name: _canonical(f) for name, f in zip(_TABLES, frames, strict=True)}
    prompt = build_prompt(
        tables, machine_id=machine_id, window=window, budget=prompt_budget, max_rows=max_rows
    )
    chosen, creds = resolve(
        provider,
        conn_id=conn_id,
        api_key_env=api_key_env,
        base_url=base_url,
        azure_endpoint=azure_endpoint,
        api_version=api_version,
    )
    config = ClientConfig(
        chosen,
        model,
        temperature,
        max_tokens,
        timeout,
        max_attempts,
        backoff_base,
        max(backoff_base, 8.0),
        max_retry_after,
        structured,
    )
    requested = provider if provider != "auto" else f"auto:{chosen}"
    prices = (price_in_per_1m, price_out_per_1m)
    return _analyse(
        tables,
        prompt,
        window,
        config,
        creds,
        genai_analysis,
        requested=requested,
        keep=keep_history,
        prices=prices,
        machine_id=machine_id,
        client=(resources or {}).get("genai_client") or complete,
    )


def _analyse(
    tables: dict[str, pd.DataFrame],
    prompt: Prompt,
    window: Window,
    config: ClientConfig,
    creds: Credentials | None,
    previous: pd.DataFrame,
    *,
    requested: str,
    keep: int,
    prices: tuple[float | None, float | None],
    machine_id: str | None,
    client: GenAIClient = complete,
) -> pd.DataFrame:
    """The cached answer when one matches, else a fresh one appended to the window's history."""
    input_tables, input_hash = _inputs(tables)
    is_offline = config.provider == "offline" or creds is None
    key = _cache_key(
        config.provider,
        offline.OFFLINE_MODEL if is_offline else config.model,
        input_hash if is_offline else prompt.hash,
    )
    same, others = _split(previous, window)
    if _has_answer(same, key):
        logger.info(
            "genai %s %s: cache hit (provider=%s model=%s prompt=%s); no API call",
            machine_id,
            window,
            config.provider,
            config.model,
            prompt.hash[:12],
        )
        return _history(same, others, keep, None, key)
    if is_offline:
        fields = {**_offline_fields(tables, window), "status": "ok"}
    else:
        assert creds is not None
        fields = _ask(config, creds, prompt, tables, window, prices, client)
    row = _base_row(
        prompt,
        window,
        cache_key=key,
        input_tables=input_tables,
        input_hash=input_hash,
        requested_provider=requested,
        requested_model=config.model,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        **fields,
    )
    logger.info(
        "genai %s %s: provider=%s model=%s status=%s prompt=%s tokens≈%d %.2fs",
        machine_id,
        window,
        row["provider"],
        row["model"],
        row["status"],
        prompt.hash[:12],
        prompt.tokens,
        row["latency_s"] or 0.0,
    )
    return _history(same, others, keep, row, key)


def _ask(
    config: ClientConfig,
    creds: Credentials,
    prompt: Prompt,
    tables: dict[str, pd.DataFrame],
    window: Window,
    prices: tuple[float | None, float | None],
    client: GenAIClient,
) -> dict[str, Any]:
    """The provider's answer, or the offline analyst's flagged as a fallback with the reason."""
    try:
        if creds.api_key is None:
            raise GenAIError(
                f"no API key for {config.provider}: {creds.source} is not set; set it "
                "or create the Airflow Connection named by the genai param conn_id"
            )
        return {**_llm_fields(config, creds, prompt, prices, client), "status": "ok"}
    except GenAIError as exc:
        logger.warning(
            "genai %s %s failed, using the offline analyst: %s", config.provider, config.model, exc
        )
        fields = _offline_fields(tables, window)
        fields.update(
            status="fallback",
            error=str(exc)[:1000],
            attempts=exc.attempts,
            retry_waits=json.dumps(exc.waits),
            latency_s=round(exc.latency_s + fields["latency_s"], 4),
        )
        return fields
