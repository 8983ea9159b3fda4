"""The hvac_power pipeline over the demo fleet finds what the generator injected.

Five units of a seeded 10-unit fleet run three days each through ``run_pipeline`` (daily
windows, as the scheduled DAG runs them), with the alert-threshold sink writing to a SQLite
alert database after each ``update_thresholds`` run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from meshinsights.config import load_configs
from meshinsights.connectors.alerts import ALERTS_CONN_ID, AlertThresholdSink
from meshinsights.credentials import DEMO_CONN_ID
from meshinsights.demo import seed
from meshinsights.engine.runner import run_pipeline
from meshinsights.errors import StoreError
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS

pytestmark = pytest.mark.slow

NS = "hvac_power"
WINDOW = Window.parse("2024-01-01", "2024-01-04")
DAYS = [pd.Timestamp(f"2024-01-0{d}", tz="UTC") for d in (1, 2, 3)]
MACHINES = ["hvac-002", "hvac-003", "hvac-004", "hvac-009", "hvac-010"]
# Columns that record when or how fast something ran, not what it computed.
WALL_CLOCK = ("ingested_at", "run_id", "analyzed_at", "latency_s")


@dataclass
class Fleet:
    store: DeltaStore
    summaries: dict[str, list[dict[str, Any]]]
    alerts: AlertThresholdSink
    demo: str  # the source database's URL

    def read(self, table: str, machine: str) -> pd.DataFrame:
        try:
            return self.store.read(NS, table, machine, WINDOW)
        except StoreError:  # a table no run has produced yet
            return pd.DataFrame()

    def ran(self, machine: str, step: str) -> dict[pd.Timestamp, bool]:
        """Per day: did the step run (True) or was its branch skipped (False)?

        A batch summary (several days in one commit) lists its days under ``windows``.
        """
        return {pd.Timestamp(w["start"]): not s.get("skipped")
                for s in self.summaries[machine] if s["step"] == step
                for w in s.get("windows") or [s["window"]]}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    root: Path = tmp_path_factory.mktemp("fleet")
    demo = f"sqlite:///{root / 'demo.db'}"
    seed(demo, machines=10, days=3, seed=7)
    urls = {DEMO_CONN_ID: demo, ALERTS_CONN_ID: f"sqlite:///{root / 'alerts.db'}"}
    configs = load_configs(CONFIGS)
    assert configs.errors == {}
    store = DeltaStore(str(root / "artifacts"))
    summaries = {m: run_pipeline(configs, m, WINDOW, store, resolver=urls.__getitem__,
                                 run_id=f"fleet-{m}")
                 for m in MACHINES}
    return Fleet(store, summaries, AlertThresholdSink(urls[ALERTS_CONN_ID]), demo)


def test_high_variance_unit_gets_no_threshold_update(fleet: Fleet) -> None:
    variance = fleet.read("variance", "hvac-002")
    assert variance["ts"].tolist() == DAYS
    assert variance["variance_class"].tolist() == ["high"] * 3, variance[["ts", "cv"]]
    # ≈ 8× the CV of a normal unit. Below the generator's > 0.3: fixed stage edges (1.5 and
    # 4.5 kW) move the most extreme cycles into the neighbouring stage.
    assert (variance["cv"] > 0.2).all()
    assert fleet.ran("hvac-002", "update_thresholds") == dict.fromkeys(DAYS, False)
    assert fleet.read("threshold_updates", "hvac-002").empty
    assert fleet.alerts.read(history=True, machine_id="hvac-002").empty


@pytest.mark.parametrize("machine", ["hvac-009", "hvac-010"])
def test_normal_units_get_threshold_updates(fleet: Fleet, machine: str) -> None:
    variance = fleet.read("variance", machine)
    assert variance["variance_class"].tolist() == ["low"] * 3
    assert (variance["cv"] < 0.1).all()
    assert fleet.ran(machine, "update_thresholds") == dict.fromkeys(DAYS, True)
    updates = fleet.read("threshold_updates", machine)
    assert sorted(updates["ts"].unique()) == DAYS
    stage1 = updates[updates["stage"] == 1]
    assert ((stage1["lower"] > 2.0) & (stage1["lower"] < 3.0) & (stage1["upper"] > 3.0)
            & (stage1["upper"] < 4.0)).all(), stage1  # around the ≈3 kW stage-1 level
    history = fleet.alerts.read(history=True, machine_id=machine)
    assert len(history) == len(updates)
    assert sorted(history["valid_from"].unique()) == [d.tz_localize(None) + pd.Timedelta(days=1)
                                                      for d in DAYS]
    current = fleet.alerts.read(machine_id=machine)
    assert set(current["stage"]) == set(updates["stage"])
    assert (current["valid_from"] == pd.Timestamp("2024-01-04")).all()
    assert set(current["run_id"]) == {f"fleet-{machine}"}


def test_short_cycling_unit_gets_an_issue_row(fleet: Fleet) -> None:
    issues = fleet.read("issues", "hvac-003")
    short = issues[issues["check"] == "short_cycling"]
    assert short["ts"].tolist() == DAYS
    assert (short["severity"] == "critical").all()
    evidence = [json.loads(e) for e in short["evidence"]]
    assert all(e["median_on_minutes"] < 5 and e["n_short"] >= 100 for e in evidence), evidence
    assert fleet.read("issues", "hvac-009").empty and fleet.read("issues", "hvac-010").empty


def test_stuck_sensor_is_reported(fleet: Fleet) -> None:
    issues = fleet.read("issues", "hvac-004")
    flat = issues[issues["check"] == "flatline"]
    assert len(flat) == 1, issues[["ts", "check", "message"]]
    row = flat.iloc[0]
    assert row["ts"] == DAYS[2] and row["metric"] == "temperature"
    assert row["value"] >= 8 * 60 and row["severity"] == "critical"
    assert row["first_ts"] >= DAYS[2] and row["last_ts"] < DAYS[2] + pd.Timedelta(days=1)
    # the stuck readings do not also look like a drift
    assert "drift" not in set(issues["check"])


def test_genai_branch_runs_only_for_complex_windows(fleet: Fleet) -> None:
    assert fleet.ran("hvac-002", "genai") == dict.fromkeys(DAYS, True)  # variance not low
    assert fleet.ran("hvac-003", "genai") == dict.fromkeys(DAYS, True)  # short cycling
    assert fleet.ran("hvac-004", "genai") == {DAYS[0]: False, DAYS[1]: False, DAYS[2]: True}
    assert fleet.ran("hvac-009", "genai") == dict.fromkeys(DAYS, False)
    analyses = fleet.read("genai_analysis", "hvac-004")
    assert analyses["ts"].unique().tolist() == [DAYS[2]]


@pytest.mark.parametrize("table", ["telemetry", "clean", "rolling", "temperature_hourly",
                                   "features", "cycles",
                                   "cycle_stats", "variance", "thresholds", "anomalies",
                                   "anomalies_mv", "event_counts", "forecasts",
                                   "forecast_errors", "summary"])
def test_every_dashboard_table_has_each_window(fleet: Fleet, table: str) -> None:
    df = fleet.read(table, "hvac-009")
    assert sorted(df["ts"].dt.floor("1D").unique()) == DAYS


def test_alarm_flood_on_the_short_cycling_unit_is_found(fleet: Fleet) -> None:
    floods = fleet.read("alarm_floods", "hvac-003")
    assert len(floods) == 1
    flood = floods.iloc[0]
    assert flood["ts"].floor("1h") == pd.Timestamp("2024-01-02 14:00", tz="UTC")
    assert flood["n_alarms"] > 20 and "COMP_SHORT_CYCLE" in flood["codes"]


def test_batched_days_write_what_one_run_per_day_writes(fleet: Fleet, tmp_path: Path) -> None:
    """The fleet ran its 3 days as one batch per step; day by day gives the same tables.

    hvac-004 covers a branch that holds on one day only (genai) and the sink (none pushed);
    hvac-009 the sink on every day.
    """
    from meshinsights.engine.ingest import run_incremental
    from meshinsights.engine.runner import plan, run_steps

    assert all(len(s.get("windows", [])) == 3 for s in fleet.summaries["hvac-009"]
               if s["step"] == "clean")
    urls = {DEMO_CONN_ID: fleet.demo, ALERTS_CONN_ID: f"sqlite:///{tmp_path / 'a.db'}"}
    configs = load_configs(CONFIGS)
    store = DeltaStore(str(tmp_path / "daily"))
    for machine_id in ("hvac-004", "hvac-009"):
        machine = configs.machine(machine_id)
        pipeline = configs.pipeline_of(machine)
        for day in WINDOW.split(pd.Timedelta("1D").to_pytimedelta()):
            run_incremental(machine, pipeline, day, store, run_id="d", resolver=urls.__getitem__)
            summaries = run_steps(plan(pipeline, machine), machine_id, NS, day, store,
                                  run_id="d", resolver=urls.__getitem__)
            assert not any("windows" in s for s in summaries)
    for table in sorted(store.table_names(NS)):
        for machine_id in ("hvac-004", "hvac-009"):
            daily = store.read(NS, table, machine_id, WINDOW)
            batched = fleet.read(table, machine_id)
            ignore = [c for c in WALL_CLOCK if c in daily.columns]
            # Rows are sorted by ts on read; order among rows with equal ts follows the files.
            a, b = (_rows(f.drop(columns=ignore)) for f in (batched, daily))
            pd.testing.assert_frame_equal(a, b, obj=f"{table} {machine_id}")
    by_day = AlertThresholdSink(urls[ALERTS_CONN_ID]).read(history=True, machine_id="hvac-009")
    batched_alerts = fleet.alerts.read(history=True, machine_id="hvac-009")
    keys = ["valid_from", "stage"]
    cols = [c for c in by_day.columns if c not in ("run_id", "written_at", "id")]
    pd.testing.assert_frame_equal(
        batched_alerts[cols].sort_values(keys).reset_index(drop=True),
        by_day[cols].sort_values(keys).reset_index(drop=True),
    )


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` in an order fixed by its values (every column a sort key)."""
    keys = [c for c in frame.columns if frame[c].map(type).nunique() <= 1]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)
