"""The genai_analysis step: audit rows, the cache, fallback on failure, injection stays fenced."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from meshinsights.engine.runner import run_step
from meshinsights.genai.models import GENAI_SCHEMA, Analysis
from meshinsights.genai.offline import DISCLAIMER, OFFLINE_MODEL
from meshinsights.genai.prompt import SYSTEM_PROMPT, build_prompt
from meshinsights.genai.step import genai_analysis
from meshinsights.model import Window
from meshinsights.steps.registry import get_step

from .fake_openai import Reply
from .test_prompt import INJECTION, events_frame

KEY = "sk-test-NeverStoreMe-42"
ABSENT = pd.DataFrame(columns=["machine_id", "ts"])


def analyse(summary, window, previous=None, events=None, **params):
    frames = {name: ABSENT for name in ("variance", "thresholds", "issues", "anomalies",
                                        "forecasts", "events", "genai_analysis")}
    frames["events"] = ABSENT if events is None else events
    frames["genai_analysis"] = ABSENT if previous is None else previous
    out = genai_analysis(summary, **frames, window=window, machine_id="hvac-001", **params)
    return out.assign(machine_id="hvac-001")  # what the runner adds


def llm(fake, **extra):
    return {"provider": "compatible", "base_url": fake.base_url, "api_key_env": "TEST_GENAI_KEY",
            "max_attempts": 3, "backoff_base": 0.01, "timeout": 5.0, **extra}


@pytest.fixture
def key(monkeypatch):
    """The provider key, in an environment variable only."""
    monkeypatch.setenv("TEST_GENAI_KEY", KEY)


def assert_no_secret(frame: pd.DataFrame) -> None:
    for col in frame.columns:
        assert not frame[col].astype(str).str.contains(KEY, regex=False).any(), col


def test_offline_is_the_default_without_a_key(summary, window):
    out = analyse(summary, window)
    assert list(out.columns[:-1]) == [c for c in GENAI_SCHEMA.names if c != "machine_id"]
    [row] = out.to_dict("records")
    assert (row["status"], row["provider"], row["requested_provider"], row["model"]) == (
        "ok", "offline", "auto:offline", OFFLINE_MODEL)
    assert row["parse_status"] == "offline" and row["current"] and row["attempts"] == 0
    assert row["ts"] == pd.Timestamp(window.start) and row["window_end"] == pd.Timestamp(window.end)
    analysis = Analysis.model_validate_json(row["findings"])
    assert analysis.summary.startswith(DISCLAIMER) and row["summary"] == analysis.summary
    expected = build_prompt({"summary": summary}, machine_id="hvac-001", window=window)
    assert (row["prompt_hash"], row["user_prompt"]) == (expected.hash, expected.user)
    assert row["estimated_cost_usd"] == 0.0 and row["prompt_tokens"] is None


def test_llm_answer_is_audited(fake, key, summary, window):
    out = analyse(summary, window, **llm(fake, price_in_per_1m=1.0, price_out_per_1m=4.0))
    [row] = out.to_dict("records")
    assert (row["status"], row["provider"], row["model"], row["parse_status"]) == (
        "ok", "compatible", "gpt-4o-mini", "structured")
    assert (row["prompt_tokens"], row["completion_tokens"], row["attempts"]) == (812, 96, 1)
    assert row["estimated_cost_usd"] == pytest.approx((812 * 1.0 + 96 * 4.0) / 1e6)
    assert row["overall_severity"] == "high" and row["latency_s"] > 0
    [req] = fake.requests
    assert req.message("user") == row["user_prompt"] and req.message("system") == SYSTEM_PROMPT
    assert req.body["max_tokens"] == 800 and req.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(row["findings"])["findings"][0]["title"] == "Short cycling"
    assert_no_secret(out)


def test_rerun_with_unchanged_inputs_reuses_the_answer(fake, key, summary, window):
    first = analyse(summary, window, **llm(fake))
    again = analyse(summary, window, previous=first, **llm(fake))
    assert len(fake.requests) == 1  # the server saw no second request
    pd.testing.assert_frame_equal(again, first)
    changed = summary.assign(mean=summary["mean"] + 1)
    third = analyse(changed, window, previous=again, **llm(fake))
    assert len(fake.requests) == 2 and len(third) == 2
    assert third["current"].tolist() == [True, False]
    assert third.loc[1, "prompt_hash"] == first.loc[0, "prompt_hash"]
    back = analyse(summary, window, previous=third, **llm(fake))  # the first answer again
    assert len(fake.requests) == 2 and back["current"].tolist() == [False, True]
    other_model = analyse(summary, window, previous=back, **llm(fake, model="gpt-4.1-mini"))
    assert len(fake.requests) == 3 and other_model.loc[0, "model"] == "gpt-4.1-mini"


def test_the_same_rows_in_another_order_are_a_cache_hit(fake, key, summary, window):
    """Rows sharing a timestamp come back in file order, which compaction or a batched run
    changes: that alone must not cost a new call (nor a new offline row)."""
    assert summary["ts"].nunique() == 1 and len(summary) == 2
    shuffled = summary.iloc[::-1].reset_index(drop=True)
    first = analyse(summary, window, **llm(fake))
    again = analyse(shuffled, window, previous=first, **llm(fake))
    assert len(fake.requests) == 1
    pd.testing.assert_frame_equal(again, first)
    offline = analyse(summary, window)
    pd.testing.assert_frame_equal(analyse(shuffled, window, previous=offline), offline)
    assert len(analyse(summary.assign(mean=0.0), window, previous=offline)) == 2  # a change


def test_canonical_order_copes_with_cells_that_do_not_compare():
    from meshinsights.genai.step import _canonical

    ts = pd.Timestamp("2024-01-01", tz="UTC")
    frame = pd.DataFrame(
        {"ts": [ts] * 3, "attrs": [{"x": 1}, None, {"y": 2}], "v": [1.0, None, 0.5]}
    )
    ordered = _canonical(frame)
    pd.testing.assert_frame_equal(_canonical(frame.iloc[::-1]), ordered)
    assert ordered["attrs"].tolist() == [{"x": 1}, {"y": 2}, None]


def test_injected_log_line_reaches_the_model_only_inside_the_fence(fake, key, summary, window):
    events = events_frame(window, ["compressor on", INJECTION, "compressor off"])
    analyse(summary, window, events=events, **llm(fake))
    user = fake.requests[0].message("user")
    nonce = re.search(r"<<<DEVICE_DATA_BEGIN ([0-9a-f]{12})>>>", user).group(1)
    before, rest = user.split(f"<<<DEVICE_DATA_BEGIN {nonce}>>>")
    inside, after = rest.split(f"<<<DEVICE_DATA_END {nonce}>>>")
    assert "ignore all previous instructions" in inside
    assert "ignore all previous instructions" not in before + after
    assert "ignore all previous instructions" not in fake.requests[0].message("system")
    assert user.count("<<<") == 2 and "UNTRUSTED DEVICE DATA" in before


def test_server_errors_fall_back_to_the_offline_analyst_and_are_retried_next_run(
        fake, key, summary, window):
    fake.default = Reply(500)
    out = analyse(summary, window, **llm(fake))
    [row] = out.to_dict("records")
    assert (row["status"], row["provider"], row["requested_provider"], row["parse_status"]) == (
        "fallback", "offline", "compatible", "offline")
    assert "failed after 3 attempts: HTTP 500" in row["error"] and row["attempts"] == 3
    assert len(json.loads(row["retry_waits"])) == 2 and len(fake.requests) == 3
    assert row["summary"].startswith(DISCLAIMER) and row["requested_model"] == "gpt-4o-mini"
    fake.default = Reply()  # the provider recovers: a fallback is never served from the cache
    again = analyse(summary, window, previous=out, **llm(fake))
    assert len(fake.requests) == 4
    assert again[["status", "current"]].values.tolist() == [["ok", True], ["fallback", False]]
    assert_no_secret(pd.concat([out, again]))


def test_explicit_provider_without_a_key_falls_back_with_the_fix(summary, window):
    [row] = analyse(summary, window, provider="openai").to_dict("records")
    assert row["status"] == "fallback" and row["provider"] == "offline"
    assert "no API key for openai: env OPENAI_API_KEY is not set" in row["error"]


def test_history_is_bounded(fake, key, summary, window):
    out = None
    for i in range(4):
        out = analyse(summary.assign(mean=summary["mean"] + i), window, previous=out,
                      **llm(fake, keep_history=3))
    assert len(out) == 3 and out["current"].sum() == 1 and len(fake.requests) == 4


def test_run_step_twice_uses_the_stored_answer_and_touches_nothing_else(
        fake, key, store, summary, window):
    other = Window.parse("2024-01-02", "2024-01-03")
    spec = get_step("genai_analysis")
    for mid, w in (("hvac-001", window), ("hvac-002", window), ("hvac-001", other)):
        frame = summary.assign(machine_id=mid, ts=pd.Timestamp(w.start),
                               window_end=pd.Timestamp(w.end))
        store.overwrite("minimal", "summary", frame, machine_ids=mid, window=w)
        run_step(spec, mid, w, store, namespace="minimal", params=llm(fake))
    assert len(fake.requests) == 3
    before = store.read_all("minimal", "genai_analysis").sort_values(["machine_id", "ts"])
    summary_run = run_step(spec, "hvac-001", window, store, namespace="minimal", params=llm(fake))
    after = store.read_all("minimal", "genai_analysis").sort_values(["machine_id", "ts"])
    assert len(fake.requests) == 3 and summary_run["rows_out"] == 1
    pd.testing.assert_frame_equal(after.reset_index(drop=True), before.reset_index(drop=True))
    assert after.groupby(["machine_id", "ts"]).size().tolist() == [1, 1, 1]


def test_a_wider_window_keeps_the_daily_analyses_inside_it_as_they_are(summary, window):
    day1 = analyse(summary, window)
    day2_window = Window.parse("2024-01-02", "2024-01-03")
    day2 = analyse(summary.assign(ts=pd.Timestamp(day2_window.start)), day2_window)
    both = Window.parse("2024-01-01", "2024-01-03")
    out = analyse(summary, both, previous=pd.concat([day1, day2], ignore_index=True))
    assert len(out) == 3 and out["current"].all()
    assert out.loc[0, "window_end"] == pd.Timestamp(both.end)
    pd.testing.assert_frame_equal(out.iloc[1:].reset_index(drop=True),
                                  pd.concat([day1, day2], ignore_index=True))


def test_a_misconfigured_azure_provider_falls_back(key, summary, window):
    [row] = analyse(summary, window, provider="azure", api_key_env="TEST_GENAI_KEY").to_dict(
        "records")
    assert row["status"] == "fallback"
    assert "Azure OpenAI needs an endpoint" in row["error"]


# ---------------------------------------------------------------- an injected client, no server


class FakeClient:
    """What a run may inject as ``resources["genai_client"]``: complete()'s signature."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, str, str | None]] = []

    def __call__(self, config, creds, system, user):
        from meshinsights.genai.client import Completion

        self.calls.append((system, user, creds.api_key))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        analysis = Analysis.model_validate({
            "summary": outcome, "overall_severity": "medium", "findings": [],
            "recommended_actions": []})
        return Completion(content=analysis.model_dump_json(), analysis=analysis,
                          parse_status="structured", model="fake-model-1", prompt_tokens=100,
                          completion_tokens=20, latency_s=0.25, attempts=2, waits=[0.5],
                          finish_reason="stop")


def test_an_injected_client_makes_the_step_testable_without_a_server(key, summary, window):
    """The step's one I/O goes through the injected client: its answer is audited, a rerun is
    a cache hit (no second call), and a failure falls back — no HTTP server involved."""
    from meshinsights.genai.client import GenAIError

    client = FakeClient("Cycling looks short.", GenAIError("boom", attempts=3, waits=[1, 2]))
    params = {"provider": "compatible", "base_url": "http://unused.invalid/v1",
              "api_key_env": "TEST_GENAI_KEY", "price_in_per_1m": 1.0, "price_out_per_1m": 2.0}
    out = analyse(summary, window, resources={"genai_client": client}, **params)
    [row] = out.to_dict("records")
    assert (row["status"], row["model"], row["summary"], row["attempts"]) == (
        "ok", "fake-model-1", "Cycling looks short.", 2)
    assert row["retry_waits"] == "[0.5]" and row["estimated_cost_usd"] == pytest.approx(140e-6)
    [(system, user, api_key)] = client.calls
    assert (system, user, api_key) == (SYSTEM_PROMPT, row["user_prompt"], KEY)
    assert_no_secret(out)

    again = analyse(summary, window, previous=out, resources={"genai_client": client}, **params)
    assert len(client.calls) == 1  # same inputs: the stored answer, no call
    pd.testing.assert_frame_equal(again, out)

    changed = summary.assign(mean=summary["mean"] + 1)
    out = analyse(changed, window, previous=out, resources={"genai_client": client}, **params)
    assert len(client.calls) == 2
    newest = out[out["current"]].iloc[0]
    assert (newest["status"], newest["error"], newest["attempts"]) == ("fallback", "boom", 3)
    assert newest["retry_waits"] == "[1, 2]" and len(out) == 2


def test_the_runner_passes_its_resources_to_the_step(key, store, summary, window):
    client = FakeClient("From the runner's client.")
    store.overwrite("minimal", "summary", summary, machine_ids="hvac-001", window=window)
    spec = get_step("genai_analysis")
    assert "resources" in spec.wants and "resources" not in spec.param_defaults
    params = {"provider": "compatible", "base_url": "http://unused.invalid/v1",
              "api_key_env": "TEST_GENAI_KEY"}
    run_step(spec, "hvac-001", window, store, namespace="minimal", params=params,
             resources={"genai_client": client})
    assert len(client.calls) == 1
    [row] = store.read_all("minimal", "genai_analysis").to_dict("records")
    assert row["summary"] == "From the runner's client." and row["model"] == "fake-model-1"
