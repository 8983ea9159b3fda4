"""Benchmark 12 — run partitions: overwrite and read one run of a machine whose tables hold 10
and 1,000 runs. Target: flat (1,000 ≤ 1.5 × 10), like the time partitions (benchmark 3).

Each run is 10 minutes of 1 Hz x/y positions (1,200 rows), a new run every 30 minutes, each
written as its own run-window overwrite (what a pipeline windowed by run does per run), with
the store's auto compaction at 8 files per machine-month. The run index gets one daily
ingest commit. Measured, interleaved: a warm overwrite of a run in the middle, a read of it,
a cold overwrite (a new store object: an Airflow task's first touch) and the run-index lookup
that turns a run id into its window (``run_spans``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.harness import Bench, fresh_dir, interleaved, median

__all__ = ["bench_runs"]

NS = "bench_runs"
TABLE = "run_samples"
MACHINE = "robot-01"
START = pd.Timestamp("2024-01-01", tz="UTC")
EVERY = pd.Timedelta(minutes=30)


def _run_id(k: int) -> str:
    return f"run-{k:05d}"


def _run_frame(k: int, seed: int = 0) -> pd.DataFrame:
    t0 = START + k * EVERY
    ts = pd.date_range(t0, periods=600, freq="1s", tz="UTC").as_unit("us")
    rng = np.random.default_rng([seed, k])
    return pd.DataFrame(
        {
            "machine_id": MACHINE,
            "ts": np.tile(ts, 2),
            "metric": np.repeat(["x", "y"], 600),
            "value": rng.normal(0, 1, 1200).cumsum().round(3),
            "run_id": _run_id(k),
        }
    )


def _window(k: int) -> Any:
    from meshinsights.model import Window

    t0 = START + k * EVERY
    return Window(
        t0.to_pydatetime(),
        (t0 + pd.Timedelta(seconds=599, microseconds=1)).to_pydatetime(),
        _run_id(k),
    )


def _build(store: Any, runs: int) -> float:
    from meshinsights.engine.runs import RUN_INDEX_SCHEMA, index_window
    from meshinsights.model import RUN_INDEX, Window

    t = time.perf_counter()
    for k in range(runs):
        store.overwrite(NS, TABLE, _run_frame(k), machine_ids=MACHINE, window=_window(k))
    days = int((runs * EVERY) / pd.Timedelta(days=1)) + 1
    for d in range(days):
        day = Window(
            (START + pd.Timedelta(days=d)).to_pydatetime(),
            (START + pd.Timedelta(days=d + 1)).to_pydatetime(),
        )
        ks = [k for k in range(runs) if day.start <= (START + k * EVERY).to_pydatetime() < day.end]
        clean = pd.concat([_run_frame(k) for k in ks], ignore_index=True)
        index, _ = index_window(store, NS, MACHINE, day, clean, pd.Timestamp.now("UTC"))
        store.overwrite(
            NS, RUN_INDEX, index, machine_ids=MACHINE, window=day, schema=RUN_INDEX_SCHEMA
        )
    return time.perf_counter() - t


def bench_runs(workdir: Path, *, quick: bool) -> Bench:
    from meshinsights.engine.runs import run_spans
    from meshinsights.store import DeltaStore

    sizes = [10, 100] if quick else [10, 1000]
    reps = 3 if quick else 7
    bench = Bench(
        "runs",
        "Run partitions: one run of a machine among 10 and 1,000 runs",
        params={"runs": sizes, "rows_per_run": 1200, "run_every": "30min", "reps": reps},
    )
    stores: dict[int, Any] = {}
    for n in sizes:
        store = DeltaStore(str(fresh_dir(workdir / f"r{n}")))
        bench.samples[f"build_seconds_{n}"] = round(_build(store, n), 2)
        stores[n] = store
    variants: dict[str, Any] = {}
    for n, store in stores.items():
        k = n // 2
        frame, window = _run_frame(k, seed=1), _window(k)
        variants[f"overwrite_{n}"] = lambda s=store, f=frame, w=window: s.overwrite(
            NS, TABLE, f, machine_ids=MACHINE, window=w
        )
        variants[f"overwrite_cold_{n}"] = lambda s=store, f=frame, w=window: DeltaStore(
            s.root
        ).overwrite(NS, TABLE, f, machine_ids=MACHINE, window=w)
        variants[f"read_{n}"] = lambda s=store, w=window: s.read(NS, TABLE, MACHINE, w)
        variants[f"index_lookup_{n}"] = lambda s=store: run_spans(s, NS, MACHINE)
    times = interleaved(variants, reps)
    bench.samples["times"] = {k: [round(x, 4) for x in v] for k, v in times.items()}
    small, big = sizes[0], sizes[-1]
    check = stores[big].read(NS, TABLE, MACHINE, _window(big // 2))
    bench.add(f"rows read for one run @ {big} runs", len(check), "rows", "1200", len(check) == 1200)
    for op in ("overwrite", "overwrite_cold", "read", "index_lookup"):
        for n in sizes:
            bench.add(f"{op} of one run @ {n} runs", median(times[f"{op}_{n}"]) * 1000, "ms")
        ratio = median(times[f"{op}_{big}"]) / median(times[f"{op}_{small}"])
        bench.add(f"{op} {big} / {small} runs", ratio, "x", "<= 1.5", ratio <= 1.5)
    return bench
