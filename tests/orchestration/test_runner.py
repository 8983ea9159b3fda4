"""The local runner: whole pipelines are idempotent, and backfill order does not matter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.config import load_configs
from meshinsights.engine.runner import run_pipeline, run_step
from meshinsights.errors import StepError
from meshinsights.model import Window
from meshinsights.steps.registry import get_step
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS

TABLES = ["telemetry", "temperature_hourly", "summary"]


def snapshot(store: DeltaStore, ns: str = "minimal") -> dict[str, pd.DataFrame]:
    out = {}
    for t in TABLES:
        df = store.read_all(ns, t).drop(columns="month")
        keys = [c for c in ("machine_id", "ts", "metric") if c in df.columns]
        out[t] = df.sort_values(keys).reset_index(drop=True)
    return out


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for t in a:
        assert_frame_equal(a[t], b[t], obj=t)


def days(first: int, n: int) -> list[Window]:
    start = datetime(2024, 1, first, tzinfo=UTC)
    return [Window(start + timedelta(days=i), start + timedelta(days=i + 1)) for i in range(n)]


def test_pipeline_twice_leaves_exactly_the_same_rows(demo_env, tmp_path: Path):
    configs = load_configs(CONFIGS)
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    w = Window.parse("2024-01-01", "2024-01-03")
    run_pipeline(configs, "hvac-001", w, store)
    first = snapshot(store)
    assert len(first["telemetry"]) > 0 and len(first["temperature_hourly"]) == 48
    run_pipeline(configs, "hvac-001", w, store)
    assert_same(snapshot(store), first)


def test_rerun_of_one_machine_window_leaves_other_machines_and_windows_untouched(demo_env):
    configs = load_configs(CONFIGS)
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    run_pipeline(configs, "hvac-001", Window.parse("2024-01-01", "2024-01-03"), store)
    # Another machine's rows in the same tables (as another machine's DAG would write them).
    for t in TABLES:
        df = store.read_all("minimal", t).drop(columns="month")
        store.overwrite("minimal", t, df.assign(machine_id="other"), machine_ids="other",
                        window=Window.parse("2024-01-01", "2024-01-03"))
    before = snapshot(store)
    run_pipeline(configs, "hvac-001", Window.parse("2024-01-02", "2024-01-03"), store)
    after = snapshot(store)
    for t in TABLES:
        keep = lambda df: df[  # noqa: E731
            (df.machine_id == "other") | (df.ts < pd.Timestamp("2024-01-02", tz="UTC"))
        ]
        assert_frame_equal(keep(after[t]).reset_index(drop=True),
                           keep(before[t]).reset_index(drop=True), obj=t)
        assert_frame_equal(after[t], before[t], obj=t)


def test_backfill_out_of_order_equals_in_order(demo_env, tmp_path: Path):
    configs = load_configs(CONFIGS)
    in_order = DeltaStore(str(tmp_path / "a"))
    shuffled = DeltaStore(str(tmp_path / "b"))
    windows = days(1, 3)
    for w in windows:
        run_pipeline(configs, "hvac-001", w, in_order)
    for w in (windows[2], windows[0], windows[1], windows[0]):
        run_pipeline(configs, "hvac-001", w, shuffled)
    assert_same(snapshot(shuffled), snapshot(in_order))


def test_split_follows_the_schedule(demo_env):
    configs = load_configs(CONFIGS)
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    summaries = run_pipeline(configs, "hvac-001", Window.parse("2024-01-01", "2024-01-03"), store)
    starts = sorted({s["window"]["start"][:10] for s in summaries})
    assert starts == ["2024-01-01", "2024-01-02"]
    summary = store.read_all("minimal", "summary")
    assert sorted(summary["ts"].dt.strftime("%Y-%m-%d").unique()) == starts


def test_step_on_missing_input_names_the_fix(store: DeltaStore, day: Window):
    with pytest.raises(StepError, match="run the step that produces it first"):
        run_step(get_step("average_temperature"), "m", day, store, namespace="nothing")


def test_group_run_writes_every_machine_in_one_commit(demo_env):
    configs = load_configs(CONFIGS)
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    w = Window.parse("2024-01-01", "2024-01-02")
    run_pipeline(configs, "hvac-001", w, store)
    # Copy hvac-001's telemetry as two other machines, then aggregate all three in one commit.
    tele = store.read("minimal", "telemetry", "hvac-001", w)
    for m in ("g-1", "g-2"):
        store.overwrite("minimal", "telemetry", tele.assign(machine_id=m), machine_ids=m, window=w)
    version = store.version("minimal", "temperature_hourly")
    run_step(get_step("average_temperature"), ["hvac-001", "g-1", "g-2"], w, store,
             namespace="minimal")
    assert store.version("minimal", "temperature_hourly") == version + 1
    got = store.read("minimal", "temperature_hourly", ["hvac-001", "g-1", "g-2"], w)
    per = got.groupby("machine_id")["mean"].apply(list)
    assert per["g-1"] == per["hvac-001"] == per["g-2"]
