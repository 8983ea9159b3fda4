"""The runs table, the Airflow listener that fills it, and the plugin's dashboard links."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshinsights.airflow import listener
from meshinsights.airflow.links import dashboard_url, dashboard_url_for_dag, links_app
from meshinsights.airflow.listener import (
    RUNS_TABLE,
    dq_rate,
    record_ts,
    run_record,
    write_run,
)
from meshinsights.store import DeltaStore
from tests.conftest import REPO
from tests.integration.conftest import write_configs

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))


def _record(**overrides):
    base = dict(machine_id="m-1", pipeline="minimal", dag_id="minimal__m-1", run_id="r1",
                task_id="ingest", try_number=1, state="success", started=T0,
                ended=T0 + timedelta(seconds=2.5), window=WINDOW,
                summary={"rows_in": 1000, "rows_out": 940, "rows_quarantined": 50,
                         "duplicates_removed": 10, "seconds": 2.1, "table": "telemetry",
                         "version": 7})
    return run_record(**{**base, **overrides})


@pytest.mark.parametrize(("summary", "expected"), [
    ({"rows_in": 1000, "rows_quarantined": 50, "duplicates_removed": 10}, round(1 - 50 / 990, 6)),
    ({"rows_in": 10, "rows_quarantined": 0}, 1.0),
    ({"rows_in": 0, "rows_quarantined": 0}, 1.0),
    ({"rows_in": 24, "rows_out": 1}, None),
], ids=["quarantine-and-duplicates", "clean", "empty-window", "step-not-ingest"])
def test_data_quality_rate(summary, expected):
    assert dq_rate(summary) == expected


def test_run_record_keeps_counts_and_timings_and_drops_secrets():
    rec = _record()
    assert (rec["rows_in"], rec["rows_out"], rec["rows_quarantined"]) == (1000, 940, 50)
    assert rec["seconds"] == 2.5 and rec["step_seconds"] == 2.1
    assert (rec["table"], rec["table_version"]) == ("telemetry", 7)
    failed = _record(state="failed", summary=None,
                     error="ConnectorError: mysql://svc:hunter22@db/x " + "x" * 900)
    assert failed["rows_in"] is None and failed["dq_rate"] is None
    assert "hunter22" not in failed["error"] and len(failed["error"]) == 500


def test_record_ts_puts_each_attempt_at_its_own_instant_in_the_window():
    keys = [f"d|r|{task}|{attempt}" for task in ("ingest", "summary", "x") for attempt in (1, 2)]
    stamps = [record_ts(WINDOW, started=T0, key=k) for k in keys]
    assert len(set(stamps)) == len(stamps)
    assert all(WINDOW[0] <= t < WINDOW[0] + timedelta(minutes=1) for t in stamps)
    assert record_ts(WINDOW, started=T0, key=keys[0]) == stamps[0]  # deterministic
    short = (WINDOW[0], WINDOW[0] + timedelta(microseconds=5))
    assert WINDOW[0] <= record_ts(short, started=T0, key="k") < short[1]
    assert record_ts(None, started=T0, key="k") == T0


def test_write_run_is_idempotent_per_attempt(store: DeltaStore):
    write_run(store, _record())
    write_run(store, _record())  # the same attempt again: still one row
    write_run(store, _record(task_id="summary", started=T0 + timedelta(seconds=3),
                             ended=T0 + timedelta(seconds=4), summary={"rows_out": 1}))
    write_run(store, _record(machine_id="m-2"))  # same instant, other machine
    runs = store.read_all("minimal", RUNS_TABLE).sort_values(["machine_id", "started_at"])
    assert runs[["machine_id", "task_id"]].values.tolist() == [
        ["m-1", "ingest"], ["m-1", "summary"], ["m-2", "ingest"]]
    assert runs["window_start"].iloc[0].to_pydatetime() == WINDOW[0]


def test_hooks_never_write_from_outside_a_task_process(store: DeltaStore, monkeypatch):
    class TaskInstance:  # what the API server passes: an ORM row, not a RuntimeTaskInstance
        dag_id, task_id, run_id, try_number, state = "minimal__hvac-001", "ingest", "r", 1, None

    monkeypatch.setenv("MESHINSIGHTS_STORE", store.root)
    listener.on_task_instance_failed(None, TaskInstance(), RuntimeError("x"))
    listener.on_task_instance_success(None, TaskInstance())
    assert not store.exists("minimal", RUNS_TABLE)


def test_plugin_and_listener_import_nothing_heavy():
    code = ("import sys; sys.path.insert(0, 'plugins'); import meshinsights_plugin as p; "
            "print(sorted(m for m in ('deltalake', 'pandas', 'pyarrow', 'duckdb') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.airflow
def test_airflow_loads_the_plugin_with_its_listener_and_views(tmp_path: Path):
    import os

    done = subprocess.run([str(Path(sys.executable).parent / "airflow"), "plugins", "-o", "json"],
                          capture_output=True, text=True, env=os.environ.copy(), check=True)
    (plugin,) = [p for p in json.loads(done.stdout) if p["name"] == "meshinsights"]
    assert "meshinsights.airflow.listener" in str(plugin["listeners"])
    views = {v["destination"]: v["href"] for v in plugin["external_views"]}
    assert views == {"dag": "/meshinsights/dag/{DAG_ID}",
                     "task": "/meshinsights/dag/{DAG_ID}?task_id={TASK_ID}",
                     "task_instance": "/meshinsights/dag/{DAG_ID}?task_id={TASK_ID}"
                                      "&run_id={RUN_ID}"}


def test_links_redirect_a_dag_and_task_to_its_machine_view(tmp_path: Path, monkeypatch):
    from fastapi.testclient import TestClient

    configs = write_configs(tmp_path / "configs")
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(configs))
    monkeypatch.setenv("MESHINSIGHTS_DASHBOARD_URL", "http://dash.example:9999/")
    assert dashboard_url("m 1", task_id="x") == "http://dash.example:9999/?machine=m+1&task=x"
    assert dashboard_url_for_dag("nope__dag") is None
    client = TestClient(links_app())
    resp = client.get("/dag/minimal__hvac-002", params={"task_id": "check_summary",
                                                        "run_id": "manual__1"},
                      follow_redirects=False)
    assert resp.status_code == 307
    assert resp.headers["location"] == ("http://dash.example:9999/?machine=hvac-002&"
                                        "pipeline=minimal&task=summary&run_id=manual__1")
    missing = client.get("/dag/other_dag", follow_redirects=False)
    assert missing.status_code == 404 and "not a MeshInsights machine DAG" in missing.text


@pytest.mark.airflow
def test_every_task_of_a_dag_run_lands_in_the_runs_table(airflow_db, demo_db, tmp_path: Path,
                                                         monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    configs = write_configs(tmp_path / "configs")
    store = DeltaStore(str(tmp_path / "artifacts"))
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(configs))
    monkeypatch.setenv("MESHINSIGHTS_STORE", store.root)
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{demo_db}")
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("minimal__hvac-001")
    run = dag.test(logical_date=datetime(2024, 1, 2, tzinfo=UTC),
                   run_conf={"start": "2024-01-02T00:00:00+00:00",
                             "end": "2024-01-02T12:00:00+00:00"})
    assert run.state == "success"
    runs = store.read_all("minimal", RUNS_TABLE)
    runs = runs[runs["run_id"] == run.run_id].set_index("task_id")
    start = datetime(2024, 1, 2, tzinfo=UTC)
    assert runs["ts"].between(start, start + timedelta(minutes=1), inclusive="left").all()
    assert set(runs.index) == {"ingest", "average_temperature", "summary"}
    assert set(runs["state"]) == {"success"} and set(runs["machine_id"]) == {"hvac-001"}
    telemetry = store.read_all("minimal", "telemetry")
    assert runs.loc["ingest", "rows_out"] == len(telemetry)
    assert runs.loc["ingest", "dq_rate"] == 1.0 - runs.loc["ingest", "rows_quarantined"] / (
        runs.loc["ingest", "rows_in"] - runs.loc["ingest", "duplicates_removed"])
    assert runs.loc["average_temperature", "rows_out"] == 12  # twelve hours
    assert (runs["window_end"] == datetime(2024, 1, 2, 12, tzinfo=UTC)).all()
    assert (runs["seconds"] > 0).all() and (runs["ended_at"] >= runs["ts"]).all()
