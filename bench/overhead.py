"""Benchmark 1 — framework overhead: ``run_step`` with Delta between steps vs the same pure
functions chained in memory with one Parquet write per output table at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench import fixtures
from bench.harness import Bench, fresh_dir, interleaved, median

__all__ = ["bench_overhead", "prepare", "chain_in_memory", "Prepared"]

logger = logging.getLogger(__name__)

SOURCE_TABLES = ("telemetry", "events", "quarantine")
MACHINE = "hvac-001"


class Prepared:
    """One machine's ingested source tables for ``days`` days, kept pristine to copy from."""

    def __init__(self, root: Path, pipeline: str, days: int) -> None:
        from meshinsights.model import Window
        from meshinsights.store import DeltaStore

        self.root, self.pipeline, self.days = root, pipeline, days
        self.configs = fixtures.load(root / "configs")
        self.store = DeltaStore(str(root / "store"))
        start = pd.Timestamp("2024-01-01", tz="UTC")
        self.window = Window(
            start.to_pydatetime(), (start + pd.Timedelta(days=days)).to_pydatetime()
        )

    @property
    def steps(self) -> list[Any]:
        from meshinsights.engine.plan import plan

        machine = self.configs.machine(MACHINE)
        return plan(self.configs.pipeline_of(machine), machine)

    def copy_store(self, dest: Path) -> Any:
        """A store at ``dest`` holding a copy of the pristine source tables."""
        from meshinsights.store import DeltaStore

        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(self.root / "store", dest)
        return DeltaStore(str(dest))

    def sources(self) -> dict[str, pd.DataFrame]:
        return {
            t: self.store.read(self.pipeline, t, MACHINE, self.window)
            for t in SOURCE_TABLES
            if self.store.exists(self.pipeline, t)
        }


def prepare(workdir: Path, *, days: int, quick: bool = False) -> Prepared:
    """Seed one machine for ``days`` days and ingest it as one window (cached per run)."""
    from meshinsights.model import Window
    from meshinsights.store import DeltaStore

    pipeline = fixtures.pick_pipeline(quick=quick)
    root = workdir / f"prep-{pipeline}-{days}d"
    if (root / "READY").exists():
        return Prepared(root, pipeline, days)
    fresh_dir(root)
    url, _ = fixtures.seed_source(root / "source.db", machines=1, days=days)
    configs = fixtures.load(fixtures.write_configs(root / "configs", pipeline, [MACHINE]))
    start = pd.Timestamp("2024-01-01", tz="UTC")
    window = Window(start.to_pydatetime(), (start + pd.Timedelta(days=days)).to_pydatetime())
    fixtures.ingest(configs, MACHINE, window, DeltaStore(str(root / "store")), url)
    (root / "READY").write_text("ok")
    return Prepared(root, pipeline, days)


class MemoryTables:
    """A read-only stand-in for DeltaStore over in-memory frames (branch rules evaluate alike)."""

    def __init__(self, frames: dict[str, pd.DataFrame]) -> None:
        self.frames = frames

    def exists(self, namespace: str, table: str) -> bool:
        return table in self.frames

    def read(
        self, namespace: str, table: str, machine_ids: Any, window: Any, **_: Any
    ) -> pd.DataFrame:
        from meshinsights.errors import StoreError

        if table not in self.frames:
            raise StoreError(f"no in-memory table {table}")
        return _slice(self.frames[table], window)


def _slice(frame: pd.DataFrame, window: Any) -> pd.DataFrame:
    if frame.empty or "ts" not in frame.columns:
        return frame
    ts = frame["ts"]
    keep = (ts >= pd.Timestamp(window.start)) & (ts < pd.Timestamp(window.end))
    return frame if bool(keep.all()) else frame[keep].reset_index(drop=True)


def _call(
    planned: Any, inputs: dict[str, pd.DataFrame], machine_id: str, window: Any
) -> pd.DataFrame:
    extra: dict[str, Any] = {}
    if "window" in planned.spec.wants:
        extra["window"] = window
    if "machine_id" in planned.spec.wants:
        extra["machine_id"] = machine_id
    out = planned.spec.func(**inputs, **planned.params, **extra)
    out["machine_id"] = machine_id
    return out


def chain_in_memory(
    steps: list[Any], frames: dict[str, pd.DataFrame], window: Any, machine_id: str = MACHINE
) -> dict[str, pd.DataFrame]:
    """Run ``steps`` for one window on in-memory frames (mutated: outputs are added)."""
    from meshinsights.engine.runner import evaluate_when

    mem = MemoryTables(frames)
    produced: dict[str, pd.DataFrame] = {}
    for s in steps:
        if not evaluate_when(s.when, mem, "mem", machine_id, window):  # type: ignore[arg-type]
            continue
        read_window = s.read_window(window)
        inputs = {}
        for arg, table in s.inputs.items():
            if table in frames:
                inputs[arg] = _slice(frames[table], window if table == s.output else read_window)
            else:  # an optional input whose table does not exist yet
                inputs[arg] = pd.DataFrame(columns=["machine_id", "ts"])
        out = _call(s, inputs, machine_id, window)
        produced[s.output] = out
        frames[s.output] = (
            pd.concat([frames[s.output], out], ignore_index=True)
            if s.output in frames and s.output not in SOURCE_TABLES and not frames[s.output].empty
            else out
        )
    return produced


def write_parquet(tables: dict[str, list[pd.DataFrame]], out_dir: Path) -> None:
    """One Parquet file per output table (what the framework persists, as plain files)."""
    fresh_dir(out_dir)
    for name, parts in tables.items():
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), out_dir / f"{name}.parquet")


def _framework(
    prep: Prepared, store: Any, windows: list[Any], summaries: list, *, batched: bool = False
) -> None:
    from meshinsights.engine.runner import evaluate_when, run_step, run_steps

    steps = prep.steps
    if batched:  # what `meshinsights run` does: each step once per batch of windows
        done = run_steps(steps, MACHINE, prep.pipeline, windows, store, run_id="bench")
        summaries.extend(s for s in done if not s.get("skipped"))
        return
    for w in windows:  # what the scheduled DAG does: one run per step and window
        for s in steps:
            if not evaluate_when(s.when, store, prep.pipeline, MACHINE, w):
                continue
            summaries.append(
                run_step(s, MACHINE, w, store, namespace=prep.pipeline, run_id="bench")
            )


def _in_memory(prep: Prepared, windows: list[Any], out_dir: Path) -> None:
    frames = prep.sources()
    steps = prep.steps
    outputs: dict[str, list[pd.DataFrame]] = defaultdict(list)
    for w in windows:
        for table, df in chain_in_memory(steps, frames, w).items():
            outputs[table].append(df)
    write_parquet(outputs, out_dir)


def _one_mode(prep: Prepared, workdir: Path, mode: str, reps: int, bench: Bench) -> float:
    windows = [prep.window] if mode == "one window" else prep.window.split(pd.Timedelta("1D"))
    batched = mode.endswith("batched")
    state: dict[str, Any] = {}
    summaries: list[dict[str, Any]] = []

    def reset(name: str, rep: int) -> None:
        if name == "framework":
            summaries.clear()
            state["store"] = prep.copy_store(workdir / "framework-store")

    times = interleaved(
        {
            "framework": lambda: _framework(
                prep, state["store"], windows, summaries, batched=batched
            ),
            "in_memory": lambda: _in_memory(prep, windows, workdir / "parquet-out"),
        },
        reps,
        before=reset,
    )
    ratio = median(times["framework"]) / median(times["in_memory"])
    key = mode.replace(",", "").replace(" ", "_")
    bench.samples[key] = {k: [round(x, 4) for x in v] for k, v in times.items()}
    bench.add(f"{mode}: framework (run_step, Delta)", median(times["framework"]), "s")
    bench.add(f"{mode}: in memory + Parquet", median(times["in_memory"]), "s")
    bench.add(f"{mode}: ratio", ratio, "x", "<= 1.5", ratio <= 1.5)
    _breakdown(bench, key, summaries)
    return ratio


def _breakdown(bench: Bench, key: str, summaries: list[dict[str, Any]]) -> None:
    """Per step (last framework rep): time in the function vs read + validate + commit."""
    per: dict[str, dict[str, float]] = defaultdict(
        lambda: {"seconds": 0.0, "func_seconds": 0.0, "calls": 0}
    )
    for s in summaries:
        p = per[s["step"]]
        p["seconds"] += s["seconds"]
        p["func_seconds"] += s["func_seconds"]
        p["calls"] += 1
    bench.samples[f"{key}_per_step"] = {
        k: {m: round(v, 4) for m, v in d.items()} for k, d in per.items()
    }
    total = sum(p["seconds"] for p in per.values())
    func = sum(p["func_seconds"] for p in per.values())
    if total:
        bench.add(f"{key}: share of run_step time outside the function", 1 - func / total, "")


def bench_overhead(workdir: Path, *, quick: bool) -> Bench:
    # $BENCH_OVERHEAD_DAYS ("one-window days,daily days"), default the 90 (and 30).
    days, daily_days = (
        (2, 0)
        if quick
        else (int(x) for x in os.environ.get("BENCH_OVERHEAD_DAYS", "90,30").split(","))
    )
    reps = 3 if quick else 5
    prep = prepare(workdir, days=days, quick=quick)
    bench = Bench(
        "overhead",
        "Framework overhead: run_step + Delta vs in-memory chain + Parquet",
        params={
            "pipeline": prep.pipeline,
            "machine": MACHINE,
            "days": days,
            "daily_days": daily_days,
            "resolution": "1min",
            "reps": reps,
            "steps": [s.id for s in prep.steps],
        },
    )
    if prep.pipeline != "hvac_power":
        bench.notes.append(f"measured on the {prep.pipeline} pipeline")
    _one_mode(prep, workdir, "one window", reps, bench)
    if daily_days:  # a daily backfill: one run_step per step and day, then batched
        daily = prepare(workdir, days=daily_days, quick=quick)
        _one_mode(daily, workdir, "daily windows", reps, bench)
        _one_mode(daily, workdir, "daily windows, batched", reps, bench)
    return bench
