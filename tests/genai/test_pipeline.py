"""The genai step inside the minimal pipeline: the local runner and real Airflow (dag.test)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from meshinsights.config import load_configs
from meshinsights.engine.runner import run_pipeline
from meshinsights.genai.offline import DISCLAIMER, OFFLINE_MODEL
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS, REPO

from .fake_openai import Reply


def test_minimal_pipeline_gives_an_offline_analysis_per_day(demo_env):
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    configs = load_configs(CONFIGS)
    two_days = Window.parse("2024-01-01", "2024-01-03")
    summaries = run_pipeline(configs, "hvac-001", two_days, store)
    # One batch for both days (one commit), one analysis per day.
    assert [(s["rows_out"], len(s["windows"])) for s in summaries if s["step"] == "genai"] == [
        (2, 2)
    ]
    first = store.read_all("minimal", "genai_analysis").sort_values("ts").reset_index(drop=True)
    assert first["ts"].tolist() == [pd.Timestamp("2024-01-01", tz="UTC"),
                                    pd.Timestamp("2024-01-02", tz="UTC")]
    assert set(first["provider"]) == {"offline"} and set(first["model"]) == {OFFLINE_MODEL}
    assert set(first["status"]) == {"ok"} and first["current"].all()
    assert first["summary"].str.startswith(DISCLAIMER).all()
    summary = store.read("minimal", "summary", "hvac-001", Window.parse("2024-01-01", "2024-01-02"))
    temp = summary.set_index("metric").loc["temperature"]
    row = f"| temperature | degC | {temp['count']} | {temp['mean']:.4g} |"
    assert row in first.loc[0, "user_prompt"]
    run_pipeline(configs, "hvac-001", two_days, store)  # rerun: idempotent, served from the table
    again = store.read_all("minimal", "genai_analysis").sort_values("ts").reset_index(drop=True)
    pd.testing.assert_frame_equal(again, first)


def _configs_with_genai_overrides(tmp_path: Path, overrides: dict) -> Path:
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    pipeline = yaml.safe_load((configs / "pipelines" / "minimal.yaml").read_text())
    # A step after genai shows the pipeline carries on past a failed provider.
    pipeline["steps"].append({"id": "after_genai", "uses": "average_temperature",
                              "output": "humidity_hourly", "params": {"metric": "humidity"}})
    (configs / "pipelines" / "minimal.yaml").write_text(yaml.safe_dump(pipeline))
    machine = yaml.safe_load((configs / "machines" / "hvac-001.yaml").read_text())
    machine["overrides"] = {"genai": overrides}
    (configs / "machines" / "hvac-001.yaml").write_text(yaml.safe_dump(machine))
    return configs


def test_pipeline_continues_with_the_offline_analyst_when_the_provider_fails(
        demo_env, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_GENAI_KEY", "sk-pipeline-test")
    fake.default = Reply(503)
    configs = load_configs(_configs_with_genai_overrides(tmp_path, {
        "provider": "compatible", "base_url": fake.base_url, "api_key_env": "TEST_GENAI_KEY",
        "max_attempts": 2, "backoff_base": 0.01}))
    assert configs.errors == {}
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    summaries = run_pipeline(configs, "hvac-001", Window.parse("2024-01-01", "2024-01-02"), store)
    assert [s["step"] for s in summaries] == ["ingest", "average_temperature", "summary", "genai",
                                              "after_genai"]
    assert summaries[-1]["rows_out"] == 24 and len(fake.requests) == 2
    [row] = store.read_all("minimal", "genai_analysis").to_dict("records")
    assert (row["status"], row["provider"], row["requested_provider"]) == (
        "fallback", "offline", "compatible")
    assert "failed after 2 attempts: HTTP 503" in row["error"]


@pytest.mark.airflow
def test_minimal_dag_runs_the_genai_step(demo_env, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    # (import errors of other pipelines are tests/orchestration's concern, not this test's)
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("minimal__hvac-001")
    # summary, and ingest (it writes the events table the step reads when present)
    assert dag.get_task("genai").upstream_task_ids == {"ingest", "summary"}
    # A manual run at logical date D processes the day before D.
    run = dag.test(logical_date=datetime(2024, 1, 3, tzinfo=UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success" and states["genai"] == "success", states
    [row] = DeltaStore(demo_env["MESHINSIGHTS_STORE"]).read_all(
        "minimal", "genai_analysis").to_dict("records")
    assert row["ts"] == pd.Timestamp("2024-01-02", tz="UTC")
    assert (row["status"], row["provider"]) == ("ok", "offline")
    assert "Machine: hvac-001" in row["user_prompt"]


def test_an_empty_window_gets_no_model_request_and_no_analysis_row(
        demo_env, fake, tmp_path, monkeypatch):
    """The demo source holds 2024-01-01 → 01-04: February has no rows, so nothing to analyse."""
    monkeypatch.setenv("TEST_GENAI_KEY", "sk-pipeline-test")
    configs = load_configs(_configs_with_genai_overrides(tmp_path, {
        "provider": "compatible", "base_url": fake.base_url, "api_key_env": "TEST_GENAI_KEY"}))
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    empty = Window.parse("2024-02-01", "2024-02-02")
    summaries = {s["step"]: s for s in run_pipeline(configs, "hvac-001", empty, store)}
    assert summaries["ingest"]["rows_in"] == 0
    assert fake.requests == []
    assert store.read_all("minimal", "genai_analysis").empty
    genai = summaries["genai"]
    assert (genai["skipped"], genai["skipped_empty"], genai["rows_out"]) == (True, 1, 0)
    assert genai["skip_reason"].startswith("no input rows in ") and "summary" in genai[
        "skip_reason"]
    # The same for the steps before it: nothing in, no call, no rows, said so.
    for step_id in ("average_temperature", "summary", "after_genai"):
        assert summaries[step_id]["skipped"] and summaries[step_id]["rows_out"] == 0, step_id
    # A window with data next to it: exactly one request, one analysis row, for that day only.
    day = Window.parse("2024-01-01", "2024-01-02")
    run_pipeline(configs, "hvac-001", day, store)
    rows = store.read_all("minimal", "genai_analysis")
    assert len(fake.requests) == 1 and rows["ts"].tolist() == [pd.Timestamp("2024-01-01", tz="UTC")]
    assert (rows["status"].tolist(), rows["provider"].tolist()) == (["ok"], ["compatible"])
