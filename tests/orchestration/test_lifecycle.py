"""Retention keeps N days per table; erasure removes one machine from every table for good."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

from meshinsights.cli import app
from meshinsights.config import load_configs
from meshinsights.demo import seed
from meshinsights.engine.lifecycle import erase_machine, retain_tables
from meshinsights.engine.runner import run_pipeline
from meshinsights.engine.status import stale_windows
from meshinsights.errors import ConfigError
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS

NS = "minimal"
GONE, KEPT = "hvac-002", "hvac-001"
runner = CliRunner()


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, DeltaStore]:
    """Two machines of the minimal pipeline, days 1-3 of January 2024 run."""
    src = tmp_path / "src.db"
    seed(f"sqlite:///{src}", machines=2, days=4, seed=7)
    with sqlite3.connect(src) as db:  # out-of-range readings: quarantine rows on each day
        db.executemany(
            "INSERT INTO telemetry VALUES (?, ?, 'temperature', 500.0, 'degC', ?)",
            [(m, f"2024-01-0{d} 12:00:30", f"2024-01-0{d} 12:01:00") for m in (GONE, KEPT)
             for d in (1, 2, 3)],
        )
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{src}")
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    for f in (configs / "machines").glob("hvac-*.yaml"):
        if f.stem not in (GONE, KEPT):
            f.unlink()
    (configs / "machines" / f"{GONE}.yaml").write_text(f"machine_id: {GONE}\npipeline: {NS}\n")
    store = DeltaStore(str(tmp_path / "artifacts"))
    loaded = load_configs(configs)
    window = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC))
    for machine in (GONE, KEPT):
        run_pipeline(loaded, machine, window, store)
    return configs, store


def _tables(store: DeltaStore) -> dict[str, pd.DataFrame]:
    return {
        t.name: store.read_all(t.namespace, t.name)
        .drop(columns=["month"], errors="ignore")
        .sort_values([c for c in ("machine_id", "ts", "metric") if c in t.columns])
        .reset_index(drop=True)
        for t in store.tables()
    }


def _partition_dirs(store: DeltaStore, machine: str) -> list[Path]:
    return [
        p
        for p in Path(store.root).rglob(f"machine_id={machine}")
        if p.is_dir() and any(p.rglob("*.parquet"))
    ]


def test_erase_removes_the_machine_everywhere_and_leaves_the_others_untouched(fleet) -> None:
    _, store = fleet
    before = _tables(store)
    assert {"telemetry", "quarantine", "temperature_hourly", "summary"} <= set(before)
    removed = {name: int((df["machine_id"] == GONE).sum()) for name, df in before.items()}
    assert removed["telemetry"] > 0 and removed["quarantine"] > 0  # the seed's faults
    versions = {t.name: t.version for t in store.tables()}
    assert _partition_dirs(store, GONE)

    receipt = erase_machine(store, GONE, run_id="test-erase")

    # The receipt names every table that held rows of the machine, with its counts and versions.
    assert {r.table: r.rows_removed for r in receipt} == {
        n: c for n, c in removed.items() if c
    }
    by_table = {r.table: r for r in receipt}
    for r in receipt:
        assert (r.version_before, r.version_after) == (versions[r.table], versions[r.table] + 1)
        assert r.files_vacuumed > 0
    after = _tables(store)
    for name, df in after.items():
        assert not (df["machine_id"] == GONE).any(), name
        kept = before[name][before[name]["machine_id"] == KEPT].reset_index(drop=True)
        assert_frame_equal(df.reset_index(drop=True), kept, check_dtype=False)
    # Vacuumed: no data file of the machine is left on disk, and time travel cannot return it.
    assert _partition_dirs(store, GONE) == []
    with pytest.raises(Exception, match="(?i)not found|no such file|failed"):
        store.read_all(NS, "telemetry", version=versions["telemetry"])
    # The Delta log backs the receipt: the erase commit names the machine and its row count.
    (commit,) = [
        c for c in store.history(NS, "telemetry") if c.get("meshinsights.step") == "erasure"
    ]
    assert commit["version"] == by_table["telemetry"].version_after
    assert commit["meshinsights.erased_machine"] == GONE
    assert int(commit["operationMetrics"]["num_deleted_rows"]) == removed["telemetry"]
    # Erased machine ids are not provenance: the kept machine's windows are not made stale.
    loaded = load_configs(fleet[0])
    machine = loaded.machine(KEPT)
    assert stale_windows(store, loaded.pipeline_of(machine), machine) == []


def test_erase_cli_asks_for_confirmation_and_refuses_an_unknown_machine(fleet) -> None:
    configs, store = fleet
    base = ["--configs", str(configs), "--store", store.root]
    unconfirmed = runner.invoke(app, [*base, "erase", GONE])
    assert unconfirmed.exit_code == 1
    assert "--yes" in str(unconfirmed.exception)
    assert (store.read_all(NS, "telemetry")["machine_id"] == GONE).any()  # nothing happened

    done = runner.invoke(app, [*base, "erase", GONE, "--yes", "--json"])
    assert done.exit_code == 0, done.output
    receipt = json.loads(done.output)
    assert {r["table"] for r in receipt} >= {"telemetry", "summary", "quarantine"}
    assert all(r["rows_removed"] > 0 for r in receipt)

    again = runner.invoke(app, [*base, "erase", GONE, "--yes"])
    assert again.exit_code == 1
    assert "has no rows in any table" in str(again.exception)
    with pytest.raises(ConfigError, match="check the id"):
        erase_machine(store, "hvac-0O1")


def _with_retention(configs: Path, retention: str) -> None:
    path = configs / "pipelines" / "minimal.yaml"
    path.write_text(path.read_text() + f"retention: {retention}\n")


def test_retain_deletes_rows_older_than_each_tables_retention(fleet, caplog) -> None:
    configs, store = fleet
    _with_retention(configs, "{default: 2D, telemetry: 1D, temprature_hourly: 1D}")
    before = _tables(store)
    now = datetime(2024, 1, 4, tzinfo=UTC)
    loaded = load_configs(configs)
    assert not loaded.errors, loaded.errors

    receipt = retain_tables(store, loaded.pipelines, now=now)

    after = _tables(store)
    by_table = {r.table: r for r in receipt}
    for name, df in before.items():
        keep = timedelta(days=1 if name == "telemetry" else 2)
        cutoff = pd.Timestamp(now - keep)
        old = int((df["ts"] < cutoff).sum())
        assert by_table[name].rows_removed == old, name
        assert old > 0, name  # the test covers a real deletion in every table
        assert_frame_equal(after[name], df[df["ts"] >= cutoff].reset_index(drop=True))
        commit = store.history(NS, name, limit=1)[0]
        assert commit["meshinsights.step"] == "retention"
        assert commit["meshinsights.cutoff"] == (now - keep).isoformat()
    # A misspelt table name in retention is said, not silently ignored.
    assert "temprature_hourly" in caplog.text

    # Run again: nothing older is left, so every table reports 0 rows and makes no commit.
    again = retain_tables(store, loaded.pipelines, now=now)
    assert all(r.rows_removed == 0 and r.version_after == r.version_before for r in again)


def test_retain_cli_and_config_errors(fleet) -> None:
    configs, store = fleet
    base = ["--configs", str(configs), "--store", store.root]
    nothing = runner.invoke(app, [*base, "maintenance", "retain"])
    assert nothing.exit_code == 0 and "no pipeline sets retention" in nothing.output

    _with_retention(configs, "{telemetry: 1D}")
    done = runner.invoke(
        app, [*base, "maintenance", "retain", "--now", "2024-01-04", "--json"]
    )
    assert done.exit_code == 0, done.output
    (row,) = json.loads(done.output)
    assert row["table"] == "telemetry" and row["rows_removed"] > 0

    bad = runner.invoke(app, [*base, "maintenance", "retain", "--now", "yesterday"])
    assert bad.exit_code == 1 and "not an ISO date" in str(bad.exception)

    path = configs / "pipelines" / "minimal.yaml"
    path.write_text(path.read_text().replace("{telemetry: 1D}", "{telemetry: 999999D}"))
    errors = load_configs(configs).errors
    assert any("999999D" in e and "a century" in e for e in errors.values()), errors


@pytest.mark.airflow
def test_the_maintenance_dag_applies_retention(fleet, airflow_db, monkeypatch) -> None:
    from tests.orchestration.test_maintenance import _maintenance_dag

    configs, store = fleet
    _with_retention(configs, "{default: 30D}")  # the 2024 rows are all older than that now
    monkeypatch.setenv("MESHINSIGHTS_STORE", store.root)
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(configs))
    rows = {t.name: t.rows for t in store.tables()}
    run = _maintenance_dag().test(run_conf={"retention_hours": 168, "pipelines": [NS]})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"compact": "success", "retain": "success", "vacuum": "success"}, states
    deleted = {
        t: sum(
            int(c["operationMetrics"]["num_deleted_rows"])
            for c in store.history(NS, t)
            if c.get("meshinsights.step") == "retention"
        )
        for t in rows
    }
    assert deleted == rows
    assert all(t.rows == 0 for t in store.tables())
