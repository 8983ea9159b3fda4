"""Benchmark 6 — orchestration overhead: one machine's DAG under ``dag.test()`` against the
local runner over the same windows (interleaved), and per task: Airflow task wall time vs
``run_step`` time vs time inside the step function.

The real scheduler (``airflow standalone``) is not measured here: it adds scheduling latency
(seconds of heartbeat and parsing) that says more about its configuration than about this
framework.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.harness import REPO, Bench, fresh_dir, median, quiet_env, run_child

__all__ = ["bench_orchestration"]

logger = logging.getLogger(__name__)

MACHINE = "hvac-001"


def _airflow_env(root: Path, configs: Path, store: Path, url: str) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MESHINSIGHTS_CONFIGS": str(configs),
        "MESHINSIGHTS_STORE": str(store),
        "AIRFLOW_CONN_MESHINSIGHTS_DEMO": url,
    }


def _per_task(dag_runs: list[dict[str, Any]], local_runs: list[dict[str, Any]]) -> dict:
    out: dict[str, dict[str, float | None]] = {}
    for task in dag_runs[0]["tasks"]:
        def med(key: str, runs: list[dict[str, Any]], field: str, t: str = task) -> float | None:
            vals = [r[field][t][key] for r in runs if r[field].get(t, {}).get(key) is not None]
            return round(median(vals), 4) if vals else None

        out[task] = {"task_seconds": med("task_seconds", dag_runs, "tasks"),
                     "step_seconds": med("step_seconds", dag_runs, "tasks"),
                     "func_seconds": med("func_seconds", dag_runs, "tasks"),
                     "local_step_seconds": med("step_seconds", local_runs, "steps")}
    return out


def bench_orchestration(workdir: Path, *, quick: bool) -> Bench:
    reps = 3 if quick else 5
    pipeline = fixtures.pick_pipeline()
    root = fresh_dir(workdir / "orch")
    url, _ = fixtures.seed_source(root / "source.db", machines=1, days=reps + 2)
    configs = fixtures.write_configs(root / "configs", pipeline, [MACHINE])
    env = _airflow_env(root, configs, root / "store-airflow", url)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   capture_output=True, env=quiet_env(env), cwd=REPO)
    dag_id = fixtures.load(configs).machine(MACHINE).dag_id
    result = run_child("bench.orchestration_child",
                       ["--dag-id", dag_id, "--machine", MACHINE, "--reps", str(reps),
                        "--local-store", str(root / "store-local")], env=env)
    dag_runs, local_runs = result["dag_runs"], result["local_runs"]
    bench = Bench("orchestration", "Orchestration overhead: dag.test() vs the local runner",
                  params={"pipeline": pipeline, "dag_id": dag_id, "window": "1 day at 1 min",
                          "reps": reps, "airflow": _airflow_version()})
    dag_wall = median([r["wall"] for r in dag_runs])
    local_wall = median([r["wall"] for r in local_runs])
    bench.add("dag.test() wall, one machine-day", dag_wall, "s")
    bench.add("local runner wall (run_pipeline)", local_wall, "s")
    bench.add("dag.test / local runner", dag_wall / local_wall, "x")
    per = _per_task(dag_runs, local_runs)
    bench.samples["per_task"] = per
    task_sum = sum(p["task_seconds"] or 0 for p in per.values())
    step_sum = sum(p["step_seconds"] or 0 for p in per.values())
    func_sum = sum(p["func_seconds"] or 0 for p in per.values())
    bench.add("sum of task wall times (Airflow)", task_sum, "s")
    bench.add("sum of run_step/ingest times inside tasks", step_sum, "s")
    bench.add("sum of time inside step functions", func_sum, "s")
    n = max(1, sum(1 for p in per.values() if p["task_seconds"] is not None))
    bench.add("Airflow overhead per task (task - run_step)", (task_sum - step_sum) / n, "s")
    bench.add("share of DAG wall inside step functions", func_sum / dag_wall, "")
    bench.notes.append("real scheduler not measured (optional in the brief); see BENCHMARKS.md")
    return bench


def _airflow_version() -> str:
    try:
        from importlib.metadata import version

        return version("apache-airflow")
    except Exception:  # metadata missing: not worth failing the benchmark
        return "n/a"
