"""The dashboard's stale panel (issue 19): what ``meshinsights status`` lists, on the page.

A real minimal run over three days, then a param override in the machine's config: the Run
history tab lists exactly the three windows of the changed step, names the command that redoes
them, and after ``run --stale`` (and Refresh) says nothing is stale.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

import meshinsights.dashboard
from meshinsights.cli import app
from meshinsights.config import load_configs
from meshinsights.demo import seed
from meshinsights.engine.runner import run_pipeline
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS

APP = Path(meshinsights.dashboard.__file__).resolve().parent / "app.py"
MID = "hvac-001"


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    st.cache_data.clear()
    st.cache_resource.clear()
    yield


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, DeltaStore]:
    src = tmp_path / "src.db"
    seed(f"sqlite:///{src}", machines=1, days=3, seed=7)
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{src}")
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    store = DeltaStore(str(tmp_path / "artifacts"))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    run_pipeline(load_configs(configs), MID, Window(start, start + timedelta(days=3)), store)
    monkeypatch.setenv("MESHINSIGHTS_STORE", store.root)
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(configs))
    return configs, store


def _run_history(at: AppTest) -> tuple[list[str], list[str], list[pd.DataFrame]]:
    assert not at.exception, at.exception
    tab = at.tabs[3]
    assert tab.label == "Run history"
    return ([e.value for e in tab.warning], [e.value for e in tab.success],
            [e.value for e in tab.dataframe])


def _page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["machine"] = MID
    at.query_params["start"] = "2024-01-01"
    at.query_params["end"] = "2024-01-03"
    return at.run()


def test_the_panel_lists_exactly_the_stale_windows_then_clears(project) -> None:
    configs, store = project
    warnings, successes, _ = _run_history(_page())
    assert not warnings
    assert successes and successes[0].startswith("Nothing stale or pending")

    (configs / "machines" / f"{MID}.yaml").write_text(
        f"machine_id: {MID}\npipeline: minimal\noverrides:\n"
        "  average_temperature: {freq: 30min}\n"
    )
    st.cache_data.clear()  # what the page's Refresh button does
    warnings, successes, frames = _run_history(_page())
    assert not successes
    assert warnings[0].startswith("3 window(s) to redo")
    assert f"meshinsights run {MID} --stale" in warnings[0]
    stale = frames[0]
    assert stale["step"].tolist() == ["average_temperature"] * 3
    assert stale["table"].tolist() == ["temperature_hourly"] * 3
    assert [pd.Timestamp(t).day for t in stale["window_start"]] == [1, 2, 3]
    assert set(stale["reason"]) == {"definition changed (params or code)"}

    result = CliRunner().invoke(
        app, ["--configs", str(configs), "--store", store.root, "run", MID, "--stale"]
    )
    assert result.exit_code == 0, result.output
    st.cache_data.clear()
    warnings, successes, _ = _run_history(_page())
    assert not warnings and successes[0].startswith("Nothing stale or pending")


def test_a_machine_without_a_config_says_why_there_is_no_report(project) -> None:
    configs, _ = project
    (configs / "machines" / f"{MID}.yaml").unlink()
    warnings, successes, _ = _run_history(_page())
    assert not successes
    assert warnings[0].startswith("cannot tell what is stale:") and MID in warnings[0]
