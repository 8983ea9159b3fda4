"""Reopened windows are durable work: a step failing after late data, or a process killed
between the ingest commit and the steps, never leaves derived tables stale for good.

Each scenario ends by comparing every derived table with an undisturbed run of the same data.
"""

from __future__ import annotations

import dataclasses
import inspect
import multiprocessing
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.config import load_configs
from meshinsights.demo import seed
from meshinsights.engine.ingest import ingest_state
from meshinsights.engine.runner import run_pipeline
from meshinsights.errors import StepError
from meshinsights.model import Window
from meshinsights.steps import registry
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS

NS, MID = "minimal", "hvac-001"
#: Derived tables of the minimal pipeline, and columns that differ between any two runs.
DERIVED = ("temperature_hourly", "summary", "genai_analysis")
VOLATILE = ("analyzed_at", "latency_s")


def day(n: int) -> Window:
    start = datetime(2024, 1, n, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-unit, four-day demo source behind the demo connection."""
    src = tmp_path / "src.db"
    seed(f"sqlite:///{src}", machines=1, days=4, seed=7)
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{src}")
    return src


def _late_row(src: Path) -> None:
    """A day-1 temperature reading that arrives after days 1-2 were processed."""
    with sqlite3.connect(src) as conn:
        conn.execute(
            "INSERT INTO telemetry (machine_id, ts, metric, value, unit, ingested_at) VALUES "
            "('hvac-001', '2024-01-01 05:30:30', 'temperature', 30.0, 'degC', "
            "'2024-01-09 00:00:00')"
        )


def _tables(store: DeltaStore) -> dict[str, pd.DataFrame]:
    out = {}
    for table in ("telemetry", *DERIVED):
        frame = store.read_all(NS, table).drop(columns=list(VOLATILE), errors="ignore")
        keys = [c for c in ("ts", "metric", "window_end") if c in frame.columns]
        out[table] = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    return out


def _undisturbed(tmp_path: Path, src: Path) -> dict[str, pd.DataFrame]:
    """Days 1-2, the late row, day 3: the tables nothing went wrong for."""
    configs = load_configs(CONFIGS)
    store = DeltaStore(str(tmp_path / "undisturbed"))
    run_pipeline(configs, MID, Window(day(1).start, day(3).start), store)
    _late_row(src)
    run_pipeline(configs, MID, day(3), store)
    return _tables(store)


def _fail_once(monkeypatch: pytest.MonkeyPatch, step: str) -> list[object]:
    """Make ``step`` raise the first time it is called; returns the windows it was called for."""
    spec = registry.get_step(step)
    calls: list[object] = []

    def flaky(*args, **kwargs):
        calls.append(kwargs.get("window"))
        if len(calls) == 1:
            raise RuntimeError("injected failure")
        return spec.func(*args, **kwargs)

    flaky.__signature__ = inspect.signature(spec.func)  # type: ignore[attr-defined]
    monkeypatch.setitem(registry._REGISTRY, step, dataclasses.replace(spec, func=flaky))
    return calls


def _assert_equal(result: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    for table, frame in expected.items():
        pd.testing.assert_frame_equal(result[table], frame, obj=table)


def test_a_step_failing_after_late_data_is_rerun_by_the_next_run(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = load_configs(CONFIGS)
    store = DeltaStore(str(tmp_path / "s"))
    run_pipeline(configs, MID, Window(day(1).start, day(3).start), store)
    _late_row(source)
    calls = _fail_once(monkeypatch, "window_summary")
    # Day 3's run re-ingests day 1 (late row) and fails in day 1's summary step (batched with
    # day 3: the whole batch fails, so day 3's summary is missing too).
    with pytest.raises(StepError, match="injected failure"):
        run_pipeline(configs, MID, day(3), store)
    assert calls == [day(1)]  # reopened day 1 first in the batch
    state = ingest_state(store, NS, MID)
    assert state.pending == (day(1),)  # the watermark moved on; the work did not vanish
    # The next run (any window) drains it: here the rerun of day 3, as a retry would be.
    summaries = run_pipeline(configs, MID, day(3), store)
    summary_runs = [s for s in summaries if s["step"] == "summary"]
    assert [w["start"][:10] for w in summary_runs[0]["windows"]] == ["2024-01-01", "2024-01-03"]
    assert ingest_state(store, NS, MID).pending == ()
    _assert_equal(_tables(store), _undisturbed(tmp_path, source))
    # Nothing left to drain: the next run does only its own window.
    again = run_pipeline(configs, MID, day(3), store)
    assert [s.get("windows") for s in again if s["step"] == "summary"] == [None]


def test_the_airflow_ingest_task_retry_drains_what_its_failed_attempt_reopened(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshinsights.airflow.tasks import ingest_task

    configs = load_configs(CONFIGS)
    store = DeltaStore(str(tmp_path / "s"))
    run_pipeline(configs, MID, Window(day(1).start, day(3).start), store)
    _late_row(source)
    _fail_once(monkeypatch, "average_temperature")
    context = {"data_interval_start": day(3).start, "data_interval_end": day(3).end}
    with pytest.raises(StepError, match="injected failure"):
        ingest_task(str(CONFIGS), store.root, MID, context)
    assert ingest_state(store, NS, MID).pending == (day(1),)
    # Airflow's retry of the same task: no new late rows, but the pending day is rerun.
    out = ingest_task(str(CONFIGS), store.root, MID, context)
    assert out["late_windows"] == [] and out["drained"] == [day(1).as_dict()]
    assert ingest_state(store, NS, MID).pending == ()
    # The DAG's step tasks then cover day 3 itself.
    run_pipeline(configs, MID, day(3), store)
    _assert_equal(_tables(store), _undisturbed(tmp_path, source))


def _ingest_then_die(store_root: str, src: str) -> None:
    """Child process: day 3's run, killed (os._exit) right after its ingest commits."""
    os.environ["AIRFLOW_CONN_MESHINSIGHTS_DEMO"] = f"sqlite:///{src}"
    from meshinsights.engine import runner

    def killed(*args, **kwargs):
        os._exit(9)

    runner.run_steps = killed  # the first thing after the ingest commits
    runner.run_pipeline(load_configs(CONFIGS), MID, day(3), DeltaStore(store_root))


def test_a_process_killed_between_ingest_and_steps_leaves_the_work_pending(
    tmp_path: Path, source: Path
) -> None:
    configs = load_configs(CONFIGS)
    store = DeltaStore(str(tmp_path / "s"))
    run_pipeline(configs, MID, Window(day(1).start, day(3).start), store)
    _late_row(source)
    # Spawned, not forked: this process has used deltalake.
    child = multiprocessing.get_context("spawn").Process(
        target=_ingest_then_die, args=(store.root, str(source))
    )
    child.start()
    child.join(120)
    assert child.exitcode == 9
    fresh = DeltaStore(store.root)
    assert ingest_state(fresh, NS, MID).pending == (day(1),)
    run_pipeline(configs, MID, day(3), fresh)
    assert ingest_state(fresh, NS, MID).pending == ()
    _assert_equal(_tables(fresh), _undisturbed(tmp_path, source))
