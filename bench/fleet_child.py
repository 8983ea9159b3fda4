"""One fleet run in a fresh interpreter: ``run_pipeline`` per machine, then one JSON line.

Started by :mod:`bench.fleet` with ``python -m bench.fleet_child`` (a spawned process, never
a fork), so its peak RSS belongs to this run alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb() -> float:
    """This process's peak resident size since exec (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that across exec from the parent that
    started us, so a child of a 580 MB benchmark driver reported a 580 MB peak after its
    first machine (the 2026-11-22 afternoon figures).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _window_mb(store: Any, namespace: str, machine: str, window: Any) -> float:
    """In-memory size of one machine-window of telemetry as the runner holds it (pandas)."""
    df = store.read(namespace, "telemetry", machine, window)
    return float(df.memory_usage(deep=True).sum()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2024-01-02")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from meshinsights.config import load_configs
    from meshinsights.engine.runner import run_pipeline
    from meshinsights.model import Window
    from meshinsights.store import DeltaStore

    configs = load_configs(args.configs)
    store = DeltaStore(args.store)
    window = Window.parse(args.start, args.end)
    machines = sorted(configs.machines)
    baseline = _rss_mb()
    per_machine, rss, rows, peak_after_first = [], [], 0, 0.0
    started = time.perf_counter()
    for mid in machines:
        t = time.perf_counter()
        summaries = run_pipeline(
            configs, mid, window, store, run_id="bench", resolver=lambda _c: args.source
        )
        per_machine.append(time.perf_counter() - t)
        rows += sum(int(s.get("rows_in", 0)) for s in summaries if s.get("step") == "ingest")
        rss.append(_rss_mb())
        if len(rss) == 1:
            peak_after_first = _peak_mb()
    wall = time.perf_counter() - started
    namespace = configs.pipeline_of(configs.machine(machines[0])).name
    window_mb = max(_window_mb(store, namespace, m, window) for m in machines[:5])
    print(
        json.dumps(
            {
                "machines": len(machines),
                "rows": rows,
                "wall_seconds": wall,
                "per_machine_seconds": per_machine,
                "rss_mb_after_each": rss,
                "baseline_rss_mb": baseline,
                "peak_rss_mb": _peak_mb(),
                "peak_rss_mb_after_first_machine": peak_after_first,
                "window_mb": window_mb,
                "pipeline": namespace,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
