"""Benchmark 3 — partition-write scaling: overwrite one machine-day and read one machine-window
in tables holding 10, 100 and 1,000 machines × 30 days. Target: flat (1,000 ≤ 1.5 × 10).

The tables are built the way a grouped daily run writes them: one commit per day covering
every machine, each machine-day one new file, with the store's auto compaction at 8 files
per machine-month (the store's default; ``$MESHINSIGHTS_AUTO_COMPACT_FILES`` overrides it
here, 0 measures the uncompacted layout). Besides the store's own
read, the largest table is read through the alternatives deltalake 1.6 offers, to show what
a store change would gain. (deltalake is imported here, in the benchmark only, to measure
those alternatives; the library keeps it inside ``meshinsights/store/delta.py``.)
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.harness import Bench, fresh_dir, interleaved, median

__all__ = ["bench_partitions", "build_table", "day_frame", "BENCH_AUTO_COMPACT"]

logger = logging.getLogger(__name__)

NS = "bench"
TABLE = "telemetry"
START = pd.Timestamp("2024-01-01", tz="UTC")
#: Auto compaction for the benchmark's tables (8, the store's default, unless overridden).
BENCH_AUTO_COMPACT = int(os.environ.get("MESHINSIGHTS_AUTO_COMPACT_FILES", "8"))


def day_frame(machines: list[str], day: int, *, seed: int = 0) -> pd.DataFrame:
    """One day of 1-minute ``temperature`` telemetry for ``machines`` (1,440 rows each)."""
    ts = pd.date_range(START + pd.Timedelta(days=day), periods=1440, freq="1min", tz="UTC")
    n = len(machines)
    rng = np.random.default_rng([seed, day])
    return pd.DataFrame(
        {
            "machine_id": np.repeat(np.asarray(machines, dtype=object), 1440),
            "ts": np.tile(ts.as_unit("us"), n),
            "metric": "temperature",
            "value": (21 + rng.normal(0, 0.5, n * 1440)).round(3),
            "unit": "degC",
            "ingested_at": np.tile(ts.as_unit("us"), n),
        }
    )


def _window(day: int, days: int = 1) -> Any:
    from meshinsights.model import Window

    return Window(
        (START + pd.Timedelta(days=day)).to_pydatetime(),
        (START + pd.Timedelta(days=day + days)).to_pydatetime(),
    )


def build_table(store: Any, machines: list[str], days: int) -> float:
    """Write ``days`` daily commits covering all machines; returns seconds."""
    from meshinsights.model import TELEMETRY_SCHEMA

    t = time.perf_counter()
    for d in range(days):
        store.overwrite(
            NS,
            TABLE,
            day_frame(machines, d),
            machine_ids=machines,
            window=_window(d),
            schema=TELEMETRY_SCHEMA,
        )
    return time.perf_counter() - t


def _ids(n: int) -> list[str]:
    return [f"m{i:04d}" for i in range(n)]


def _alternatives(uri: str, machine: str, window: Any) -> dict[str, Any]:
    """Read paths deltalake 1.6 offers for the same machine-window (for the store's owner)."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable, QueryBuilder

    from meshinsights.store.predicates import window_predicate

    filters = [
        ("machine_id", "in", [machine]),
        ("month", "in", window.months()),
        ("ts", ">=", pd.Timestamp(window.start)),
        ("ts", "<", pd.Timestamp(window.end)),
    ]

    def full_dataset_filter() -> None:  # the store's read path before the fix
        DeltaTable(uri).to_pyarrow_table(filters=filters)

    def stats_pruned() -> None:  # ts in the pruning predicate too: checked per file's stats
        DeltaTable(uri).to_pyarrow_dataset(
            file_pruning_predicate=window_predicate([machine], window)
        ).to_table(filter=pq.filters_to_expression(filters))

    def query_builder() -> None:
        sql = f"SELECT * FROM t WHERE {window_predicate([machine], window)}"
        QueryBuilder().register("t", DeltaTable(uri)).execute(sql).read_all()

    return {
        "open_only": lambda: DeltaTable(uri),
        "stats_pruned": stats_pruned,
        "query_builder": query_builder,
        "full_dataset_filter": full_dataset_filter,
    }


def _curve(bench: Bench, label: str, stores: dict[int, Any], days: int, reps: int) -> None:
    """Overwrite one machine-day and read one machine-day/-week at every size, interleaved."""
    from meshinsights.model import TELEMETRY_SCHEMA

    sizes = sorted(stores)
    mid_day = days // 2
    day, week = _window(mid_day), _window(max(0, mid_day - 3), min(7, days))
    variants: dict[str, Any] = {}
    for n in sizes:
        store, machine = stores[n], _ids(n)[n // 2]
        frame = day_frame([machine], mid_day, seed=1)
        # warm: the store keeps the table open (a fleet run, a task's later steps);
        # cold: a new process's first touch (an Airflow task) loads the snapshot.
        variants[f"overwrite_{n}"] = lambda s=store, m=machine, f=frame: s.overwrite(
            NS, TABLE, f, machine_ids=m, window=day, schema=TELEMETRY_SCHEMA
        )
        variants[f"overwrite_cold_{n}"] = lambda s=store, m=machine, f=frame: type(s)(
            s.root, auto_compact_files=s.auto_compact_files
        ).overwrite(NS, TABLE, f, machine_ids=m, window=day, schema=TELEMETRY_SCHEMA)
        # read_day follows another writer's commit (overwrite_cold), which the kept table
        # absorbs first; read_day_settled is brought up to date before the clock starts.
        variants[f"read_day_{n}"] = lambda s=store, m=machine: s.read(NS, TABLE, m, day)
        variants[f"read_day_settled_{n}"] = lambda s=store, m=machine: s.read(NS, TABLE, m, day)
        variants[f"read_day_cold_{n}"] = lambda s=store, m=machine: type(s)(
            s.root, auto_compact_files=s.auto_compact_files
        ).read(NS, TABLE, m, day)
        variants[f"read_week_{n}"] = lambda s=store, m=machine: s.read(NS, TABLE, m, week)

    def settle(name: str, rep: int) -> None:  # untimed: absorb the commits made since
        if name.startswith("read_day_settled_"):
            stores[int(name.rsplit("_", 1)[1])].exists(NS, TABLE)

    times = interleaved(variants, reps, before=settle)
    bench.samples[f"{label}_times"] = {k: [round(x, 4) for x in v] for k, v in times.items()}
    small, big = sizes[0], sizes[-1]
    ops = ("overwrite", "overwrite_cold", "read_day", "read_day_settled", "read_day_cold")
    for op in (*ops, "read_week"):
        for n in sizes:
            bench.add(f"{label}: {op} @ {n} machines", median(times[f"{op}_{n}"]) * 1000, "ms")
        ratio = median(times[f"{op}_{big}"]) / median(times[f"{op}_{small}"])
        bench.add(f"{label}: {op} {big} / {small} machines", ratio, "x", "<= 1.5", ratio <= 1.5)


def _compacted(stores: dict[int, Any], workdir: Path, bench: Bench) -> dict[int, Any]:
    """Compacted copies of every table (one file per machine-month), compaction timed."""
    from meshinsights.store import DeltaStore

    out = {}
    for n, store in stores.items():
        dest = workdir / f"compacted-n{n}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(store.root, dest)
        out[n] = DeltaStore(str(dest), auto_compact_files=BENCH_AUTO_COMPACT)
        t = time.perf_counter()
        out[n].compact(NS, TABLE)
        bench.add(f"compaction of the {n}-machine table", time.perf_counter() - t, "s")
    return out


def bench_partitions(workdir: Path, *, quick: bool) -> Bench:
    from meshinsights.store import DeltaStore

    sizes = [10, 30] if quick else [10, 100, 1000]
    days = 5 if quick else 30
    reps = 3 if quick else 7
    bench = Bench(
        "partitions",
        "Partition-write scaling: one machine-day in growing tables",
        params={
            "machines": sizes,
            "days": days,
            "rows_per_machine_day": 1440,
            "files": {n: n * days for n in sizes},
            "commits_to_build": days,
            "reps": reps,
        },
    )
    stores: dict[int, Any] = {}
    for n in sizes:
        root, marker = workdir / f"n{n}", workdir / f"n{n}.READY"
        if marker.exists() and marker.read_text() == f"{n}x{days}":  # reused with --workdir
            stores[n] = DeltaStore(str(root), auto_compact_files=BENCH_AUTO_COMPACT)
            continue
        store = DeltaStore(str(fresh_dir(root)), auto_compact_files=BENCH_AUTO_COMPACT)
        bench.samples[f"build_seconds_{n}"] = round(build_table(store, _ids(n), days), 2)
        marker.write_text(f"{n}x{days}")
        stores[n] = store
    bench.params["auto_compact_files"] = stores[sizes[0]].auto_compact_files
    _curve(bench, "daily runs", stores, days, reps)
    big = sizes[-1]
    _investigate(
        bench, stores[big], _ids(big)[big // 2], _window(days // 2), workdir, reps=3 if quick else 5
    )
    _curve(bench, "compacted", _compacted(stores, workdir, bench), days, reps)
    return bench


def _investigate(
    bench: Bench, store: Any, machine: str, window: Any, workdir: Path, *, reps: int
) -> None:
    """At the largest size: where a read's time goes, other read paths, and a checkpoint."""
    from deltalake import DeltaTable

    from meshinsights.store import DeltaStore

    ckpt_root = workdir / "checkpointed"
    shutil.rmtree(ckpt_root, ignore_errors=True)
    shutil.copytree(store.root, ckpt_root)
    ckpt = DeltaStore(str(ckpt_root), auto_compact_files=BENCH_AUTO_COMPACT)
    DeltaTable(ckpt.uri(NS, TABLE)).create_checkpoint()
    variants = {
        "store.read": lambda: store.read(NS, TABLE, machine, window),
        "store.read, checkpointed": lambda: ckpt.read(NS, TABLE, machine, window),
    }
    variants.update(_alternatives(store.uri(NS, TABLE), machine, window))
    variants["open_only, checkpointed"] = lambda: DeltaTable(ckpt.uri(NS, TABLE))
    times = interleaved(variants, reps)
    bench.samples["read_paths_largest_ms"] = {
        k: round(median(v) * 1000, 2) for k, v in times.items()
    }
    for name, v in times.items():
        bench.add(f"largest table, one machine-day: {name}", median(v) * 1000, "ms")
