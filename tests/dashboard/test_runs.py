"""The dashboard over a pipeline windowed by run: pick a run, see that run's rows only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from meshinsights.config import load_configs
from meshinsights.engine.runner import run_pipeline
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.dashboard.test_app import charts, fresh_caches, run_app, texts  # noqa: F401
from tests.orchestration.test_run_windows import NS, RANGE, robot_configs  # noqa: F401


@pytest.fixture
def run_store(robot_configs: Path, tmp_path: Path) -> Path:  # noqa: F811 (the fixture)
    store = DeltaStore(str(tmp_path / "artifacts"))
    run_pipeline(load_configs(robot_configs), "robot-01", RANGE, store)
    return tmp_path / "artifacts"


def _points(at) -> dict[str, int]:
    from tests.dashboard.test_app import _length

    return {t["name"]: _length(t["x"]) for t in charts(at)[0]["data"]}


def test_a_run_is_picked_and_only_its_rows_are_shown(monkeypatch, run_store: Path) -> None:
    at = run_app(monkeypatch, run_store, start="2024-03-04", end="2024-03-05")
    assert not at.exception
    picker = at.selectbox(key=f"run_{NS}_robot-01")
    assert picker.options == ["(every run in these days) (3)", "robot-01-r1 · 03-04 10:00 → 10:09",
                              "robot-01-r2 · 03-04 10:00 → 10:09",
                              "robot-01-r3 · 03-04 23:55 → 00:04"]
    every = texts(at, "caption")
    assert any(c.startswith("3,717 rows → ") for c in every)  # all three runs' rows
    at = picker.set_value("robot-01-r3").run()
    assert not at.exception
    captions = " ".join(texts(at, "caption"))
    # r3 crosses midnight: picked, it is shown whole, and only its 1,260 rows.
    assert "run robot-01-r3 · 2024-03-04 23:55 → 2024-03-05 00:04" in captions
    assert "1,260 rows → " in captions
    telemetry = DeltaStore(str(run_store)).read(
        NS, "telemetry", "robot-01", Window.parse("2024-03-04T23:55Z", "2024-03-05T00:05Z"))
    assert len(telemetry) == 1260 and set(telemetry["run_id"]) == {"robot-01-r3"}
    assert sum(_points(at).values()) <= 1260
    # Its GenAI analysis, not the other runs'.
    genai = DeltaStore(str(run_store)).read_all(NS, "genai_analysis")
    r3 = genai[(genai["run_id"] == "robot-01-r3") & genai["current"]]["summary"].iloc[0]
    from meshinsights.dashboard import data

    assert data.md_escape(r3) in texts(at, "markdown")


def test_a_link_names_a_run(monkeypatch, run_store: Path) -> None:
    at = run_app(monkeypatch, run_store, run="robot-01-r2", start="2024-03-05",
                 end="2024-03-05")
    assert not at.exception
    assert at.selectbox(key=f"run_{NS}_robot-01").value == "robot-01-r2"
    assert "1,197 rows → " in " ".join(texts(at, "caption"))
    at = run_app(monkeypatch, run_store, run="nope")
    assert "The run in the link is not a run of this machine." in texts(at, "warning")
    assert pd.notna(at.selectbox(key=f"run_{NS}_robot-01").value)
