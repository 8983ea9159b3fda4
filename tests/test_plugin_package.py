"""The worked plugin package (examples/plugin) installed the way the README says, used from YAML
by ``meshinsights run`` and by Airflow's ``dag.test()``, each in a fresh interpreter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.store import DeltaStore
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "plugin"

_DAG_TEST = """
import json, sys
from datetime import UTC, datetime
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
run = bag.get_dag("acme__acme-001").test(logical_date=datetime(2024, 1, 3, tzinfo=UTC))
print(json.dumps({"state": str(run.state),
                  "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The example built and installed into a --target folder (pip, no build isolation, as
    the README's one command), and a copy of its configs."""
    work = tmp_path_factory.mktemp("plugin")
    source, target = work / "src", work / "target"
    shutil.copytree(EXAMPLE, source)  # the build writes egg-info/build next to the sources
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (target / "meshinsights_acme").is_dir()
    return target, source / "configs"


def _env(target: Path, store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MESHINSIGHTS_CONFIGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(REPO)])
    env["MESHINSIGHTS_STORE"] = str(store)
    env["COLUMNS"] = "300"
    return env


def _cli(target: Path, configs: Path, store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meshinsights.cli", "--configs", str(configs), *args],
        env=_env(target, store), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_plugin_is_listed_and_its_options_are_validated(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    target, configs = installed
    ok = _cli(target, configs, tmp_path / "s", "validate-configs")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    text = " ".join(ok.stdout.split())
    assert (
        "connector jsonl: meshinsights_acme.connector:JSONLinesConnector (meshinsights-acme 0.1.0)"
        in text
    )
    assert "steps acme: meshinsights_acme.steps (meshinsights-acme 0.1.0)" in text
    bad = tmp_path / "configs"
    shutil.copytree(configs, bad)
    (bad / "machines" / "acme-002.yaml").write_text(
        "machine_id: acme-002\npipeline: acme\nstart_date: 2024-01-01\n"
        "source: {type: jsonl, folder: drop, patern: '*.json'}\n"
    )
    (bad / "machines" / "acme-003.yaml").write_text(
        "machine_id: acme-003\npipeline: acme\nstart_date: 2024-01-01\nsource: {type: jsonll}\n"
    )
    refused = _cli(target, bad, tmp_path / "s", "validate-configs", "--no-sources")
    assert refused.returncode == 1
    text = " ".join((refused.stdout + refused.stderr).split())
    assert "acme-002.yaml: field source.patern: Extra inputs are not permitted" in text
    assert "unknown source type 'jsonll'; did you mean 'jsonl'?" in text
    assert "Traceback" not in text


@pytest.mark.airflow
def test_a_machine_runs_through_the_plugin_connector_and_step(
    installed: tuple[Path, Path], tmp_path: Path, airflow_db: Path
) -> None:
    target, configs = installed
    store = tmp_path / "artifacts"
    run = _cli(target, configs, store, "run", "acme-001", "--start", "2024-01-01", "--end",
               "2024-01-03", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    ingest = [s for s in summary if s["step"] == "ingest"]
    # 144 readings of 2 metrics per day; day 2 also holds one out-of-range temperature.
    assert [(s["rows_in"], s["rows_clean"], s["rows_quarantined"]) for s in ingest] == [
        (288, 288, 0), (289, 288, 1)
    ]  # fmt: skip
    ranges = DeltaStore(str(store)).read_all("acme", "daily_range").sort_values(["ts", "metric"])
    lines = [json.loads(x) for f in sorted((configs / "drop").glob("*.jsonl"))
             for x in f.read_text().splitlines()]  # fmt: skip
    raw = pd.DataFrame(lines).assign(ts=lambda d: pd.to_datetime(d["ts"]))
    raw = raw[raw["value"] < 120]  # what validation keeps
    expected = raw.groupby([raw["ts"].dt.floor("1D"), "metric"])["value"].agg(
        lambda v: v.max() - v.min()
    )
    assert ranges["range"].round(9).tolist() == expected.round(9).tolist()
    assert ranges["count"].tolist() == [144] * 4

    # The same machine under Airflow: dag.test() of its generated DAG, in a fresh interpreter.
    airflow_store = tmp_path / "airflow_artifacts"
    proc = subprocess.run(
        [sys.executable, "-c", _DAG_TEST, str(REPO / "dags")],
        env={**_env(target, airflow_store), "MESHINSIGHTS_CONFIGS": str(configs)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["state"].endswith("success"), result
    assert set(result["tasks"]) >= {"ingest", "daily_range"}
    via_airflow = DeltaStore(str(airflow_store)).read_all("acme", "daily_range")
    day2 = ranges[ranges["ts"] == pd.Timestamp("2024-01-02", tz="UTC")]
    assert via_airflow.sort_values("metric")["range"].tolist() == day2["range"].tolist()
