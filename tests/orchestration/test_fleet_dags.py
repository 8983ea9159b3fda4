"""Real Airflow at fleet size: sharded DAG files, a task's parse builds one DAG, 2,000 machines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.airflow.shards import DEFAULT_SHARDS, shard_count, shard_file_name
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS, REPO

pytestmark = pytest.mark.airflow

CONTEXT_DAG = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"  # what Airflow's task runner sets
CONTEXT_TASK = "_AIRFLOW_PARSING_CONTEXT_TASK_ID"
DAGS = REPO / "dags"


def dagbag(folder: Path = DAGS):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


def machine_dags(bag) -> set[str]:
    return {d for d in bag.dag_ids if d != "meshinsights_maintenance"}


def test_the_dags_folder_holds_the_default_shards():
    shards = sorted(p.name for p in DAGS.glob("meshinsights_shard_*.py"))
    assert shards == [shard_file_name(k) for k in range(DEFAULT_SHARDS)]


def test_a_bad_shard_count_is_one_line_naming_the_fix(monkeypatch):
    from meshinsights.errors import ConfigError

    monkeypatch.setenv("MESHINSIGHTS_DAG_SHARDS", "zero")
    with pytest.raises(ConfigError, match="must be a positive whole number.*dag-shards N"):
        shard_count()


def test_a_task_parse_builds_only_its_dag_and_that_dag_runs(demo_env, airflow_db, monkeypatch):
    from airflow.serialization.serialized_objects import DagSerialization

    full = dagbag().get_dag("minimal__hvac-001")
    monkeypatch.setenv(CONTEXT_DAG, "minimal__hvac-001")
    monkeypatch.setenv(CONTEXT_TASK, "average_temperature")
    bag = dagbag()
    assert bag.import_errors == {}
    assert machine_dags(bag) == {"minimal__hvac-001"}
    dag = bag.get_dag("minimal__hvac-001")
    # The one DAG a task builds is the DAG the dag-processor serialized.
    assert DagSerialization.to_dict(dag) == DagSerialization.to_dict(full)

    # dag.test() syncs the folder to the DB as the dag-processor does: no context there.
    monkeypatch.delenv(CONTEXT_DAG)
    monkeypatch.delenv(CONTEXT_TASK)
    run = dag.test(logical_date=datetime(2024, 1, 3, tzinfo=UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    summary = DeltaStore(demo_env["MESHINSIGHTS_STORE"]).read_all("minimal", "summary")
    assert summary["machine_id"].unique().tolist() == ["hvac-001"]
    assert summary["ts"].unique().tolist() == [pd.Timestamp("2024-01-02", tz="UTC")]


def test_a_missing_shard_file_is_an_import_error_naming_it(demo_env, tmp_path: Path):
    folder = tmp_path / "dags"
    shutil.copytree(DAGS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / shard_file_name(5)).unlink()
    bag = dagbag(folder)
    ((path, error),) = bag.import_errors.items()
    assert path.endswith("meshinsights_config_errors.py")
    assert f"missing DAG shard file(s) {shard_file_name(5)}" in error
    assert f"meshinsights dag-shards {DEFAULT_SHARDS}" in error


def _parse_in_fresh_process(path: Path, env: dict[str, str]) -> dict:
    """Parse one DAG file the way Airflow's dag-processor does: a new process per file."""
    code = (
        "import json, sys, time\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "t = time.perf_counter()\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'dags': sorted(bag.dag_ids),\n"
        "                  'errors': list(bag.import_errors.values())}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_thousand_machines_load_each_file_well_inside_the_timeout(
        tmp_path: Path, monkeypatch):
    from airflow.configuration import conf

    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS / "pipelines", configs / "pipelines")
    (configs / "machines").mkdir(parents=True)
    shutil.copy(CONFIGS / "machines" / "_defaults.yaml", configs / "machines")
    ids = [f"unit-{i:04d}" for i in range(2000)]
    for mid in ids:
        (configs / "machines" / f"{mid}.yaml").write_text(
            f"machine_id: {mid}\npipeline: hvac_power\n")
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(configs))
    monkeypatch.setenv("MESHINSIGHTS_STORE", str(tmp_path / "artifacts"))
    budget = conf.getfloat("core", "dagbag_import_timeout") / 3

    bag = dagbag()
    assert bag.import_errors == {}
    assert machine_dags(bag) == {f"hvac_power__{mid}" for mid in ids}
    per_file = {Path(s.file).name: s.duration.total_seconds() for s in bag.dagbag_stats}
    assert max(per_file.values()) < budget, per_file

    # Within one process the imports are paid once; the dag-processor pays them per file, so
    # the slowest shard and the config-errors file (it validates all 2,000) are re-timed alone.
    env = os.environ.copy()
    slowest = max((f for f in per_file if f.startswith("meshinsights_shard_")), key=per_file.get)
    for name in (slowest, "meshinsights_config_errors.py"):
        alone = _parse_in_fresh_process(DAGS / name, env)
        assert alone["errors"] == [] and alone["seconds"] < budget, (name, alone)

    # A task's parse: its own shard file with the parsing context set builds one DAG.
    dag_id = f"hvac_power__{ids[1234]}"
    fileloc = Path(bag.get_dag(dag_id).fileloc).name
    task = _parse_in_fresh_process(DAGS / fileloc, {**env, CONTEXT_DAG: dag_id,
                                                    CONTEXT_TASK: "ingest"})
    assert task["dags"] == [dag_id] and task["errors"] == [], task
