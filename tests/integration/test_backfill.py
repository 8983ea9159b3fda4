"""A real scheduler + api-server + dag-processor: on-demand runs and per-machine backfills.

The tables Airflow writes must equal what the local runner writes for the same machine and
windows, and no other machine or window may change.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.airflow.listener import RUNS_TABLE
from meshinsights.config import load_configs
from meshinsights.engine.runner import run_pipeline
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.integration.cluster import Cluster

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.timeout(900)]

TABLES = ("telemetry", "temperature_hourly", "summary")


def _rows(store: DeltaStore, table: str, machine: str) -> pd.DataFrame:
    df = store.read_all("minimal", table)
    df = df[df["machine_id"] == machine].drop(columns="month")
    keys = [c for c in ("machine_id", "ts", "metric") if c in df.columns]
    return df.sort_values(keys).reset_index(drop=True)


def _local(configs: Path, demo_db: Path, tmp: Path, machine: str, window: Window,
           monkeypatch: pytest.MonkeyPatch) -> DeltaStore:
    """What ``meshinsights run`` writes for the same machine and window (daily windows)."""
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{demo_db}")
    store = DeltaStore(str(tmp / f"local-{machine}"))
    run_pipeline(load_configs(configs), machine, window, store)
    return store


def _unpause(cluster: Cluster, dag_id: str) -> None:
    # Queued runs of a paused DAG (backfills and manual triggers alike) never start.
    cluster.wait_dag(dag_id)
    cluster.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})


def test_on_demand_run_and_cli_backfill_touch_only_their_machine_and_windows(
        local_cluster: Cluster, it_configs: Path, demo_db: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = local_cluster
    for dag_id in ("minimal__hvac-001", "minimal__hvac-002"):
        _unpause(c, dag_id)
    started = time.monotonic()
    # Request mode through the REST API: any window, here half a day.
    conf = {"start": "2024-01-02T06:00:00+00:00", "end": "2024-01-02T18:00:00+00:00"}
    triggered = c.request("POST", "/api/v2/dags/minimal__hvac-001/dagRuns",
                          {"logical_date": None, "conf": conf})
    assert triggered["conf"] == conf
    # Backfill through the CLI: one machine, three daily windows.
    c.airflow("backfill", "create", "--dag-id", "minimal__hvac-002",
              "--from-date", "2024-01-01", "--to-date", "2024-01-03")
    backfill = c.wait_backfills("minimal__hvac-002")
    assert len(backfill) == 3
    c.wait_runs("minimal__hvac-001", 1, run_type="manual", timeout=300)
    print(f"on-demand run + 3-day backfill finished in {time.monotonic() - started:.0f}s")

    starts = sorted(r["data_interval_start"][:10] for r in backfill)
    assert starts == ["2024-01-01", "2024-01-02", "2024-01-03"]
    store = DeltaStore(c.env["MESHINSIGHTS_STORE"])
    telemetry = store.read_all("minimal", "telemetry")
    assert set(telemetry["machine_id"]) == {"hvac-001", "hvac-002"}  # hvac-003 untouched

    b = telemetry[telemetry["machine_id"] == "hvac-002"]
    per_day = b.groupby(b["ts"].dt.strftime("%Y-%m-%d")).size()
    assert list(per_day.index) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    local = _local(it_configs, demo_db, tmp_path, "hvac-002",
                   Window.parse("2024-01-01", "2024-01-04"), monkeypatch)
    for table in TABLES:
        assert_frame_equal(_rows(store, table, "hvac-002"), _rows(local, table, "hvac-002"),
                           obj=table, check_like=True)

    a = telemetry[telemetry["machine_id"] == "hvac-001"]
    assert a["ts"].min() == pd.Timestamp(conf["start"])
    assert a["ts"].max() < pd.Timestamp(conf["end"])
    hourly = _rows(store, "temperature_hourly", "hvac-001")
    assert len(hourly) == 12

    # The listener recorded every task of every run, with its window and row counts.
    runs = store.read_all("minimal", RUNS_TABLE)
    b_runs = runs[runs["machine_id"] == "hvac-002"]
    b_runs = b_runs[b_runs["run_id"].str.startswith("backfill")]
    assert len(b_runs) == 9 and set(b_runs["state"]) == {"success"}
    ingest = b_runs[b_runs["task_id"] == "ingest"].sort_values("window_start")
    assert ingest["rows_out"].tolist() == per_day.tolist()
    assert ingest["dq_rate"].between(0, 1).all()
    a_runs = runs[(runs["machine_id"] == "hvac-001") & (runs["task_id"] == "ingest")
                  & runs["run_id"].str.startswith("manual")]
    assert a_runs["window_start"].tolist() == [pd.Timestamp(conf["start"])]


def test_rest_backfill_reprocesses_exactly_one_machines_windows(
        local_cluster: Cluster) -> None:
    c = local_cluster
    dag_id = "minimal__hvac-003"
    _unpause(c, dag_id)
    body = {"dag_id": dag_id, "from_date": "2024-01-02T00:00:00Z",
            "to_date": "2024-01-03T00:00:00Z", "max_active_runs": 2}
    c.request("POST", "/api/v2/backfills", body)
    assert len(c.wait_backfills(dag_id)) == 2
    store = DeltaStore(c.env["MESHINSIGHTS_STORE"])
    first = {t: _rows(store, t, "hvac-003") for t in TABLES}
    versions = {t: store.version("minimal", t) for t in TABLES}
    others = _rows(store, "telemetry", "hvac-002")
    assert sorted(first["telemetry"]["ts"].dt.strftime("%Y-%m-%d").unique()) == [
        "2024-01-02", "2024-01-03"]

    # Reprocess the same windows: same rows, new table versions, other machines untouched.
    again = c.request("POST", "/api/v2/backfills", {**body, "reprocess_behavior": "completed"})
    assert again["id"] > 0
    runs = c.wait_backfills(dag_id)
    assert len(runs) == 2  # the same two runs, cleared and run again
    for table in TABLES:
        assert_frame_equal(_rows(store, table, "hvac-003"), first[table], obj=table)
        assert store.version("minimal", table) > versions[table]
    assert_frame_equal(_rows(store, "telemetry", "hvac-002"), others)


def test_a_run_pipeline_backfill_and_a_one_run_rerun_under_the_scheduler(
        local_cluster: Cluster, it_configs: Path, tmp_path: Path) -> None:
    """Issue 18 under the real scheduler: a backfill of a robot's days writes the per-run
    tables the local runner writes; a DAG run with conf {"run": ...} reruns that run alone."""
    c = local_cluster
    dag_id = "robot_it__robot-01"
    _unpause(c, dag_id)
    # One DAG run at a time, as the DAG's own max_active_runs is for a run pipeline (a backfill
    # has its own limit): concurrent runs would write a run from a partial run index.
    assert c.request("GET", f"/api/v2/dags/{dag_id}")["max_active_runs"] == 1
    c.airflow("backfill", "create", "--dag-id", dag_id, "--max-active-runs", "1",
              "--from-date", "2024-03-04", "--to-date", "2024-03-05")
    assert len(c.wait_backfills(dag_id)) == 2
    store = DeltaStore(c.env["MESHINSIGHTS_STORE"])
    local = DeltaStore(str(tmp_path / "local-robot"))
    run_pipeline(load_configs(it_configs), "robot-01", Window.parse("2024-03-04", "2024-03-06"),
                 local)
    key = ["run_id", "metric"]
    got = store.read_all("robot_it", "summary").sort_values(key).reset_index(drop=True)
    assert_frame_equal(got, local.read_all("robot_it", "summary").sort_values(key)
                       .reset_index(drop=True))
    assert sorted(got["run_id"].unique()) == ["robot-01-r1", "robot-01-r2", "robot-01-r3"]
    commits = [h for h in store.history("robot_it", "summary")
               if h.get("meshinsights.step") == "summary"]
    before = len(commits)
    c.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
              {"logical_date": None, "conf": {"run": "robot-01-r2"}})
    c.wait_runs(dag_id, 1, run_type="manual", timeout=300)
    commits = [h for h in store.history("robot_it", "summary")
               if h.get("meshinsights.step") == "summary"]
    assert len(commits) == before + 1
    assert commits[0]["meshinsights.window"]["run"] == "robot-01-r2"
    assert_frame_equal(store.read_all("robot_it", "summary").sort_values(key)
                       .reset_index(drop=True), got)
