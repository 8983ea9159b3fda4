"""Structured run context on every MeshInsights log line; secrets never reach a log."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime

import pandas as pd
import pytest

from meshinsights.engine.logging import (
    JsonFormatter,
    current_context,
    log_context,
    mask_secret,
)
from meshinsights.engine.runner import run_step
from meshinsights.model import Window
from meshinsights.steps.registry import get_step
from meshinsights.store import DeltaStore

log = logging.getLogger("meshinsights.test_logging")


def _messages(caplog: pytest.LogCaptureFixture, prefix: str = "meshinsights") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(prefix)]


def test_context_prefixes_our_lines_and_leaves_others_alone(caplog, day: Window):
    caplog.set_level(logging.INFO)
    with log_context(run_id="r-1", machine_id="m-1", window=day):
        log.info("rows=%d", 5)
        logging.getLogger("thirdparty").info("not ours")
    log.info("outside")
    inside, outside = _messages(caplog)
    assert inside == f"[run=r-1 machine=m-1 window={day}] rows=5"
    assert outside == "outside"
    assert _messages(caplog, "thirdparty") == ["not ours"]
    record = next(r for r in caplog.records if r.getMessage() == inside)
    assert (record.run_id, record.machine_id, record.window) == ("r-1", "m-1", str(day))


def test_contexts_nest_and_do_not_leak_between_threads(caplog):
    caplog.set_level(logging.INFO)
    seen: dict[str, dict[str, str]] = {}

    def work(machine: str) -> None:
        with log_context(run_id="r", machine_id=machine):
            seen[machine] = current_context()
            log.info("work")

    with log_context(run_id="outer", machine_id=["a", "b", "c", "d", "e"]):
        assert current_context()["machine_id"] == "a,b,c,+2"
        threads = [threading.Thread(target=work, args=(m,)) for m in ("m-1", "m-2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with log_context(window="w"):
            assert current_context() == {"run_id": "outer", "machine_id": "a,b,c,+2",
                                         "window": "w"}
    assert current_context() == {}
    assert seen["m-1"]["machine_id"] == "m-1" and seen["m-2"]["machine_id"] == "m-2"
    assert sorted(_messages(caplog)) == ["[run=r machine=m-1 window=-] work",
                                         "[run=r machine=m-2 window=-] work"]


def test_url_passwords_and_registered_secrets_are_masked(caplog):
    caplog.set_level(logging.INFO)
    mask_secret("s3cr3t-token-value")
    with log_context(run_id="r", machine_id="m"):
        log.warning("connect mysql://svc:pa55word@db:3306/x failed")
        log.error("token %s rejected", "s3cr3t-token-value")
    text = "\n".join(_messages(caplog))
    assert "pa55word" not in text and "s3cr3t-token-value" not in text
    assert "mysql://svc:***@db:3306/x" in text and "token *** rejected" in text


def test_json_formatter_emits_the_context_as_fields(caplog):
    caplog.set_level(logging.INFO)
    with log_context(run_id="r-9", machine_id="m-9"):
        log.info("hello")
    (record,) = [r for r in caplog.records if r.name == log.name]
    line = json.loads(JsonFormatter().format(record))
    assert (line["run_id"], line["machine_id"], line["window"]) == ("r-9", "m-9", "-")
    assert line["message"].endswith("hello") and line["level"] == "INFO"


def test_logged_run_binds_the_runners_arguments(caplog, store: DeltaStore, day: Window):
    """``run_step`` is ``@logged_run``: the store's and the runner's lines carry its context."""
    caplog.set_level(logging.INFO)
    ts = pd.date_range(day.start, periods=120, freq="1min", tz="UTC")
    telemetry = pd.DataFrame({"machine_id": "m-1", "ts": ts, "metric": "temperature",
                              "value": 20.0, "unit": "degC",
                              "ingested_at": datetime(2024, 1, 3, tzinfo=UTC)})
    store.overwrite("p", "telemetry", telemetry, machine_ids="m-1", window=day)
    caplog.clear()
    summary = run_step(get_step("average_temperature"), "m-1", day, store,
                       namespace="p", run_id="run-42")
    assert summary["rows_out"] == 2
    lines = _messages(caplog)
    assert lines and all(m.startswith(f"[run=run-42 machine=m-1 window={day}] ") for m in lines)
    assert any("overwrote p/temperature_hourly" in m for m in lines)
    assert current_context() == {}


def test_secret_hooks_hear_each_new_secret_once_and_never_break_the_caller():
    from meshinsights.engine import logging as mlog

    heard: list[str] = []

    def boom(value: str) -> None:
        raise RuntimeError("a broken hook")

    before = list(mlog._secret_hooks)
    try:
        mlog.on_secret(heard.append)
        mlog.on_secret(heard.append)  # registering twice keeps one hook
        mlog.on_secret(boom)
        mask_secret("hook-secret-value")
        assert heard == ["hook-secret-value"]
    finally:
        mlog._secret_hooks[:] = before


def test_the_airflow_adapter_registers_airflows_task_log_masking():
    from meshinsights.airflow import tasks
    from meshinsights.engine import logging as mlog

    assert tasks._airflow_mask in mlog._secret_hooks
    tasks._airflow_mask("outside-a-task")  # no task process here: a no-op, never an import
