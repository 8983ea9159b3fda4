"""Benchmark 6b — orchestration overhead under the real scheduler: one machine's DAG run by a
scheduler + api-server + dag-processor (LocalExecutor, PostgreSQL metadata DB), one manual run
per day triggered through the REST API, and per task: Airflow task duration vs ``run_step``
time vs time inside the step function. ``bench/orchestration.py`` measures ``dag.test()``.

The benchmark process only drives the cluster over HTTP: it never imports deltalake or runs a
pipeline itself (deltalake is not fork-safe); every Airflow component is a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import fixtures
from bench.harness import REPO, Bench, fresh_dir, median
from bench.orchestration import _airflow_version

__all__ = ["bench_scheduler"]

logger = logging.getLogger(__name__)

MACHINE = "hvac-001"
#: First day of the seeded demo source (``meshinsights.demo.DEMO_START``).
FIRST_DAY = datetime(2024, 1, 1, tzinfo=UTC)
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
POLL = 0.25  # seconds between run-state polls: the resolution of the trigger→success wall
RUN_TIMEOUT = 900.0


@contextlib.contextmanager
def airflow_database(prefix: str = "airflow_bench") -> Iterator[str]:
    """A fresh PostgreSQL database for the Airflow metadata DB (dropped afterwards); its URL.

    As ``tests/integration/conftest.py``, but an unreachable server is an error, not a skip.
    """
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(
        PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        raise RuntimeError(f"PostgreSQL at 127.0.0.1:5432 not reachable: {exc}") from exc
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


def cluster_env(configs: Path, store: Path, source: Path, db_url: str) -> dict[str, str]:
    """A benchmark cluster's environment: LocalExecutor on ``db_url``, the repo's DAGs and
    plugins, the demo connection on the SQLite ``source``."""
    return {
        "MESHINSIGHTS_CONFIGS": str(configs),
        "MESHINSIGHTS_STORE": str(store),
        "AIRFLOW_CONN_MESHINSIGHTS_DEMO": f"sqlite:///{source}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    }


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _seconds(start: str | None, end: str | None) -> float | None:
    a, b = _ts(start), _ts(end)
    return (b - a).total_seconds() if a and b else None


def _busy(intervals: list[tuple[datetime, datetime]]) -> float:
    """Seconds during which at least one task was running (union of the task intervals)."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total


def _xcom_summary(cluster: Any, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    """A task's ``return_value`` XCom if it is a dict (a run_step/ingest summary), else {}."""
    path = (
        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
        f"{task_id}/xcomEntries/return_value"
    )
    try:
        value = cluster.request("GET", path).get("value")
    except AssertionError:  # 404: the task returned nothing (skipped)
        return {}
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _wait_run(cluster: Any, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
    """Poll the run until it succeeds; a failed run or a timeout raises with the cluster logs."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = cluster.request("GET", path)
        if run["state"] == "success":
            return run
        if run["state"] == "failed":
            states = {t["task_id"]: t["state"] for t in cluster.task_instances(dag_id, run_id)}
            raise RuntimeError(f"{dag_id} run {run_id} failed: {states}\n{cluster.logs()}")
        time.sleep(POLL)
    raise RuntimeError(
        f"{dag_id} run {run_id} still {run.get('state')} after {timeout:.0f}s\n{cluster.logs()}"
    )


def _wait_idle(cluster: Any, dag_id: str, timeout: float) -> int:
    """Until no run of the DAG is queued or running; how many non-manual runs it has had.

    Unpausing a ``catchup: false`` DAG makes the scheduler create its latest scheduled run at
    once; it must not overlap the timed runs.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = cluster.dag_runs(dag_id)
        if all(r["state"] in ("success", "failed") for r in runs):
            return sum(1 for r in runs if r["run_type"] != "manual")
        time.sleep(1)
    raise RuntimeError(f"{dag_id}: runs still active after {timeout:.0f}s\n{cluster.logs()}")


def _one_run(cluster: Any, dag_id: str, day: datetime) -> dict[str, Any]:
    """Trigger one manual run for [day, day + 1) and wait for it; wall and per-task times."""
    conf = {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}
    t = time.perf_counter()
    triggered = cluster.request(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
    )
    run_id = triggered["dag_run_id"]
    run = _wait_run(cluster, dag_id, run_id, RUN_TIMEOUT)
    wall = time.perf_counter() - t
    tasks, intervals = {}, []
    for ti in cluster.task_instances(dag_id, run_id):
        start, end = _ts(ti["start_date"]), _ts(ti["end_date"])
        if start and end:
            intervals.append((start, end))
        s = (
            _xcom_summary(cluster, dag_id, run_id, ti["task_id"])
            if ti["state"] == "success"
            else {}
        )
        tasks[ti["task_id"]] = {
            "state": ti["state"],
            "task_seconds": ti["duration"],
            "wait_seconds": _seconds(ti.get("scheduled_when"), ti["start_date"]),
            "step_seconds": s.get("seconds"),
            "func_seconds": s.get("func_seconds"),
        }
    return {
        "run_id": run_id,
        "wall": wall,
        "run_wall": _seconds(run["start_date"], run["end_date"]),
        "queued_to_start": _seconds(run["queued_at"], run["start_date"]),
        "busy": _busy(intervals),
        "tasks": tasks,
    }


def _measure(root: Path, pipeline: str, db: Path, reps: int) -> dict[str, Any]:
    """A fresh cluster for one pipeline: a warm-up run on day 0, then ``reps`` measured days."""
    from tests.integration.cluster import Cluster

    configs = fixtures.write_configs(root / f"configs-{pipeline}", pipeline, [MACHINE])
    dag_id = fixtures.load(configs).machine(MACHINE).dag_id
    home = fresh_dir(root / f"airflow-{pipeline}")
    with airflow_database("airflow_bench") as db_url:
        cluster = Cluster(
            home, extra_env=cluster_env(configs, root / f"store-{pipeline}", db, db_url)
        )
        try:
            t = time.perf_counter()
            cluster.start("scheduler", "api-server", "dag-processor")
            cluster.wait_dag(dag_id)
            startup = time.perf_counter() - t
            # Runs of a paused DAG never start (see tests/integration/test_backfill.py).
            cluster.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            warmup = _one_run(cluster, dag_id, FIRST_DAY)  # may overlap the scheduled run
            scheduled = _wait_idle(cluster, dag_id, RUN_TIMEOUT)
            runs = [
                _one_run(cluster, dag_id, FIRST_DAY + timedelta(days=i + 1)) for i in range(reps)
            ]
        finally:
            cluster.stop()
    return {
        "dag_id": dag_id,
        "startup": startup,
        "warmup": warmup,
        "scheduled_runs": scheduled,
        "runs": runs,
    }


def _per_task(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for task in runs[0]["tasks"]:

        def med(key: str, t: str = task) -> float | None:
            vals = [r["tasks"][t][key] for r in runs if r["tasks"].get(t, {}).get(key) is not None]
            return round(median(vals), 4) if vals else None

        out[task] = {
            key: med(key)
            for key in ("task_seconds", "wait_seconds", "step_seconds", "func_seconds")
        }
    return out


def _report(bench: Bench, pipeline: str, result: dict[str, Any]) -> None:
    runs = result["runs"]
    wall = median([r["wall"] for r in runs])
    run_wall = median([r["run_wall"] for r in runs])
    per = _per_task(runs)
    bench.samples[f"{pipeline}_per_task"] = per
    bench.samples[f"{pipeline}_runs"] = [
        {k: round(r[k], 4) for k in ("wall", "run_wall", "queued_to_start", "busy")} for r in runs
    ]
    timed = [p for p in per.values() if p["task_seconds"] is not None]
    n = max(1, len(timed))
    task_sum = sum(p["task_seconds"] or 0 for p in timed)
    step_sum = sum(p["step_seconds"] or 0 for p in per.values())
    func_sum = sum(p["func_seconds"] or 0 for p in per.values())
    wait = [p["wait_seconds"] for p in timed if p["wait_seconds"] is not None]
    p = f"{pipeline}:"
    bench.add(f"{p} trigger -> success wall (REST, polled), one machine-day", wall, "s")
    bench.add(f"{p} DAG run wall (start_date -> end_date)", run_wall, "s")
    bench.add(
        f"{p} run queued -> started (scheduler pickup)",
        median([r["queued_to_start"] for r in runs]),
        "s",
    )
    bench.add(
        f"{p} first run after start-up (warm-up, trigger -> success)", result["warmup"]["wall"], "s"
    )
    bench.add(f"{p} scheduled runs created on unpause (not timed)", result["scheduled_runs"], "")
    bench.add(f"{p} cluster start-up until the DAG is parsed", result["startup"], "s")
    bench.add(f"{p} tasks", n, "")
    bench.add(f"{p} sum of task durations (Airflow)", task_sum, "s")
    bench.add(f"{p} sum of run_step/ingest times in tasks", step_sum, "s")
    bench.add(f"{p} sum of time inside step functions", func_sum, "s")
    bench.add(
        f"{p} scheduling/queueing (DAG run wall - sum of task durations)", run_wall - task_sum, "s"
    )
    bench.add(
        f"{p} idle gaps (DAG run wall - time any task was running)",
        median([r["run_wall"] - r["busy"] for r in runs]),
        "s",
    )
    if wait:
        bench.add(f"{p} mean task wait scheduled -> started", sum(wait) / len(wait), "s")
    bench.add(f"{p} Airflow overhead per task (task - run_step)", (task_sum - step_sum) / n, "s")
    bench.add(f"{p} share of DAG run wall inside step functions", func_sum / run_wall, "")


def bench_scheduler(workdir: Path, *, quick: bool) -> Bench:
    reps = 3 if quick else 5
    root = fresh_dir(workdir / "sched")
    db = root / "source.db"
    # meshinsights.demo writes SQLite through pandas/SQLAlchemy: no deltalake in this process.
    fixtures.seed_source(db, machines=1, days=reps + 1)
    pipelines = ["minimal"] + ([] if quick else ["hvac_power"])
    bench = Bench(
        "scheduler",
        "Orchestration overhead under the real scheduler (LocalExecutor)",
        params={
            "pipelines": pipelines,
            "machine": MACHINE,
            "window": "1 day at 1 min",
            "reps": reps,
            "executor": "LocalExecutor",
            "metadata_db": "PostgreSQL",
            "scheduler_heartbeat_sec": 2,
            "parallelism": 4,
            "airflow": _airflow_version(),
        },
    )
    for pipeline in pipelines:
        try:
            _report(bench, pipeline, _measure(root, pipeline, db, reps))
        except (RuntimeError, AssertionError) as exc:  # a failing DAG is a finding: record it
            logger.error("scheduler benchmark, %s: %s", pipeline, exc)
            bench.add(f"{pipeline}: scheduled runs", "failed", "", "success", False)
            bench.notes.append(f"{pipeline}: {str(exc)[:400]}")
    bench.notes.append(
        "Real scheduler: airflow scheduler + api-server + dag-processor as separate processes "
        "(tests/integration/cluster.py), LocalExecutor (parallelism 4), PostgreSQL metadata DB, "
        "scheduler heartbeat 2 s, dag-processor refresh 5 s; one fresh cluster per pipeline. "
        f"After a warm-up run on day 0, {reps} manual runs (one at a time, REST trigger with "
        "conf start/end for one day) are timed from the POST to the poll that sees success "
        f"(poll every {POLL} s); DAG run wall is the run's own start_date -> end_date; task "
        "durations are the task instances' duration; run_step and step-function seconds come "
        "from each task's return_value XCom. Medians over the runs. Independent tasks run in "
        "parallel, so DAG run wall - sum of task durations can be negative; the idle-gap row "
        "(run wall minus the union of the task intervals) is the time no task was running."
    )
    return bench
