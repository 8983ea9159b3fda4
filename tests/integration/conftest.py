"""Fixtures for integration tests: a private, stable config set and a real Airflow cluster."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

# The integration tests pin their own small pipeline so that edits to configs/ (other work in
# progress, new demo pipelines) never change what they assert.
PIPELINE = """\
name: minimal
description: ingest, hourly temperature, window summary
validation:
  temperature: {min: -40, max: 120, max_rate_per_min: 10, unit: degC}
  humidity: {min: 0, max: 100}
steps:
  - id: average_temperature
    params: {metric: temperature, freq: 1h}
  - id: summary
    uses: window_summary
"""

DEFAULTS = """\
schedule: "@daily"
start_date: 2024-01-01
catchup: false
retries: 0
source:
  type: sql
  conn_id: meshinsights_demo
  query: >
    SELECT machine_id, ts, metric, value, unit, ingested_at
    FROM telemetry
    WHERE machine_id = :machine_id AND ts >= :start AND ts < :end
"""

MACHINES = ("hvac-001", "hvac-002", "hvac-003")


#: A pipeline windowed by run and one robot whose runs share timestamps (issue 18).
ROBOT_PIPELINE = """\
name: robot_it
window: run
steps:
  - id: summary
    uses: window_summary
"""


def write_configs(root: Path, *, machine_extra: str = "") -> Path:
    """A config folder with the pinned pipelines, the three demo machines and a robot."""
    from tests.orchestration.test_run_windows import MACHINE, robot_rows

    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    (root / "machines").mkdir(parents=True, exist_ok=True)
    (root / "pipelines" / "minimal.yaml").write_text(PIPELINE)
    (root / "pipelines" / "robot_it.yaml").write_text(ROBOT_PIPELINE)
    (root / "machines" / "_defaults.yaml").write_text(DEFAULTS)
    for m in MACHINES:
        (root / "machines" / f"{m}.yaml").write_text(
            f"machine_id: {m}\npipeline: minimal\ntags: [itest]\n{machine_extra}")
    robot = MACHINE.format(robot="robot-01", ns="robot_it")
    (root / "machines" / "robot-01.yaml").write_text(robot + machine_extra)
    robot_rows().to_csv(root / "robot_runs.csv", index=False)
    return root


@pytest.fixture(scope="module")
def it_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned config folder (pipeline ``minimal``, machines hvac-001..003)."""
    return write_configs(tmp_path_factory.mktemp("configs"))


def unavailable(what: str, exc: Exception) -> None:
    """Skip (or, with CI set, fail) because a server the test needs is not there."""
    reason = f"{what} not reachable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI requires it — .ci/run starts the servers")
    pytest.skip(f"{reason}; start it to run this test")


@contextlib.contextmanager
def airflow_database(prefix: str = "airflow_ci") -> Iterator[str]:
    """A fresh PostgreSQL database for an Airflow metadata DB (dropped afterwards); its URL."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory, it_configs: Path,
                  demo_db: Path) -> Iterator[Cluster]:
    """Scheduler + api-server + dag-processor (LocalExecutor) on loopback ports.

    The metadata DB is PostgreSQL: on SQLite, a CLI backfill next to a busy scheduler fails
    now and then with "database is locked" (SQLite cannot upgrade a read transaction).
    """
    home = tmp_path_factory.mktemp("airflow-local")
    with airflow_database("airflow_it") as db_url:
        cluster = Cluster(home, extra_env={
            "MESHINSIGHTS_CONFIGS": str(it_configs),
            "MESHINSIGHTS_STORE": str(home / "artifacts"),
            "AIRFLOW_CONN_MESHINSIGHTS_DEMO": f"sqlite:///{demo_db}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        })
        try:
            cluster.start("scheduler", "api-server", "dag-processor")
            yield cluster
        finally:
            cluster.stop()
