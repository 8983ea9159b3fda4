"""Benchmark 3 — partition-write scaling: overwrite one machine-day and read one machine-window
in tables holding 10, 100 and 1,000 machines × 30 days. Target: flat (1,000 ≤ 1.5 × 10).

The tables are built the way a grouped daily run writes them: one commit per day covering
every machine, so each machine-day is one file, as in production. Besides the store's own
read, the largest table is read through the alternatives deltalake 1.6 offers, to show what
a store change would gain. (deltalake is imported here, in the benchmark only, to measure
those alternatives; the library keeps it inside ``meshinsights/store/delta.py``.)
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.harness import Bench, fresh_dir, interleaved, median

__all__ = ["bench_partitions", "build_table", "day_frame"]

logger = logging.getLogger(__name__)

NS = "bench"
TABLE = "telemetry"
START = pd.Timestamp("2024-01-01", tz="UTC")


def day_frame(machines: list[str], day: int, *, seed: int = 0) -> pd.DataFrame:
    """One day of 1-minute ``temperature`` telemetry for ``machines`` (1,440 rows each)."""
    ts = pd.date_range(START + pd.Timedelta(days=day), periods=1440, freq="1min", tz="UTC")
    n = len(machines)
    rng = np.random.default_rng([seed, day])
    return pd.DataFrame({
        "machine_id": np.repeat(np.asarray(machines, dtype=object), 1440),
        "ts": np.tile(ts.as_unit("us"), n),
        "metric": "temperature",
        "value": (21 + rng.normal(0, 0.5, n * 1440)).round(3),
        "unit": "degC",
        "ingested_at": np.tile(ts.as_unit("us"), n),
    })


def _window(day: int, days: int = 1) -> Any:
    from meshinsights.model import Window

    return Window((START + pd.Timedelta(days=day)).to_pydatetime(),
                  (START + pd.Timedelta(days=day + days)).to_pydatetime())


def build_table(store: Any, machines: list[str], days: int) -> float:
    """Write ``days`` daily commits covering all machines; returns seconds."""
    from meshinsights.model import TELEMETRY_SCHEMA

    t = time.perf_counter()
    for d in range(days):
        store.overwrite(NS, TABLE, day_frame(machines, d), machine_ids=machines,
                        window=_window(d), schema=TELEMETRY_SCHEMA)
    return time.perf_counter() - t


def _ids(n: int) -> list[str]:
    return [f"m{i:04d}" for i in range(n)]


def _alternatives(uri: str, machine: str, window: Any, columns: list[str] | None) -> dict:
    """Read paths deltalake 1.6 offers for the same machine-window (for the store's owner)."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable, QueryBuilder

    from meshinsights.store.predicates import window_predicate

    filters = [("machine_id", "in", [machine]), ("month", "in", window.months()),
               ("ts", ">=", pd.Timestamp(window.start)), ("ts", "<", pd.Timestamp(window.end))]
    expr = pq.filters_to_expression(filters)
    part = f"machine_id = '{machine}' AND month IN ({', '.join(repr(m) for m in window.months())})"

    def dataset_pruned() -> None:
        dt = DeltaTable(uri)
        dt.to_pyarrow_dataset(file_pruning_predicate=part).to_table(columns=columns, filter=expr)

    def query_builder() -> None:
        dt = DeltaTable(uri)
        sql = f"SELECT * FROM t WHERE {window_predicate([machine], window)}"
        QueryBuilder().register("t", dt).execute(sql).read_all()

    def open_only() -> None:
        DeltaTable(uri)

    return {"open_only": open_only, "dataset_pruned": dataset_pruned,
            "query_builder": query_builder}


def bench_partitions(workdir: Path, *, quick: bool) -> Bench:
    from meshinsights.model import TELEMETRY_SCHEMA
    from meshinsights.store import DeltaStore

    sizes = [10, 30] if quick else [10, 100, 1000]
    days = 5 if quick else 30
    reps = 3 if quick else 7
    bench = Bench("partitions", "Partition-write scaling: one machine-day in growing tables",
                  params={"machines": sizes, "days": days, "rows_per_machine_day": 1440,
                          "commits_to_build": days, "reps": reps})
    stores: dict[int, Any] = {}
    for n in sizes:
        store = DeltaStore(str(fresh_dir(workdir / f"n{n}")))
        bench.samples[f"build_seconds_{n}"] = round(build_table(store, _ids(n), days), 2)
        stores[n] = store
    mid_day = days // 2
    window = _window(mid_day)
    week = _window(max(0, mid_day - 3), min(7, days))
    frames = {n: day_frame([_ids(n)[n // 2]], mid_day, seed=1) for n in sizes}
    variants: dict[str, Any] = {}
    for n in sizes:
        store, machine = stores[n], _ids(n)[n // 2]
        variants[f"overwrite_{n}"] = (lambda s=store, m=machine, f=frames[n]: s.overwrite(
            NS, TABLE, f, machine_ids=m, window=window, schema=TELEMETRY_SCHEMA))
        variants[f"read_day_{n}"] = lambda s=store, m=machine: s.read(NS, TABLE, m, window)
        variants[f"read_week_{n}"] = lambda s=store, m=machine: s.read(NS, TABLE, m, week)
    times = interleaved(variants, reps)
    _report(bench, times, sizes)
    _investigate(bench, stores[sizes[-1]], _ids(sizes[-1])[sizes[-1] // 2], window, reps,
                 workdir)
    return bench


def _report(bench: Bench, times: dict[str, list[float]], sizes: list[int]) -> None:
    bench.samples["times"] = {k: [round(x, 4) for x in v] for k, v in times.items()}
    small, big = sizes[0], sizes[-1]
    for op in ("overwrite", "read_day", "read_week"):
        for n in sizes:
            bench.add(f"{op} @ {n} machines", median(times[f"{op}_{n}"]) * 1000, "ms")
        ratio = median(times[f"{op}_{big}"]) / median(times[f"{op}_{small}"])
        bench.add(f"{op}: {big} vs {small} machines", ratio, "x", "<= 1.5", ratio <= 1.5)


def _investigate(bench: Bench, store: Any, machine: str, window: Any, reps: int,
                 workdir: Path) -> None:
    """At the largest size: where read time goes, and what checkpoint/compaction change."""
    uri = store.uri(NS, TABLE)
    ckpt_root = workdir / "checkpointed"
    shutil.rmtree(ckpt_root, ignore_errors=True)
    shutil.copytree(store.root, ckpt_root)
    from deltalake import DeltaTable

    from meshinsights.store import DeltaStore

    ckpt = DeltaStore(str(ckpt_root))
    DeltaTable(ckpt.uri(NS, TABLE)).create_checkpoint()
    variants = {"store_read": lambda: store.read(NS, TABLE, machine, window),
                "store_read_checkpointed": lambda: ckpt.read(NS, TABLE, machine, window)}
    for name, fn in _alternatives(uri, machine, window, None).items():
        variants[name] = fn
    for name, fn in _alternatives(ckpt.uri(NS, TABLE), machine, window, None).items():
        variants[f"{name}_checkpointed"] = fn
    times = interleaved(variants, reps)
    bench.samples["read_paths_largest"] = {k: round(median(v) * 1000, 2) for k, v in times.items()}
    base = median(times["store_read"])
    for name, v in times.items():
        if name != "store_read":
            bench.add(f"largest table, {name}", median(v) * 1000, "ms",
                      f"vs store.read {base * 1000:.0f} ms")
