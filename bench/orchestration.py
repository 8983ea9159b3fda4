"""Benchmark 6 — orchestration overhead: one machine's DAG under ``dag.test()`` against the
local runner over the same windows (interleaved), and per task: Airflow task wall time vs
``run_step`` time vs time inside the step function.

The real scheduler is measured separately by ``bench/scheduler.py`` (a LocalExecutor cluster
driven through the REST API), whose runs cannot be interleaved with these.
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

        out[task] = {
            "task_seconds": med("task_seconds", dag_runs, "tasks"),
            "step_seconds": med("step_seconds", dag_runs, "tasks"),
            "func_seconds": med("func_seconds", dag_runs, "tasks"),
            "local_step_seconds": med("step_seconds", local_runs, "steps"),
        }
    return out


def _measure(root: Path, pipeline: str, url: str, reps: int) -> dict[str, Any]:
    """dag.test and the local runner for one pipeline, in a child sharing the Airflow DB."""
    configs = fixtures.write_configs(root / f"configs-{pipeline}", pipeline, [MACHINE])
    env = _airflow_env(root, configs, root / f"store-airflow-{pipeline}", url)
    dag_id = fixtures.load(configs).machine(MACHINE).dag_id
    result = run_child(
        "bench.orchestration_child",
        [
            "--dag-id",
            dag_id,
            "--machine",
            MACHINE,
            "--reps",
            str(reps),
            "--local-store",
            str(root / f"store-local-{pipeline}"),
        ],
        env=env,
    )
    return {"dag_id": dag_id, **result}


def _report(bench: Bench, pipeline: str, result: dict[str, Any]) -> None:
    dag_runs, local_runs = result["dag_runs"], result["local_runs"]
    dag_wall = median([r["wall"] for r in dag_runs])
    local_wall = median([r["wall"] for r in local_runs])
    bench.add(f"{pipeline}: dag.test() wall, one machine-day", dag_wall, "s")
    bench.add(f"{pipeline}: local runner wall (run_pipeline)", local_wall, "s")
    bench.add(f"{pipeline}: dag.test / local runner", dag_wall / local_wall, "x")
    bench.add(f"{pipeline}: first dag.test in a fresh process", result["warmup"]["dag_wall"], "s")
    per = _per_task(dag_runs, local_runs)
    bench.samples[f"{pipeline}_per_task"] = per
    task_sum = sum(p["task_seconds"] or 0 for p in per.values())
    step_sum = sum(p["step_seconds"] or 0 for p in per.values())
    func_sum = sum(p["func_seconds"] or 0 for p in per.values())
    n = max(1, sum(1 for p in per.values() if p["task_seconds"] is not None))
    bench.add(f"{pipeline}: tasks", n, "")
    bench.add(f"{pipeline}: sum of task wall times (Airflow)", task_sum, "s")
    bench.add(f"{pipeline}: sum of run_step/ingest times in tasks", step_sum, "s")
    bench.add(f"{pipeline}: sum of time inside step functions", func_sum, "s")
    bench.add(
        f"{pipeline}: Airflow overhead per task (task - run_step)", (task_sum - step_sum) / n, "s"
    )
    bench.add(f"{pipeline}: share of DAG wall inside step functions", func_sum / dag_wall, "")


def bench_orchestration(workdir: Path, *, quick: bool) -> Bench:
    reps = 3 if quick else 5
    root = fresh_dir(workdir / "orch")
    url, _ = fixtures.seed_source(root / "source.db", machines=1, days=reps + 2)
    env = _airflow_env(root, root, root, url)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=quiet_env(env),
        cwd=REPO,
    )
    pipelines = ["minimal"] + (
        ["hvac_power"] if fixtures.pick_pipeline(quick=quick) == "hvac_power" else []
    )
    bench = Bench(
        "orchestration",
        "Orchestration overhead: dag.test() vs the local runner",
        params={
            "pipelines": pipelines,
            "machine": MACHINE,
            "window": "1 day at 1 min",
            "reps": reps,
            "airflow": _airflow_version(),
        },
    )
    for pipeline in pipelines:
        try:
            _report(bench, pipeline, _measure(root, pipeline, url, reps))
        except RuntimeError as exc:  # a failing DAG is a finding: record it, measure the rest
            first = next(
                (line for line in reversed(str(exc).splitlines()) if line.strip()), str(exc)
            )
            bench.add(f"{pipeline}: dag.test()", "failed", "", "success", False)
            bench.notes.append(f"{pipeline}: {first[:400]}")
    bench.notes.append("the real scheduler is measured by the `scheduler` benchmark")
    return bench


def _airflow_version() -> str:
    try:
        from importlib.metadata import version

        return version("apache-airflow")
    except Exception:  # metadata missing: not worth failing the benchmark
        return "n/a"
