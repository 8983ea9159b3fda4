"""Scale-out: several machines' DAG runs in parallel on a real Celery worker (Redis + PostgreSQL).

Every run writes the same shared Delta tables at the same time; the tables must hold every
machine-window and one commit per task: concurrent writers lose nothing.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.airflow.listener import RUNS_TABLE
from meshinsights.store import DeltaStore
from tests.integration.cluster import Cluster
from tests.integration.conftest import MACHINES, airflow_database, unavailable

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.timeout(900)]

WINDOWS = [("2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00"),
           ("2024-01-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00")]


def _redis_db() -> int:
    """A Redis database index for this test's broker (fails fast if Redis is down)."""
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3).ping()
    except Exception as exc:
        unavailable("Redis at 127.0.0.1:6379", exc)
    return 9


@pytest.fixture(scope="module")
def celery_cluster(tmp_path_factory: pytest.TempPathFactory, it_configs: Path,
                   demo_db: Path) -> Iterator[Cluster]:
    """Scheduler, api-server, dag-processor and one Celery worker (4 slots) on a private queue."""
    broker = f"redis://127.0.0.1:6379/{_redis_db()}"
    queue = f"mi_{uuid.uuid4().hex[:8]}"
    home = tmp_path_factory.mktemp("airflow-celery")
    with airflow_database() as db_url:
        cluster = Cluster(home, extra_env={
            "MESHINSIGHTS_CONFIGS": str(it_configs),
            "MESHINSIGHTS_STORE": str(home / "artifacts"),
            "AIRFLOW_CONN_MESHINSIGHTS_DEMO": f"sqlite:///{demo_db}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        })
        worker = ["celery", "worker", "--queues", queue, "--concurrency", "4",
                  "--celery-hostname", f"{queue}@%h", "--without-gossip", "--without-mingle"]
        try:
            cluster.start("scheduler", "api-server", "dag-processor", ("celery-worker", worker))
            cluster.queue = queue  # type: ignore[attr-defined]
            yield cluster
        finally:
            cluster.stop()


def test_parallel_runs_on_a_celery_worker_lose_no_commit(celery_cluster: Cluster) -> None:
    c = celery_cluster
    dag_ids = [f"minimal__{m}" for m in MACHINES]
    for dag_id in dag_ids:
        c.wait_dag(dag_id)
        c.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    started = time.monotonic()
    triggered: dict[str, list[str]] = {d: [] for d in dag_ids}
    for start, end in WINDOWS:
        for dag_id in dag_ids:
            run = c.request("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                            {"logical_date": None, "conf": {"start": start, "end": end}})
            triggered[dag_id].append(run["dag_run_id"])
    for dag_id in dag_ids:
        c.wait_runs(dag_id, len(WINDOWS), run_type="manual", timeout=600)
    print(f"{len(dag_ids) * len(WINDOWS)} runs on Celery in {time.monotonic() - started:.0f}s")

    # Every task ran on the Celery worker of this test's queue.
    tis = [ti for d, runs in triggered.items() for r in runs for ti in c.task_instances(d, r)]
    assert len(tis) == len(dag_ids) * len(WINDOWS) * 3
    assert {ti["state"] for ti in tis} == {"success"}
    assert {ti["queue"] for ti in tis} == {c.queue}  # type: ignore[attr-defined]
    assert {ti["executor"] or "CeleryExecutor" for ti in tis} == {"CeleryExecutor"}
    # ...and they overlapped: at least two ingests of different machines ran at the same time.
    spans = sorted((datetime.fromisoformat(ti["start_date"]),
                    datetime.fromisoformat(ti["end_date"]), ti["dag_id"])
                   for ti in tis if ti["task_id"] == "ingest")
    assert any(b[0] < a[1] and a[2] != b[2]
               for a, b in zip(spans, spans[1:], strict=False)), spans

    store = DeltaStore(c.env["MESHINSIGHTS_STORE"])
    telemetry = store.read_all("minimal", "telemetry")
    per_machine_day = Counter(zip(telemetry["machine_id"], telemetry["ts"].dt.strftime("%m-%d"),
                                  strict=True))
    assert set(per_machine_day) == {(m, d) for m in MACHINES for d in ("01-01", "01-02")}
    assert len(set(per_machine_day.values())) == 1  # same rows per machine-day: nothing lost
    hourly = store.read_all("minimal", "temperature_hourly")
    assert Counter(hourly["machine_id"]) == {m: 48 for m in MACHINES}

    # One commit per writer: every run's ingest and step commits are in the table histories.
    all_runs = {r for runs in triggered.values() for r in runs}
    for table in ("telemetry", "temperature_hourly", "summary"):
        history = store.history("minimal", table)
        committed = Counter(h.get("meshinsights.run_id") for h in history
                            if h.get("meshinsights.run_id") in all_runs)
        assert committed == Counter({r: 1 for r in all_runs}), table
    runs = store.read_all("minimal", RUNS_TABLE)
    ours = runs[runs["run_id"].isin(all_runs)]
    assert len(ours) == len(tis) and set(ours["state"]) == {"success"}
    assert ours["window_start"].min() == pd.Timestamp(WINDOWS[0][0])
