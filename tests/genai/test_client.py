"""The client edge: the real ``openai`` SDK against a loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import time

import pytest

from meshinsights.errors import ConfigError
from meshinsights.genai.client import (
    ClientConfig,
    GenAIError,
    complete,
    estimate_cost,
    retry_after,
)
from meshinsights.genai.credentials import Credentials, resolve
from meshinsights.genai.models import RESPONSE_SCHEMA

from .fake_openai import Reply, analysis_json, completion

KEY = "sk-test-Secret-0123456789"


def creds_for(fake) -> Credentials:
    return Credentials(KEY, "test", base_url=fake.base_url)


def config(provider: str = "openai", **kw) -> ClientConfig:
    kw = {"timeout": 5.0, "max_attempts": 3, "backoff_base": 0.05, **kw}
    return ClientConfig(provider, "gpt-4o-mini", **kw)


def test_success_sends_the_schema_and_parses_the_answer(fake):
    result = complete(config(temperature=0.1, max_tokens=321), creds_for(fake), "SYS", "USER")
    assert result.parse_status == "structured" and result.attempts == 1 and result.waits == []
    assert result.analysis.overall_severity == "high"
    assert result.analysis.findings[0].title == "Short cycling"
    assert (result.prompt_tokens, result.completion_tokens) == (812, 96)
    [req] = fake.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.message("system") == "SYS" and req.message("user") == "USER"
    assert req.body["response_format"]["type"] == "json_schema"
    assert req.body["response_format"]["json_schema"]["schema"] == RESPONSE_SCHEMA
    assert req.body["response_format"]["json_schema"]["strict"] is True
    assert req.body["max_completion_tokens"] == 321 and req.body["temperature"] == 0.1
    assert "max_tokens" not in req.body


def test_compatible_servers_get_max_tokens_and_json_object_mode(fake):
    complete(config("compatible", structured="json_object", temperature=None), creds_for(fake),
             "S", "U")
    body = fake.requests[0].body
    assert body["max_tokens"] == 800 and "max_completion_tokens" not in body
    assert body["response_format"] == {"type": "json_object"} and "temperature" not in body


def test_429_then_success_honours_retry_after(fake):
    fake.push(Reply(429, headers={"retry-after": "1"}))
    started = time.perf_counter()
    result = complete(config(), creds_for(fake), "S", "U")
    elapsed = time.perf_counter() - started
    assert result.attempts == 2 and result.waits == [1.0]
    gap = fake.requests[1].at - fake.requests[0].at
    assert 1.0 <= gap < 2.5, gap  # the server's 1 s, not the 0.05 s backoff
    assert elapsed >= 1.0 and result.latency_s >= 1.0


def test_retry_after_ms_is_preferred(fake):
    fake.push(Reply(503, headers={"retry-after-ms": "300", "retry-after": "30"}))
    result = complete(config(), creds_for(fake), "S", "U")
    assert result.waits == [0.3] and result.attempts == 2


def test_5xx_until_retries_run_out(fake):
    fake.default = Reply(500)
    with pytest.raises(GenAIError, match="failed after 3 attempts: HTTP 500") as info:
        complete(config(backoff_base=0.1), creds_for(fake), "S", "U")
    assert len(fake.requests) == 3 and info.value.attempts == 3
    first, second = info.value.waits
    assert 0.075 <= first <= 0.1 and 0.15 <= second <= 0.2  # exponential, jittered down ≤25%
    assert KEY not in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422])
def test_other_4xx_fail_at_once(fake, status):
    fake.push(Reply(status))
    with pytest.raises(GenAIError, match=f"not retried: HTTP {status}"):
        complete(config(), creds_for(fake), "S", "U")
    assert len(fake.requests) == 1


def test_a_retry_after_beyond_the_limit_gives_up(fake):
    fake.push(Reply(429, headers={"retry-after": "120"}))
    with pytest.raises(GenAIError, match="retry after 120s, more than max_retry_after=60s"):
        complete(config(), creds_for(fake), "S", "U")
    assert len(fake.requests) == 1


def test_timeout_is_retried_then_reported(fake):
    fake.default = Reply(delay=1.5)
    started = time.perf_counter()
    with pytest.raises(GenAIError, match="after 2 attempts: request timed out") as info:
        complete(config(timeout=0.4, max_attempts=2), creds_for(fake), "S", "U")
    elapsed = time.perf_counter() - started
    assert len(fake.requests) == 2 and info.value.latency_s == pytest.approx(elapsed, abs=0.05)
    assert 0.8 <= elapsed < 1.5  # two 0.4 s timeouts and one short backoff, never the 1.5 s


def test_timeout_then_success(fake):
    fake.push(Reply(delay=1.0))
    result = complete(config(timeout=0.3), creds_for(fake), "S", "U")
    assert result.attempts == 2 and result.parse_status == "structured"


@pytest.mark.parametrize(
    ("content", "status", "summary"),
    [
        ("The unit looks healthy; no action needed.", "text",
         "The unit looks healthy; no action needed."),
        ("Sure! ```json\n" + analysis_json("Fenced.") + "\n```", "repaired", "Fenced."),
        ('{"summary": "truncated", "overall_sev', "text", '{"summary": "truncated", "overall_sev'),
        (json.dumps({"summary": "no severity"}), "text", '{"summary": "no severity"}'),
    ],
    ids=["prose", "fenced-json", "truncated-json", "schema-violation"],
)
def test_malformed_output_falls_back_to_plain_text(fake, content, status, summary):
    fake.push(Reply(content=content))
    result = complete(config(), creds_for(fake), "S", "U")
    assert result.parse_status == status and result.analysis.summary == summary
    assert result.content == content
    if status == "text":
        assert result.analysis.findings == [] and result.analysis.overall_severity == "info"


def test_an_empty_answer_is_an_error(fake):
    fake.push(Reply(body=completion("", finish_reason="length")))
    with pytest.raises(GenAIError, match="empty answer .finish_reason=length"):
        complete(config(), creds_for(fake), "S", "U")


def test_azure_uses_the_deployment_route_and_api_key_header(fake, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    provider, creds = resolve("azure", azure_endpoint=fake.root, api_version="2024-10-21")
    assert provider == "azure" and creds.source == "env AZURE_OPENAI_API_KEY"
    result = complete(ClientConfig("azure", "my-deployment", timeout=5), creds, "S", "U")
    assert result.parse_status == "structured"
    [req] = fake.requests
    assert req.path == "/openai/deployments/my-deployment/chat/completions"
    assert req.query["api-version"] == ["2024-10-21"] and req.headers["api-key"] == KEY


def test_resolve_without_a_key_is_offline():
    assert resolve("auto") == ("offline", None)
    assert resolve("offline") == ("offline", None)


def test_resolve_reads_the_key_from_env_or_a_connection(monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    provider, creds = resolve("auto", api_key_env="MY_KEY")
    assert (provider, creds.api_key, creds.source) == ("openai", KEY, "env MY_KEY")
    assert KEY not in repr(creds)
    conn = {"conn_type": "openai", "password": "sk-conn", "host": "http://127.0.0.1:9/v1"}
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_GENAI", json.dumps(conn))
    provider, creds = resolve("auto")
    assert (provider, creds.api_key, creds.base_url) == ("compatible", "sk-conn",
                                                         "http://127.0.0.1:9/v1")
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_GENAI",
                       "azure://:sk-az@https%3A%2F%2Fres.openai.azure.com?api_version=2025-01-01")
    provider, creds = resolve("auto")
    assert (provider, creds.api_key, creds.azure_endpoint, creds.api_version) == (
        "azure", "sk-az", "https://res.openai.azure.com", "2025-01-01")


def test_resolve_reads_the_local_env_file_like_source_connections(tmp_path, monkeypatch):
    """The GenAI key and connection follow the same lookup as source connections: environment,
    then the local .env file (never copied into the environment), and the key is redacted."""
    from meshinsights.credentials import redact

    env_file = tmp_path / ".env"
    monkeypatch.setenv("MESHINSIGHTS_ENV_FILE", str(env_file))
    env_file.write_text("OPENAI_API_KEY=sk-from-dotenv-123\n")
    provider, creds = resolve("auto")
    assert (provider, creds.api_key, creds.source) == ("openai", "sk-from-dotenv-123",
                                                       "env OPENAI_API_KEY")
    assert "OPENAI_API_KEY" not in os.environ
    assert redact("HTTP 401: bad key sk-from-dotenv-123") == "HTTP 401: bad key ***"
    conn = {"conn_type": "openai", "password": "sk-dotenv-conn", "host": "http://127.0.0.1:9/v1"}
    env_file.write_text(f"AIRFLOW_CONN_MESHINSIGHTS_GENAI='{json.dumps(conn)}'\n")
    provider, creds = resolve("auto")
    assert (provider, creds.api_key, creds.base_url) == ("compatible", "sk-dotenv-conn",
                                                         "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-wins-456")  # the environment comes first
    env_file.write_text("OPENAI_API_KEY=sk-from-dotenv-123\n")
    assert resolve("auto")[1].api_key == "sk-env-wins-456"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "gemini"}, "provider 'gemini' is unknown"),
        ({"provider": "compatible", "base_url": "http://u:sk-x@host/v1"}, "must not embed"),
    ],
    ids=["unknown-provider", "key-in-url"],
)
def test_resolve_rejects_bad_settings(kwargs, message):
    provider = kwargs.pop("provider")
    with pytest.raises(ConfigError, match=message):
        resolve(provider, **kwargs)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, None), ({"retry-after": "2"}, 2.0), ({"retry-after": "0.5"}, 0.5),
     ({"retry-after-ms": "250"}, 0.25), ({"retry-after": "soon"}, None)],
    ids=["none", "seconds", "fraction", "ms", "garbage"],
)
def test_retry_after_header(headers, expected):
    assert retry_after(headers) == expected


def test_retry_after_http_date():
    from email.utils import formatdate

    assert 8 <= retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10


def test_estimate_cost():
    assert estimate_cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)
    assert estimate_cost("gpt-4o", 1000, 1000) == pytest.approx(0.0125)
    assert estimate_cost("my-local-llama", 1000, 1000) is None
    assert estimate_cost("my-local-llama", 1000, 1000, price_in=1.0, price_out=2.0) == 0.003
    assert estimate_cost("gpt-4o", None, 10) is None


@pytest.mark.airflow
def test_inside_airflow_the_connection_api_is_used(monkeypatch):
    """Airflow's own Connection lookup (secrets backends included) supplies key and endpoint."""
    import airflow.sdk  # noqa: F401  # loaded, as in a task process

    from meshinsights.genai import credentials

    conn = {"conn_type": "openai", "password": "sk-airflow", "host": "https://llm.example/v1",
            "extra": {"api_version": "2025-01-01"}}
    monkeypatch.setenv("AIRFLOW_CONN_GENAI_AF_TEST", json.dumps(conn))
    monkeypatch.setattr(credentials, "_conn_from_env", lambda conn_id: None)
    provider, creds = resolve("auto", conn_id="genai_af_test")
    assert (provider, creds.api_key, creds.base_url, creds.source) == (
        "compatible", "sk-airflow", "https://llm.example/v1", "connection genai_af_test")
    assert resolve("auto", conn_id="genai_af_missing") == ("offline", None)
