"""Maintenance: compaction keeps every row in fewer files; vacuum deletes what no version needs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

from meshinsights.engine.maintenance import compact_tables, select_tables, vacuum_tables
from meshinsights.errors import ConfigError, StoreError
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import REPO

MACHINES = ("m-1", "m-2")
DAYS = 4


def _fill(store: DeltaStore, namespace: str = "pipe", table: str = "readings") -> None:
    """One overwrite per machine and day: DAYS files in each machine's month partition."""
    for m_index, machine in enumerate(MACHINES):
        for day in range(DAYS):
            start = datetime(2024, 1, 1 + day, tzinfo=UTC)
            ts = pd.date_range(start, periods=24, freq="1h", tz="UTC")
            values = [float(m_index * 100 + day + h / 100) for h in range(24)]
            frame = pd.DataFrame({"machine_id": machine, "ts": ts, "value": values})
            store.overwrite(namespace, table, frame, machine_ids=machine,
                            window=Window(start, start + timedelta(days=1)))


def _rows(store: DeltaStore, namespace: str = "pipe", table: str = "readings") -> pd.DataFrame:
    df = store.read_all(namespace, table)
    return df.sort_values(["machine_id", "ts"]).reset_index(drop=True)


def _parquet_files(store: DeltaStore, namespace: str = "pipe", table: str = "readings") -> int:
    root = Path(store.uri(namespace, table))
    return sum(1 for f in root.rglob("*.parquet") if "_delta_log" not in f.parts)


def test_compaction_keeps_every_row_in_one_file_per_partition(store: DeltaStore):
    _fill(store)
    expected = _rows(store)
    before = store.version("pipe", "readings")
    (result,) = compact_tables(store, select_tables(store))
    assert (result.files_before, result.files_after) == (len(MACHINES) * DAYS, len(MACHINES))
    assert (result.files_removed, result.files_added) == (len(MACHINES) * DAYS, len(MACHINES))
    assert result.version == before + 1  # one commit
    assert_frame_equal(_rows(store), expected)


def test_vacuum_deletes_only_unreferenced_files_and_ends_old_time_travel(store: DeltaStore):
    _fill(store)
    expected = _rows(store)
    last_write = store.version("pipe", "readings")
    compact_tables(store, select_tables(store))
    on_disk = _parquet_files(store)
    assert on_disk == len(MACHINES) * DAYS + len(MACHINES)

    kept = vacuum_tables(store, select_tables(store), retention_hours=168)
    assert kept[0].files_removed == 0  # everything is younger than a week
    (result,) = vacuum_tables(store, select_tables(store), retention_hours=0)
    assert result.files_removed == len(MACHINES) * DAYS
    assert _parquet_files(store) == len(MACHINES)
    assert_frame_equal(_rows(store), expected)
    with pytest.raises(Exception, match="(?i)not found|no such file"):
        store.read_all("pipe", "readings", version=last_write)  # its files are gone


def test_select_tables_filters_and_names_what_does_not_exist(store: DeltaStore):
    _fill(store, "pipe", "readings")
    _fill(store, "other", "readings")
    assert select_tables(store, namespaces=["other"]) == [("other", "readings")]
    assert len(select_tables(store, tables=["readings"])) == 2
    with pytest.raises(ConfigError, match="no pipeline named nope .* existing: other, pipe"):
        select_tables(store, namespaces=["nope"])
    with pytest.raises(ConfigError, match="retention_hours must be >= 0"):
        vacuum_tables(store, [], retention_hours=-1)


def test_compacting_a_missing_table_is_a_store_error(store: DeltaStore):
    with pytest.raises(StoreError, match="does not exist"):
        compact_tables(store, [("pipe", "missing")])


def test_cli_compacts_and_vacuums_with_the_retention_given(store: DeltaStore):
    from meshinsights.cli import app

    _fill(store)
    runner = CliRunner()
    done = runner.invoke(app, ["--store", store.root, "maintenance", "compact", "-p", "pipe"])
    assert done.exit_code == 0, done.output
    assert "readings" in done.output
    assert len(store.read_all("pipe", "readings")) == len(MACHINES) * DAYS * 24
    done = runner.invoke(app, ["--store", store.root, "maintenance", "vacuum",
                               "--retention-hours", "0"])
    assert done.exit_code == 0, done.output
    assert _parquet_files(store) == len(MACHINES)
    bad = runner.invoke(app, ["--store", store.root, "maintenance", "vacuum",
                              "--retention-hours", "-5"])
    assert bad.exit_code != 0


def _maintenance_dag():
    spec = importlib.util.spec_from_file_location(
        "meshinsights_maintenance", REPO / "dags" / "meshinsights_maintenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.meshinsights_maintenance()


@pytest.mark.airflow
def test_maintenance_dag_compacts_then_vacuums(store: DeltaStore, airflow_db, monkeypatch):
    _fill(store)
    expected = _rows(store)
    monkeypatch.setenv("MESHINSIGHTS_STORE", store.root)
    dag = _maintenance_dag()
    assert dag.get_task("retain").upstream_task_ids == {"compact"}
    assert dag.get_task("vacuum").upstream_task_ids == {"retain"}
    run = dag.test(run_conf={"retention_hours": 0, "pipelines": ["pipe"]})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"compact": "success", "retain": "success", "vacuum": "success"}, states
    assert _parquet_files(store) == len(MACHINES)
    assert_frame_equal(_rows(store), expected)


def test_maintenance_dag_file_imports_nothing_heavy():
    code = ("import sys, runpy; runpy.run_path('dags/meshinsights_maintenance.py'); "
            "print(sorted(m for m in ('deltalake', 'pandas', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
