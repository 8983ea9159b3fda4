"""Delta on object storage: the pipeline on S3 (moto server) and Azure Blob (Azurite), on loopback.

The tables must equal those of a local-folder store, reruns stay idempotent, maintenance works,
and concurrent writer processes to one shared table lose no commit.
"""

from __future__ import annotations

import json
import multiprocessing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

from meshinsights.cli import app
from meshinsights.config import load_configs
from meshinsights.engine.maintenance import compact_tables, vacuum_tables
from meshinsights.engine.runner import run_pipeline
from meshinsights.model import Window
from meshinsights.settings import get_settings
from meshinsights.store import DeltaStore
from tests.integration.object_stores import azurite, moto_s3
from tests.integration.writers import write_machine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TABLES = ("telemetry", "temperature_hourly", "summary")
BUCKET = "meshinsights-it"
cli = CliRunner()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server with a bucket; the AWS_* settings that reach it."""
    with moto_s3(tmp_path_factory.mktemp("moto"), BUCKET) as settings:
        yield settings


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Azurite's blob service with a container ``lake``; deltalake storage options for it."""
    with azurite(tmp_path_factory.mktemp("azurite"), "lake") as options:
        yield options


def _remote(backend: str, request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """A fresh root on the backend and the storage options deltalake needs for it."""
    run = uuid.uuid4().hex[:8]
    if backend == "s3":
        return f"s3://{BUCKET}/{run}", dict(request.getfixturevalue("s3"))
    return f"az://lake/{run}", dict(request.getfixturevalue("azure"))


def _tables(store: DeltaStore) -> dict[str, pd.DataFrame]:
    out = {}
    for table in TABLES:
        df = store.read_all("minimal", table).drop(columns="month")
        keys = [c for c in ("machine_id", "ts", "metric") if c in df.columns]
        out[table] = df.sort_values(keys).reset_index(drop=True)
    return out


@pytest.mark.parametrize("backend", ["s3", "azure"])
def test_pipeline_on_object_storage_equals_the_local_store(
        backend: str, request: pytest.FixtureRequest, it_configs: Path, demo_db: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, options = _remote(backend, request)
    # The store comes from settings, as in production: root + MESHINSIGHTS_STORAGE_OPTIONS.
    monkeypatch.setenv("MESHINSIGHTS_STORE", root)
    monkeypatch.setenv("MESHINSIGHTS_STORAGE_OPTIONS", json.dumps(options))
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{demo_db}")
    remote = get_settings().open_store()
    assert remote.root == root and remote.storage_options == options
    configs, window = load_configs(it_configs), Window.parse("2024-01-01", "2024-01-03")
    run_pipeline(configs, "hvac-001", window, remote)
    local = DeltaStore(str(tmp_path / "local"))
    run_pipeline(configs, "hvac-001", window, local)
    expected, first = _tables(local), _tables(remote)
    for table in TABLES:
        assert len(expected[table]) > 0
        assert_frame_equal(first[table], expected[table], obj=table)

    # Listing goes through pyarrow, which gets the same endpoint and credentials.
    assert {t.name for t in remote.tables() if t.namespace == "minimal"} >= set(TABLES)
    # The CLI users reach the store with: tables, SQL over the current versions, export.
    listed = cli.invoke(app, ["tables"])
    assert listed.exit_code == 0, listed.output
    secret = options.get("azure_storage_account_key") or options["AWS_SECRET_ACCESS_KEY"]
    assert "temperature_hourly" in listed.output and secret not in listed.output
    sql = cli.invoke(app, ["sql", "-e", "SELECT count(*) AS n FROM minimal__temperature_hourly"])
    assert sql.exit_code == 0, sql.output
    assert str(len(expected["temperature_hourly"])) in sql.output
    csv = tmp_path / "hourly.csv"
    exported = cli.invoke(app, ["export", "temperature_hourly", "--machine", "hvac-001",
                                "--start", "2024-01-01", "--end", "2024-01-03", "--out", str(csv)])
    assert exported.exit_code == 0, exported.output
    assert len(pd.read_csv(csv)) == len(expected["temperature_hourly"])

    versions = {t: remote.version("minimal", t) for t in TABLES}
    run_pipeline(configs, "hvac-001", window, remote)  # a rerun is idempotent
    again = _tables(remote)
    for table in TABLES:
        assert_frame_equal(again[table], first[table], obj=table)
        assert remote.version("minimal", table) > versions[table]

    (compacted,) = compact_tables(remote, [("minimal", "telemetry")])
    assert compacted.files_removed > compacted.files_added >= 1
    (vacuumed,) = vacuum_tables(remote, [("minimal", "telemetry")], retention_hours=0)
    assert vacuumed.files_removed >= compacted.files_removed
    assert_frame_equal(_tables(remote)["telemetry"], expected["telemetry"])


@pytest.mark.parametrize("backend", ["s3", "azure"])
def test_concurrent_writer_processes_lose_no_commit(backend: str,
                                                    request: pytest.FixtureRequest) -> None:
    root, options = _remote(backend, request)
    machines = [f"m-{i}" for i in range(1, 7)]
    # deltalake is not fork-safe and this process has used it: the writers are spawned.
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        versions = pool.map(write_machine, [(root, options, m, 60) for m in machines])
    flat = [v for vs in versions for v in vs]
    assert len(set(flat)) == len(flat) == 2 * len(machines)  # every commit got its own version
    store = DeltaStore(root, storage_options=options)
    rows = store.read_all("shared", "readings")
    assert rows.groupby("machine_id").size().to_dict() == {m: 120 for m in machines}
    committed = [h.get("meshinsights.run_id") for h in store.history("shared", "readings")]
    expected = {f"{m}-{d}" for m in machines for d in (1, 2)}
    assert sorted(r for r in committed if r in expected) == sorted(expected)


@pytest.mark.airflow
def test_airflow_dag_runs_against_s3_with_aws_environment(
        s3: dict[str, str], it_configs: Path, demo_db: Path, airflow_db: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow tasks build the store from MESHINSIGHTS_STORE; AWS_* variables reach it."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    root = f"s3://{BUCKET}/airflow-{uuid.uuid4().hex[:8]}"
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MESHINSIGHTS_STORE", root)
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(it_configs))
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{demo_db}")
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("minimal__hvac-003")
    run = dag.test(logical_date=datetime(2024, 1, 2, tzinfo=UTC))
    assert run.state == "success"
    store = DeltaStore(root)
    hourly = store.read_all("minimal", "temperature_hourly")
    assert len(hourly) == 24 and set(hourly["machine_id"]) == {"hvac-003"}
    assert {t.name for t in store.tables()} >= {"telemetry", "temperature_hourly", "runs"}
