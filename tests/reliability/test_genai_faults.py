"""GenAI faults in a real pipeline run: the API down, slow, dropping the connection, or garbage.

The real ``openai`` client talks to a loopback OpenAI-compatible server (tests/genai's fake,
sometimes behind the fault proxy). Whatever the far end does, the pipeline finishes (a step
after ``genai`` still runs), and the ``genai_analysis`` table records what happened: a
``fallback`` row from the offline analyst with the error, the attempts and the waits — or, for
an answer that is text rather than the JSON asked for, an ``ok`` row read as ``text``. The API
key set for the run appears in none of it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshinsights.config import load_configs
from meshinsights.engine.runner import run_pipeline
from meshinsights.genai.offline import OFFLINE_MODEL
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS
from tests.genai.fake_openai import FakeOpenAI, Reply, completion
from tests.reliability.conftest import record
from tests.reliability.proxy import FaultProxy, closed_port

DAY = Window.parse("2024-01-01", "2024-01-02")
KEY = "sk-rel-9f3c1e77d2b04a5e8c61"
STEPS = ["ingest", "average_temperature", "summary", "genai", "after_genai"]


def _wrong(**fields: Any) -> dict[str, Any]:
    """A chat completion with some fields replaced by nonsense."""
    return {**completion("fine"), **fields}


#: name → (server replies, how the client reaches it, expected status, text in the error/answer)
CASES: dict[str, tuple[list[Reply], str, str, str]] = {
    "down": ([], "closed", "fallback", "connection failed"),
    "slow": ([Reply(delay=3.0)] * 2, "direct", "fallback", "request timed out"),
    "dropped": ([Reply()] * 2, "cut", "fallback", "connection failed"),
    "http_500": ([Reply(500)] * 2, "direct", "fallback", "HTTP 500"),
    "html_body": ([Reply(200, body="<html>502 Bad Gateway</html>")], "direct", "fallback",
                  "JSONDecodeError"),
    "wrong_shape": ([Reply(200, body=_wrong(choices="garbage"))], "direct", "fallback",
                    "malformed response"),
    "content_not_text": ([Reply(200, body=_wrong(choices=[{"index": 0, "finish_reason": "stop",
                                                           "message": {"content": 12345}}]))],
                         "direct", "fallback", "malformed response"),
    "usage_garbage": ([Reply(200, body=_wrong(usage="lots"))], "direct", "fallback",
                      "malformed response"),
    "no_choices": ([Reply(200, body=_wrong(choices=[]))], "direct", "fallback", "empty answer"),
    "prose_not_json": ([Reply(content="I think the unit is fine {{{ no json")], "direct", "ok",
                       "I think the unit is fine"),
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A started loopback OpenAI-compatible server."""
    with FakeOpenAI() as server:
        yield server


def _configs(tmp_path: Path, genai: dict[str, Any]) -> Path:
    """The repo configs with hvac-001's genai step pointed at the test server, plus a later step."""
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    pipeline = yaml.safe_load((configs / "pipelines" / "minimal.yaml").read_text())
    pipeline["steps"].append({"id": "after_genai", "uses": "average_temperature",
                              "output": "humidity_hourly", "params": {"metric": "humidity"}})
    (configs / "pipelines" / "minimal.yaml").write_text(yaml.safe_dump(pipeline))
    machine = yaml.safe_load((configs / "machines" / "hvac-001.yaml").read_text())
    machine["overrides"] = {"genai": genai}
    (configs / "machines" / "hvac-001.yaml").write_text(yaml.safe_dump(machine))
    return configs


def _base_url(how: str, fake: FakeOpenAI, proxy: FaultProxy) -> str:
    if how == "closed":
        return f"http://127.0.0.1:{closed_port()}/v1"
    if how == "cut":
        proxy.set("cut", cut_after=20)  # the status line starts, then the socket closes
        return f"http://127.0.0.1:{proxy.port}/v1"
    return fake.base_url


@pytest.mark.parametrize("case", list(CASES))
def test_pipeline_finishes_and_records_the_genai_failure(case, demo_env, fake, tmp_path,
                                                         monkeypatch, caplog):
    replies, how, status, text = CASES[case]
    fake.push(*replies)
    monkeypatch.setenv("REL_GENAI_KEY", KEY)
    with FaultProxy(int(fake.root.rsplit(":", 1)[1])) as proxy:
        configs = load_configs(_configs(tmp_path, {
            "provider": "compatible", "base_url": _base_url(how, fake, proxy),
            "api_key_env": "REL_GENAI_KEY", "max_attempts": 2, "backoff_base": 0.05,
            "timeout": 0.5}))
        assert configs.errors == {}
        store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
        with caplog.at_level(logging.DEBUG):
            summaries = run_pipeline(configs, "hvac-001", DAY, store)
    assert [s["step"] for s in summaries] == STEPS
    assert summaries[-1]["rows_out"] == 24  # the step after genai ran on a whole day
    [row] = store.read_all("minimal", "genai_analysis").to_dict("records")
    assert (row["status"], row["requested_provider"], row["current"]) == (status, "compatible",
                                                                          True)
    if status == "fallback":
        assert (row["provider"], row["model"]) == ("offline", OFFLINE_MODEL)
        assert text in row["error"], row["error"]
        assert row["summary"] and row["overall_severity"]
        retried = how in ("closed", "cut") or case in ("slow", "http_500")
        assert row["attempts"] == (2 if retried else 1)
        assert len(yaml.safe_load(row["retry_waits"])) == row["attempts"] - 1
    else:
        assert row["parse_status"] == "text" and text in row["summary"]
    assert KEY not in caplog.text and all(KEY not in str(v) for v in row.values())
    if how == "cut":
        assert proxy.cuts == 2
    record(f"genai_{case}", status=row["status"], attempts=row["attempts"],
           error=row["error"][:120] if isinstance(row["error"], str) else None,
           parse_status=row["parse_status"],
           steps_run=len(summaries))


def test_a_fallback_is_retried_next_run_and_replaced_by_the_answer(demo_env, fake, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("REL_GENAI_KEY", KEY)
    fake.push(Reply(503), Reply(503))
    configs = load_configs(_configs(tmp_path, {
        "provider": "compatible", "base_url": fake.base_url, "api_key_env": "REL_GENAI_KEY",
        "max_attempts": 2, "backoff_base": 0.05}))
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    run_pipeline(configs, "hvac-001", DAY, store)
    run_pipeline(configs, "hvac-001", DAY, store)  # the API is back (default reply: an answer)
    rows = store.read_all("minimal", "genai_analysis").sort_values("analyzed_at")
    assert rows["status"].tolist() == ["fallback", "ok"]
    assert rows["current"].tolist() == [False, True]  # the answer is in force, the failure kept
    assert rows["provider"].tolist() == ["offline", "compatible"] and len(fake.requests) == 3
