"""Benchmark 8 — DAG parsing at fleet size: each DAG file parsed in its own fresh process, as
Airflow's dag-processor does, at 10 / 1,000 / 10,000 machine configs; and a task's start cost
(its DAG file parsed with the parsing context set, then its machine's config) at 10 vs 10,000.

Machine configs are ``machine_id`` + ``pipeline: hvac_power`` (20 tasks a DAG). The one-file
layout of before (``build_dags()`` of the whole fleet in one file) is parsed beside the shards
at the sizes where it fits in Airflow's 30 s import timeout.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from bench.harness import REPO, Bench, fresh_dir, median, run_child

__all__ = ["bench_parsing"]

logger = logging.getLogger(__name__)

PIPELINE = "hvac_power"
ONE_FILE = '''"""The one-file layout of before, for comparison (Airflow DAG file)."""
from meshinsights.airflow.dag_factory import build_dags

globals().update(build_dags()[0])
'''


def _configs(root: Path, n: int) -> Path:
    folder = fresh_dir(root / f"configs-{n}")
    shutil.copytree(REPO / "configs" / "pipelines", folder / "pipelines")
    (folder / "machines").mkdir()
    shutil.copy(REPO / "configs" / "machines" / "_defaults.yaml", folder / "machines")
    for i in range(n):
        (folder / "machines" / f"unit-{i:05d}.yaml").write_text(
            f"machine_id: unit-{i:05d}\npipeline: {PIPELINE}\n"
        )
    return folder


def _env(root: Path, configs: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "MESHINSIGHTS_CONFIGS": str(configs),
        "MESHINSIGHTS_STORE": str(root / "store"),
    }


def _parse(path: Path, env: dict[str, str], dag_id: str | None = None) -> dict[str, Any]:
    args = [str(path)] + (["--dag-id", dag_id] if dag_id else [])
    return run_child("bench.parsing_child", args, env=env, timeout=600)


def _dag_files() -> list[Path]:
    return sorted(
        p for p in (REPO / "dags").glob("*.py") if p.name != "meshinsights_maintenance.py"
    )


def _fleet_parse(bench: Bench, root: Path, n: int, *, one_file: bool) -> None:
    configs = _configs(root, n)
    env = _env(root, configs)
    per_file = {p.name: _parse(p, env) for p in _dag_files()}
    shards = {k: v for k, v in per_file.items() if k.startswith("meshinsights_shard_")}
    errors = [e for v in per_file.values() for e in v["import_errors"]]
    seconds = [v["parse_seconds"] for v in shards.values()]
    dags = sum(v["dags"] for v in shards.values())
    check = per_file["meshinsights_config_errors.py"]["parse_seconds"]
    bench.add(
        f"{n:,} machines: DAGs loaded / import errors",
        f"{dags:,} / {len(errors)}",
        target=f"{n:,} / 0",
        ok=dags == n and not errors,
    )
    bench.add(
        f"{n:,} machines: slowest shard file",
        max(seconds),
        "s",
        "< 10 s (timeout/3)",
        max(seconds) < 10,
    )
    bench.add(f"{n:,} machines: median shard file", median(seconds), "s")
    bench.add(
        f"{n:,} machines: config-errors file (validates all)", check, "s", "< 10 s", check < 10
    )
    bench.add(f"{n:,} machines: all files, total", sum(seconds) + check, "s")
    sample: dict[str, Any] = {"per_file": per_file, "dags": dags}
    if dags:
        built = [(v["parse_seconds"], v["dags"]) for v in shards.values() if v["dags"]]
        empty = [v["parse_seconds"] for v in shards.values() if not v["dags"]]
        if empty:
            sample["empty_shard_seconds"] = median(empty)
        sample["per_dag_ms_marginal"] = _marginal_ms(built)
    if one_file:
        folder = fresh_dir(root / f"one-file-{n}")
        (folder / "meshinsights_one_file.py").write_text(ONE_FILE)
        before = _parse(folder / "meshinsights_one_file.py", env)
        bench.add(
            f"{n:,} machines: one file of the whole fleet (before)", before["parse_seconds"], "s"
        )
        sample["one_file"] = before
    bench.samples[f"parse_{n}"] = sample


def _marginal_ms(built: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of parse seconds over DAGs per file: the cost of one more DAG."""
    if len({d for _, d in built}) < 2:
        return None
    mean_d = sum(d for _, d in built) / len(built)
    mean_s = sum(s for s, _ in built) / len(built)
    cov = sum((d - mean_d) * (s - mean_s) for s, d in built)
    var = sum((d - mean_d) ** 2 for _, d in built)
    return round(1000 * cov / var, 2)


def _task_start(bench: Bench, root: Path, sizes: tuple[int, int], reps: int) -> None:
    """A task's start at a small and a big fleet, interleaved (small, big, small, big, ...)."""
    from meshinsights.airflow.shards import shard_count, shard_file_name
    from meshinsights.config.fleet import shard_of

    mid = "unit-00007"
    dag_id = f"{PIPELINE}__{mid}"
    path = REPO / "dags" / shard_file_name(shard_of(mid, shard_count()))
    envs = {n: _env(root, root / f"configs-{n}") for n in sizes}
    times: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for rep in range(-1, reps):
        for n in sizes:
            result = _parse(path, envs[n], dag_id)
            if result["dags"] != 1:
                raise RuntimeError(f"a task's parse at {n} machines built {result['dags']} DAGs")
            if rep >= 0:
                times[n].append(result)
    small, big = sizes
    med = {n: median([r["start_seconds"] for r in times[n]]) for n in sizes}
    parse = {n: median([r["parse_seconds"] for r in times[n]]) for n in sizes}
    bench.add(f"task start (parse with context + its config), {small:,} machines", med[small], "s")
    bench.add(f"task start, {big:,} machines", med[big], "s")
    ratio = med[big] / med[small]
    bench.add(f"task start {big:,} / {small:,}", ratio, "x", "<= 1.2x", ratio <= 1.2)
    bench.samples["task_start"] = {
        "start_median": med,
        "parse_median": parse,
        "runs": {str(n): times[n] for n in sizes},
    }


def bench_parsing(workdir: Path, *, quick: bool = False) -> Bench:
    from meshinsights.airflow.shards import shard_count

    root = fresh_dir(workdir)
    sizes = (10, 200) if quick else (10, 1000, 10000)
    reps = 3 if quick else 5
    bench = Bench(
        name="parsing",
        title="DAG parsing at fleet size (a fresh process per file) and a task's start cost",
        params={
            "sizes": sizes,
            "pipeline": PIPELINE,
            "shards": shard_count(),
            "reps": reps,
            "load": os.getloadavg(),
        },
    )
    for n in sizes:
        logger.info("parsing: %d machines", n)
        _fleet_parse(bench, root, n, one_file=n <= 1000)
    _task_start(bench, root, (sizes[0], sizes[-1]), reps)
    bench.params["load_after"] = os.getloadavg()
    bench.notes.append(
        "Each file is parsed in a new interpreter that has imported Airflow's DagBag first, as "
        "the dag-processor's per-file processes have; the time is DagBag(file) alone."
    )
    return bench
