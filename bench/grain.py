"""Benchmark 11 — per-machine DAGs vs the grouped grain under the real scheduler.

A scheduler + api-server + dag-processor (LocalExecutor, PostgreSQL metadata DB, as
``bench/scheduler.py``) over a fleet of ``minimal`` machines (manual DAGs: ``schedule: null``,
so unpausing creates no runs). After one warm-up run, every DAG of the measured set is
triggered at once for the same day and the wall from the first POST to the last success is
the fleet's machine-day wall: machine-days per hour = machines / wall × 3600. The local
runner's cost per machine-day over the same source (``bench/grain_child.py``, a fresh
interpreter: this process never imports deltalake) gives Airflow's cost factor.

Scenarios (``BENCH_GRAIN``, default ``own:100,group:100x100,group:1000x100@200``; a
``+celery`` suffix runs one on the CeleryExecutor with one 4-slot worker on the local Redis):
``own:N`` — N per-machine DAGs, all triggered; ``group:NxG`` — N machines in groups of G, all
groups triggered; ``group:NxG@S`` — the fleet's configs are N machines (the dag-processor
parses them all) but only the first S machines' groups are triggered: a stated sample,
extrapolated linearly to N (groups are independent DAG runs queued on the same slots).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.harness import Bench, fresh_dir, median, run_child
from bench.orchestration import _airflow_version
from bench.scheduler import RUN_TIMEOUT, _wait_run, airflow_database, cluster_env
from meshinsights.demo import machine_ids

__all__ = ["bench_grain"]

logger = logging.getLogger(__name__)

#: The pipeline of every machine (``BENCH_GRAIN_PIPELINE``; the figures in BENCHMARKS.md §11
#: name theirs).
PIPELINE = os.environ.get("BENCH_GRAIN_PIPELINE", "minimal")
DAY0 = datetime(2024, 1, 1, tzinfo=UTC)  # warm-up
DAY1 = DAY0 + timedelta(days=1)  # measured
DEFAULT = "own:100,group:100x100,group:1000x100@200"


def _parse(spec: str) -> dict[str, Any]:
    body, _, executor = spec.partition("+")
    kind, _, rest = body.partition(":")
    common = {"name": spec, "celery": executor == "celery"}
    if kind == "own":
        n = int(rest)
        return {**common, "kind": "own", "machines": n, "group": 1, "sample": n}
    size, _, sample = rest.partition("@")
    n, _, g = size.partition("x")
    return {
        **common,
        "kind": "group",
        "machines": int(n),
        "group": int(g),
        "sample": int(sample or n),
    }


def _celery(env: dict[str, str], db_url: str) -> list[str]:
    """CeleryExecutor on the local Redis (db 10) with a private queue; the worker's command."""
    queue = f"grain_{uuid.uuid4().hex[:8]}"
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6379/10",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        }
    )
    return [
        "celery",
        "worker",
        "--queues",
        queue,
        "--concurrency",
        "4",
        "--celery-hostname",
        f"{queue}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def _configs(root: Path, scenario: dict[str, Any]) -> tuple[Path, list[str], list[list[str]]]:
    """The configs folder, the DAG ids to trigger, and each DAG's machines."""
    ids = machine_ids(scenario["machines"])
    folder = fixtures.write_configs(root / f"configs-{scenario['name']}", PIPELINE, ids)
    per_dag: list[list[str]] = []
    for i, mid in enumerate(ids):
        path = folder / "machines" / f"{mid}.yaml"
        text = path.read_text() + "schedule: null\n"
        if scenario["kind"] == "group":
            text += f"group: g{i // scenario['group']:04d}\n"
            if i % scenario["group"] == 0:
                per_dag.append([])
            per_dag[-1].append(mid)
        else:
            per_dag.append([mid])
        path.write_text(text)
    loaded = fixtures.load(folder)
    dags = [loaded.machine(m[0]).dag_id for m in per_dag]
    sampled = [
        (d, m)
        for d, m in zip(dags, per_dag, strict=True)
        if int(m[0].split("-")[1]) <= scenario["sample"]
    ]
    return folder, [d for d, _ in sampled], [m for _, m in sampled]


def _wait_dag(cluster: Any, dag_id: str, timeout: float) -> None:
    """Until the dag-processor has serialized ``dag_id`` (asked by id: a fleet has more DAGs
    than one page of the DAG list)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cluster.request("GET", f"/api/v2/dags/{dag_id}")
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{dag_id} never appeared:\n{cluster.logs()}") from None
            time.sleep(2)


def _trigger(cluster: Any, dag_id: str, day: datetime, machines: list[str] | None) -> str:
    conf: dict[str, Any] = {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}
    if machines:
        conf["machines"] = machines
    return str(
        cluster.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
        )["dag_run_id"]
    )


def _measure(root: Path, scenario: dict[str, Any], db: Path) -> dict[str, Any]:
    from tests.integration.cluster import Cluster

    configs, dags, members = _configs(root, scenario)
    home = fresh_dir(root / f"airflow-{scenario['name']}")
    with airflow_database("airflow_grain") as db_url:
        env = cluster_env(configs, root / f"store-{scenario['name']}", db, db_url)
        worker = _celery(env, db_url) if scenario["celery"] else None
        cluster = Cluster(home, extra_env=env)
        try:
            t = time.perf_counter()
            components: list[Any] = ["scheduler", "api-server", "dag-processor"]
            cluster.start(*components, *([("celery-worker", worker)] if worker else []))
            for dag_id in dags:
                _wait_dag(cluster, dag_id, timeout=600)
                cluster.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            startup = time.perf_counter() - t
            warm = _trigger(
                cluster, dags[0], DAY0, members[0][:1] if scenario["kind"] == "group" else None
            )
            _wait_run(cluster, dags[0], warm, RUN_TIMEOUT)
            t = time.perf_counter()
            runs = [(d, _trigger(cluster, d, DAY1, None)) for d in dags]
            walls = []
            for dag_id, run_id in runs:
                _wait_run(cluster, dag_id, run_id, RUN_TIMEOUT * 4)
                walls.append(time.perf_counter() - t)
            wall = time.perf_counter() - t
            tasks = sum(len(cluster.task_instances(d, r)) for d, r in runs)
        finally:
            cluster.stop()
    sampled = sum(len(m) for m in members)
    return {
        "startup": startup,
        "wall": wall,
        "dag_runs": len(runs),
        "tasks": tasks,
        "machines_run": sampled,
        "configs": scenario["machines"],
        "median_dag_run_done": median(walls),
    }


def bench_grain(workdir: Path, *, quick: bool) -> Bench:
    specs = os.environ.get("BENCH_GRAIN") or ("own:4,group:8x4" if quick else DEFAULT)
    scenarios = [_parse(s) for s in specs.split(",")]
    root = fresh_dir(workdir / "grain")
    db = root / "source.db"
    most = max(s["sample"] for s in scenarios)
    fixtures.seed_source(db, machines=most, days=2)
    local = run_child(
        "bench.grain_child",
        [
            "--db",
            str(db),
            "--machines",
            str(min(most, 20)),
            "--pipeline",
            PIPELINE,
            "--workdir",
            str(root),
        ],
    )
    bench = Bench(
        "grain",
        "Per-machine DAGs vs the grouped grain under the real scheduler (LocalExecutor)",
        params={
            "pipeline": PIPELINE,
            "scenarios": specs,
            "window": "1 day at 1 min",
            "executor": "LocalExecutor",
            "parallelism": 4,
            "airflow": _airflow_version(),
        },
    )
    per_day = float(local["seconds_per_machine_day"])
    bench.add("local runner: seconds per machine-day (run_pipeline, warm)", per_day, "s")
    for s in scenarios:
        try:
            r = _measure(root, s, db)
        except (RuntimeError, AssertionError) as exc:  # a failing run is a finding: record it
            logger.error("grain benchmark, %s: %s", s["name"], exc)
            bench.add(f"{s['name']}: runs", "failed", "", "success", False)
            bench.notes.append(f"{s['name']}: {str(exc)[:400]}")
            continue
        per_machine_day = r["wall"] / r["machines_run"]
        p = f"{s['name']}:"
        bench.samples[s["name"]] = r
        bench.add(f"{p} machines triggered (of {r['configs']} configs)", r["machines_run"], "")
        bench.add(f"{p} DAG runs / task instances", f"{r['dag_runs']} / {r['tasks']}", "")
        bench.add(f"{p} wall, all triggered DAG runs of one day", r["wall"], "s")
        bench.add(f"{p} machine-days per hour", 3600 / per_machine_day, "")
        if r["machines_run"] < r["configs"]:
            bench.add(
                f"{p} extrapolated wall for all {r['configs']} machines (linear)",
                per_machine_day * r["configs"],
                "s",
            )
        bench.add(
            f"{p} Airflow cost per machine-day over the local runner's",
            per_machine_day / per_day,
            "x",
        )
        bench.add(f"{p} cluster start-up until every triggered DAG is parsed", r["startup"], "s")
    bench.notes.append(
        "Each scenario: a fresh cluster (scheduler + api-server + dag-processor; LocalExecutor, "
        "or with +celery the CeleryExecutor and one 4-slot worker on Redis; parallelism 4, "
        "PostgreSQL metadata DB); machine configs with schedule: null (manual "
        "DAGs); one warm-up run of one machine on day 0, then every measured DAG triggered at "
        "once over the REST API for day 1; wall from the first POST to the last run's success. "
        "Local runner: run_pipeline for day 1 after day 0 for the first machines, warm, in a "
        "fresh interpreter. Cost factor = (wall / machines) / local seconds per machine-day."
    )
    return bench
