"""Benchmark 7 — maintenance: read time of one machine-window before and after
``DeltaStore.compact`` of a table written by 90 daily runs (copies read side by side).

"Before" is written with auto compaction off (one file per machine-day, the worst case a
maintenance job faces); a third table written with auto compaction on shows where auto
compaction (the store's default, 8 files) keeps a table without any maintenance job.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from bench.harness import Bench, fresh_dir, interleaved, median
from bench.partitions import BENCH_AUTO_COMPACT, NS, TABLE, _window, build_table

__all__ = ["bench_maintenance"]

logger = logging.getLogger(__name__)


def _files(store: Any) -> int:
    info = [t for t in store.tables() if t.namespace == NS and t.name == TABLE]
    return info[0].files if info else 0


def bench_maintenance(workdir: Path, *, quick: bool) -> Bench:
    from meshinsights.store import DeltaStore

    machines = [f"m{i:03d}" for i in range(10)]
    days = 20 if quick else 90
    reps = 3 if quick else 7
    bench = Bench(
        "maintenance",
        "Maintenance: machine-window reads before/after compaction",
        params={
            "machines": len(machines),
            "daily_runs": days,
            "rows_per_machine_day": 1440,
            "reps": reps,
        },
    )
    before = DeltaStore(str(fresh_dir(workdir / "before")), auto_compact_files=0)
    bench.samples["build_seconds"] = round(build_table(before, machines, days), 2)
    auto = DeltaStore(str(fresh_dir(workdir / "auto")), auto_compact_files=BENCH_AUTO_COMPACT)
    bench.samples["build_seconds_auto_compacted"] = round(build_table(auto, machines, days), 2)
    bench.params["auto_compact_files"] = auto.auto_compact_files
    shutil.copytree(workdir / "before", workdir / "after")
    after = DeltaStore(str(workdir / "after"))
    t = time.perf_counter()
    metrics = after.compact(NS, TABLE)
    bench.add("compaction time", time.perf_counter() - t, "s")
    bench.samples["compact_metrics"] = {
        k: v for k, v in metrics.items() if isinstance(v, int | float | str)
    }
    files_before, files_after = _files(before), _files(after)
    bench.add("files before / after", f"{files_before} / {files_after}")
    bench.add("files with auto compaction (no maintenance)", _files(auto))
    machine = machines[len(machines) // 2]
    day = _window(days - 10)
    month = _window(days - 31 if days > 31 else 0, min(30, days))
    variants = {
        "day_before": lambda: before.read(NS, TABLE, machine, day),
        "day_after": lambda: after.read(NS, TABLE, machine, day),
        "month_before": lambda: before.read(NS, TABLE, machine, month),
        "month_after": lambda: after.read(NS, TABLE, machine, month),
        "day_auto": lambda: auto.read(NS, TABLE, machine, day),
        "month_auto": lambda: auto.read(NS, TABLE, machine, month),
    }
    times = interleaved(variants, reps)
    bench.samples["times"] = {k: [round(x, 4) for x in v] for k, v in times.items()}
    for span in ("day", "month"):
        b, a = median(times[f"{span}_before"]), median(times[f"{span}_after"])
        bench.add(f"read one machine-{span}: before", b * 1000, "ms")
        bench.add(f"read one machine-{span}: after compaction", a * 1000, "ms")
        bench.add(f"read one machine-{span}: after / before", a / b, "x")
        auto_t = median(times[f"{span}_auto"])
        bench.add(f"read one machine-{span}: auto-compacted", auto_t * 1000, "ms")
        bench.add(f"read one machine-{span}: auto-compacted / before", auto_t / b, "x")
    return bench
