"""Benchmark inputs: a seeded demo source, a configs folder for N machines, ingested telemetry."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from bench.harness import REPO

__all__ = ["pick_pipeline", "write_configs", "seed_source", "ingest", "load"]

logger = logging.getLogger(__name__)

PREFERRED = "hvac_power"
FALLBACK = "minimal"


def pick_pipeline(*, quick: bool = False, configs_dir: Path = REPO / "configs") -> str:
    """``$BENCH_PIPELINE`` if set; else ``hvac_power`` when it loads cleanly, else ``minimal``.

    Quick (smoke) runs use ``minimal``: they check the harness, not the numbers.
    """
    from meshinsights.config import load_configs

    loaded = load_configs(configs_dir)
    forced = os.environ.get("BENCH_PIPELINE")
    if forced:
        if forced not in loaded.pipelines:
            raise RuntimeError(
                f"BENCH_PIPELINE={forced!r} is not a valid pipeline in "
                f"{configs_dir}; valid: {sorted(loaded.pipelines)}"
            )
        return forced
    if quick:
        return FALLBACK
    return PREFERRED if PREFERRED in loaded.pipelines else FALLBACK


def write_configs(folder: Path, pipeline: str, machines: list[str]) -> Path:
    """A configs folder with the repo's pipelines and defaults and one file per machine."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "machines").mkdir(parents=True)
    shutil.copytree(REPO / "configs" / "pipelines", folder / "pipelines")
    shutil.copy(REPO / "configs" / "machines" / "_defaults.yaml", folder / "machines")
    for mid in machines:
        (folder / "machines" / f"{mid}.yaml").write_text(
            f"machine_id: {mid}\npipeline: {pipeline}\nretries: 0\ntags: [bench]\n"
        )
    return folder


def load(folder: Path) -> Any:
    """Load a configs folder; any config error stops the benchmark with its message."""
    from meshinsights.config import load_configs

    loaded = load_configs(folder)
    if loaded.errors:
        first = next(iter(loaded.errors.items()))
        raise RuntimeError(f"benchmark configs do not load: {first}")
    return loaded


def seed_source(path: Path, *, machines: int, days: int) -> tuple[str, list[str]]:
    """Seed the demo SQLite source; returns its URL and the machine ids written."""
    from meshinsights.demo import seed

    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    fleet = seed(url, machines=machines, days=days, seed=7)
    return url, list(fleet.machines)


def ingest(configs: Any, machine_id: str, window: Any, store: Any, url: str) -> dict[str, Any]:
    """Ingest one machine-window from the demo source into the store (one window, no split)."""
    from meshinsights.engine.ingest import run_ingest

    machine = configs.machine(machine_id)
    return run_ingest(
        machine,
        configs.pipeline_of(machine),
        window,
        store,
        run_id="bench",
        resolver=lambda _conn_id: url,
    )
