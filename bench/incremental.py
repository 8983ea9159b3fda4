"""Benchmark 5 — incremental cost: after one late row arrives for an earlier day, the extra cost
of the next scheduled run (which reopens that day) as a fraction of reprocessing the full day.

Three variants from the same pristine state (days 1–3 processed), interleaved:
``late`` = run of day 4 with one late row waiting for day 1; ``normal`` = run of day 4 with
no late row; ``full_day`` = rerun of day 1. Incremental cost = late − normal. A fourth,
``hour`` (a 1-hour window run in a throwaway store), shows the floor that fixed per-step
costs put under any finer reprocessing window. A fifth, ``commit_floor``, is the least any
design that keeps the tables current must pay for the late row, however incremental its
steps: one bare Delta commit (a one-row append, table already open, nothing read, computed
or validated) to each table the late row changes.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from bench import fixtures
from bench.harness import Bench, fresh_dir, interleaved, median

__all__ = ["bench_incremental", "add_late_row"]

logger = logging.getLogger(__name__)

MACHINE = "hvac-001"
DAY1 = pd.Timestamp("2024-01-01", tz="UTC")


def add_late_row(db: Path, machine: str, ts: pd.Timestamp, ingested_at: pd.Timestamp) -> None:
    """Insert one temperature row for ``ts`` that arrived at ``ingested_at`` (late)."""
    fmt = "%Y-%m-%d %H:%M:%S"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO telemetry (machine_id, ts, metric, value, unit, ingested_at) "
            "VALUES (?, ?, 'temperature', 21.5, 'degC', ?)",
            (machine, ts.strftime(fmt), ingested_at.strftime(fmt)),
        )


def _window(start: pd.Timestamp, length: str = "1D") -> Any:
    from meshinsights.model import Window

    return Window(start.to_pydatetime(), (start + pd.Timedelta(length)).to_pydatetime())


def _setup(root: Path, quick: bool) -> tuple[Any, str, str]:
    """Seed 5 days, process days 1–3 into a pristine store; a second source has a late row."""
    from meshinsights.engine.runner import run_pipeline
    from meshinsights.store import DeltaStore

    url, ids = fixtures.seed_source(root / "source.db", machines=1, days=5)
    configs = fixtures.load(
        fixtures.write_configs(root / "configs", fixtures.pick_pipeline(quick=quick), ids[:1])
    )
    run_pipeline(
        configs,
        ids[0],
        _window(DAY1, "3D"),
        DeltaStore(str(root / "pristine")),
        resolver=lambda _c: url,
    )
    shutil.copy(root / "source.db", root / "late.db")
    # 30 s after a minute mark: a new row (not a duplicate) arriving at noon on day 4.
    add_late_row(
        root / "late.db", ids[0], DAY1 + pd.Timedelta("12h30s"), DAY1 + pd.Timedelta("3D12h")
    )
    return configs, url, f"sqlite:///{root / 'late.db'}"


def bench_incremental(workdir: Path, *, quick: bool) -> Bench:
    from meshinsights.engine.runner import run_pipeline
    from meshinsights.store import DeltaStore

    reps = 3 if quick else 5
    root = fresh_dir(workdir / "incremental")
    configs, url, late_url = _setup(root, quick)
    pipeline = configs.pipeline_of(configs.machine(MACHINE)).name
    stores: dict[str, Any] = {}
    out: dict[str, list] = {}

    def reset(name: str, rep: int) -> None:
        dest = root / f"store-{name}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(root / "pristine", dest)
        stores[name] = DeltaStore(str(dest))

    def run(name: str, window: Any, source: str) -> None:
        out[name] = run_pipeline(
            configs, MACHINE, window, stores[name], resolver=lambda _c: source, split=False
        )

    day4 = _window(DAY1 + pd.Timedelta("3D"))
    # Which tables the late row changes, from one untimed late and normal run.
    for name, source in (("late", late_url), ("normal", url)):
        reset(name, -1)
        run(name, day4, source)
    changed, tables = _changed_tables(stores["late"], stores["normal"], pipeline)
    floor: list[tuple[Any, Any]] = []

    def before(name: str, rep: int) -> None:
        reset(name, rep)
        if name == "commit_floor":
            floor[:] = _one_row_appends(stores[name], pipeline, changed)

    def commit_floor() -> None:
        from deltalake import write_deltalake

        for table, row in floor:
            write_deltalake(table, row, mode="append")

    times = interleaved(
        {
            "late": lambda: run("late", day4, late_url),
            "normal": lambda: run("normal", day4, url),
            "full_day": lambda: run("full_day", _window(DAY1), url),
            "hour": lambda: run("hour", _window(DAY1 + pd.Timedelta("12h"), "1h"), url),
            "commit_floor": commit_floor,
        },
        reps,
        before=before,
    )
    reopened = [s["window"] for s in out["late"] if s.get("step") == "ingest" and s.get("late")]
    if not reopened:
        raise AssertionError("the late row did not reopen its window: check the late_query")
    late, normal, full = (median(times[k]) for k in ("late", "normal", "full_day"))
    bench = Bench(
        "incremental",
        "Incremental cost of one late row (vs a full-day reprocess)",
        params={
            "pipeline": pipeline,
            "machine": MACHINE,
            "reps": reps,
            "late_row": "day 1 12:00:30, arriving day 4 12:00",
            "reopened_windows": reopened,
        },
    )
    bench.samples["times"] = {k: [round(x, 4) for x in v] for k, v in times.items()}
    bench.add("next run with a late row waiting", late, "s")
    bench.add("next run without", normal, "s")
    bench.add("full-day reprocess of one machine", full, "s")
    fraction = (late - normal) / full
    bench.add("incremental cost / full-day reprocess", fraction, "", "<= 0.05", fraction <= 0.05)
    bench.add("a 1-hour window run / full-day reprocess", median(times["hour"]) / full, "")
    bench.params["tables_changed_by_the_late_row"] = changed
    bench.add("tables whose machine-day the late row changed", f"{len(changed)} of {tables}")
    floor_s = median(times["commit_floor"])
    bench.add("one bare commit per changed table", floor_s, "s")
    bench.add("that floor / full-day reprocess", floor_s / full, "")
    bench.notes.append("late rows reopen whole schedule intervals (here one day)")
    return bench


def _one_row_appends(store: Any, pipeline: str, tables: list[str]) -> list[tuple[Any, Any]]:
    """Each table opened, with one of its own day-1 rows to append (untimed set-up)."""
    from deltalake import DeltaTable

    out = []
    for name in tables:
        table = DeltaTable(store.uri(pipeline, name))
        rows = table.to_pyarrow_table(filters=[("machine_id", "=", MACHINE)])
        out.append((table, rows.slice(0, 1)))
    return out


def _changed_tables(late: Any, normal: Any, pipeline: str) -> tuple[list[str], int]:
    """Tables whose day-1 rows differ once the late row is in (``ingested_at`` aside).

    The ceiling for skipping unchanged work: a step whose output did not change could skip
    its commit, and a step whose inputs did not change could skip entirely.
    """
    day = _window(DAY1)
    names = sorted(late.table_names(pipeline))
    changed = []
    for name in names:
        a, b = (s.read(pipeline, name, MACHINE, day) for s in (late, normal))
        a, b = (f.drop(columns=["ingested_at"], errors="ignore") for f in (a, b))
        if not a.reset_index(drop=True).equals(b.reset_index(drop=True)):
            changed.append(name)
    return changed, len(names)
