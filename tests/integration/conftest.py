"""Fixtures for integration tests: a private, stable config set and a real Airflow cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster

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


def write_configs(root: Path, *, machine_extra: str = "") -> Path:
    """A config folder with the pinned pipeline and the three demo machines."""
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    (root / "machines").mkdir(parents=True, exist_ok=True)
    (root / "pipelines" / "minimal.yaml").write_text(PIPELINE)
    (root / "machines" / "_defaults.yaml").write_text(DEFAULTS)
    for m in MACHINES:
        (root / "machines" / f"{m}.yaml").write_text(
            f"machine_id: {m}\npipeline: minimal\ntags: [itest]\n{machine_extra}")
    return root


@pytest.fixture(scope="module")
def it_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned config folder (pipeline ``minimal``, machines hvac-001..003)."""
    return write_configs(tmp_path_factory.mktemp("configs"))


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory, it_configs: Path,
                  demo_db: Path) -> Iterator[Cluster]:
    """Scheduler + api-server + dag-processor (LocalExecutor, SQLite) on loopback ports."""
    home = tmp_path_factory.mktemp("airflow-local")
    cluster = Cluster(home, extra_env={
        "MESHINSIGHTS_CONFIGS": str(it_configs),
        "MESHINSIGHTS_STORE": str(home / "artifacts"),
        "AIRFLOW_CONN_MESHINSIGHTS_DEMO": f"sqlite:///{demo_db}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    })
    try:
        cluster.start("scheduler", "api-server", "dag-processor")
        yield cluster
    finally:
        cluster.stop()
