"""The one code path that runs steps: read inputs → call the pure function → validate → overwrite.

The Airflow tasks and the local runner (``meshinsights run``) both call :func:`run_step` and
:func:`run_ingest`, so a step behaves the same in a unit test, on a laptop and in production.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pandas as pd

from meshinsights import schedules
from meshinsights.config import Condition, LoadedConfigs, When
from meshinsights.engine.batching import (
    MAX_BATCH,
    batches,
    input_versions,
    read_inputs,
    sink_by_window,
)
from meshinsights.engine.logging import logged_run
from meshinsights.engine.memory import release_memory
from meshinsights.engine.plan import PlannedStep, plan
from meshinsights.errors import MeshInsightsError, StepError, StoreError
from meshinsights.model import RUN, Window, Windows, contiguous_groups, with_run
from meshinsights.steps._util import in_window
from meshinsights.steps.registry import Resources, StepSpec
from meshinsights.store import DeltaStore

__all__ = [
    "PlannedStep",
    "plan",
    "run_step",
    "evaluate_when",
    "run_pipeline",
    "run_steps",
    "batches",
    "late_windows_of",
    "pending_of",
    "beside",
    "new_run_id",
]

logger = logging.getLogger(__name__)


def new_run_id(prefix: str = "local") -> str:
    return f"{prefix}__{time.strftime('%Y%m%dT%H%M%S')}__{uuid.uuid4().hex[:8]}"


def _call(
    spec: StepSpec,
    frames: dict[str, pd.DataFrame],
    params: dict[str, Any],
    machine_id: str,
    window: Window,
    resources: Resources | None = None,
) -> pd.DataFrame:
    extra: dict[str, Any] = {}
    if "window" in spec.wants:
        extra["window"] = window
    if "machine_id" in spec.wants:
        extra["machine_id"] = machine_id
    if "resources" in spec.wants:
        extra["resources"] = dict(resources or {})
    try:
        out = spec.func(**frames, **params, **extra)
    except MeshInsightsError:
        raise
    except Exception as exc:
        raise StepError(
            f"step {spec.name!r} failed for machine {machine_id} {window}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, pd.DataFrame):
        raise StepError(
            f"step {spec.name!r} returned {type(out).__name__}; a step must return a DataFrame"
        )
    out = out.copy(deep=False)  # copy-on-write: the step's own frame is left as it returned it
    out["machine_id"] = machine_id
    if window.run is not None:  # a run window: every output row is that run's
        out[RUN] = window.run
    return out


@logged_run
def run_step(
    spec: StepSpec | PlannedStep,
    machine: str | Sequence[str],
    window: Windows,
    store: DeltaStore,
    *,
    namespace: str = "default",
    params: dict[str, Any] | None = None,
    run_id: str | None = None,
    resolver: Callable[[str], str] | None = None,
    resources: Resources | None = None,
) -> dict[str, Any]:
    """Run one step for one machine (or a group, in one commit) and one window.

    Several windows that do not overlap (a backfill's days, a late day with today) run as one
    batch: each contiguous stretch is read once, the function is still called once per
    machine and window with exactly the rows a run of that window alone would read, and all
    outputs are written in one commit. A step with a ``sink`` also writes its output rows
    there after the Delta commit (so a sink never holds rows the table does not), window by
    window. A machine-window whose input tables (its own output, read as a cache, aside) hold
    no rows is not passed to the function: nothing to analyse is no analysis (no GenAI call),
    the window is cleared like any empty result, and the summary counts it as
    ``skipped_empty`` with the reason. ``resources`` (named clients, e.g. ``genai_client``)
    reach steps that declare a ``resources`` parameter; without them a step uses its default
    client. Returns a small summary fit for XCom.
    """
    started = time.perf_counter()
    if isinstance(spec, PlannedStep):
        planned = spec
    else:
        planned = PlannedStep(
            spec.name,
            spec,
            spec.bind_params(params),
            {a: a for a in spec.inputs},
            spec.output,
            None,
        )
    machines = [machine] if isinstance(machine, str) else list(machine)
    groups = contiguous_groups(window)
    run_id = run_id or new_run_id()
    versions = input_versions(planned, store, namespace)
    reads = [read_inputs(planned, store, namespace, machines, group) for group in groups]
    rows_in = sum(len(f) for frames in reads for f in frames.values())
    t_func = time.perf_counter()
    outputs: list[tuple[Window, pd.DataFrame]] = []
    skipped: list[tuple[Window, str]] = []
    for group, frames_by_table in zip(groups, reads, strict=True):
        for w in group:
            for m in machines:
                per_machine = {
                    arg: _rows_of(frames_by_table[table], m, len(machines))
                    for arg, table in planned.inputs.items()
                }
                if len(group) > 1:  # the rows a read of this window alone returns
                    per_machine = {
                        arg: in_window(
                            f,
                            w if planned.inputs[arg] == planned.output else planned.read_window(w),
                        )
                        for arg, f in per_machine.items()
                    }
                if not has_input_rows(planned, per_machine):
                    # Nothing to work on: no call (no analysis of nothing, no API bill) and no
                    # rows; the window is still overwritten, so an earlier run's rows go.
                    skipped.append((w, m))
                    outputs.append((w, _no_rows(planned.spec, m, w)))
                    continue
                outputs.append(
                    (w, _call(planned.spec, per_machine, planned.params, m, w, resources))
                )
    func_seconds = time.perf_counter() - t_func
    # Empty outputs are left out: their untyped columns would turn a typed column to object.
    frames = [out for _, out in outputs if len(out)] or [outputs[0][1]]
    result = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    windows = [w for group in groups for w in group]
    span = Window(windows[0].start, windows[-1].end, windows[0].run)
    if len(skipped) == len(outputs) and not result.columns.size:
        # Every window empty, a step without a schema and no table yet: nothing to write.
        return _skipped_summary(planned, machines, span, windows, skipped, run_id, started)
    meta = {
        "meshinsights.run_id": run_id,
        "meshinsights.step": planned.id,
        "meshinsights.rows_in": rows_in,
        "meshinsights.fingerprint": planned.fingerprint,
        "meshinsights.inputs": versions,
        # Work done before the commit (reads + the function): with the commit times, a run's
        # duration (the data API's /metrics).
        "meshinsights.seconds": round(time.perf_counter() - started, 4),
        **({"meshinsights.evolve": True} if planned.evolve else {}),
    }
    schema = planned.spec.schema
    if schema is not None and windows[0].run is not None:
        schema = with_run(schema)
    write = store.overwrite(
        namespace,
        planned.output,
        result,
        machine_ids=machines,
        window=windows,
        schema=schema,
        metadata=meta,
        evolve=planned.evolve,
    )
    summary: dict[str, Any] = {
        "step": planned.id,
        "table": planned.output,
        "machines": machines if len(machines) <= 5 else len(machines),
        "window": span.as_dict(),
        "rows_in": rows_in,
        "rows_out": write.rows,
        "version": write.version,
        "func_seconds": round(func_seconds, 4),
        "seconds": round(time.perf_counter() - started, 4),
        "run_id": run_id,
    }
    if len(windows) > 1:
        summary["windows"] = [w.as_dict() for w in windows]
    if len(machines) > 1:  # each machine's counts (a group's run history is per machine)
        summary["by_machine"] = _counts_by_machine(machines, reads, result)
    if skipped:
        summary.update(_skip_fields(planned, skipped, len(outputs)))
    if planned.sink is not None:
        summary["sink"] = sink_by_window(planned, outputs, run_id, resolver)
    logger.info(
        "step %s machine=%s window=%s rows_in=%d rows_out=%d %.3fs",
        planned.id,
        ",".join(machines[:3]),
        span if len(windows) == 1 else f"{len(windows)} windows in {span}",
        rows_in,
        write.rows,
        summary["seconds"],
    )
    return summary


def _counts_by_machine(
    machines: list[str], reads: list[dict[str, pd.DataFrame]], result: pd.DataFrame
) -> dict[str, dict[str, int]]:
    def counts(frame: pd.DataFrame) -> pd.Series:
        if "machine_id" not in frame or frame.empty:
            return pd.Series(dtype="int64")
        return frame["machine_id"].value_counts()

    read = [counts(f) for frames in reads for f in frames.values()]
    out = counts(result)
    return {
        m: {"rows_in": int(sum(c.get(m, 0) for c in read)), "rows_out": int(out.get(m, 0))}
        for m in machines
    }


def has_input_rows(planned: PlannedStep, frames: dict[str, pd.DataFrame]) -> bool:
    """Whether any input table (the step's own output, read as a cache, aside) has rows."""
    others = [f for arg, f in frames.items() if planned.inputs[arg] != planned.output]
    return not others or any(len(f) for f in others)


def _no_rows(spec: StepSpec, machine_id: str, window: Window) -> pd.DataFrame:
    """The output of a window without input rows: no rows, typed by the step's schema."""
    if spec.schema is None:
        return pd.DataFrame()
    schema = spec.schema if window.run is None else with_run(spec.schema)
    return schema.empty_table().to_pandas().assign(machine_id=machine_id)


def _skip_fields(
    planned: PlannedStep, skipped: list[tuple[Window, str]], n_calls: int
) -> dict[str, Any]:
    tables = sorted({t for t in planned.inputs.values() if t != planned.output})
    reason = (
        f"no input rows in {', '.join(tables)} for {len(skipped)} of {n_calls} "
        "machine-window(s): the step was not called and wrote no rows there"
    )
    logger.info("step %s skipped: %s", planned.id, reason)
    return {
        "skipped_empty": len(skipped),
        # XCom stays small: the first few skipped machine-windows, the count above.
        "skipped_examples": [{"window": w.as_dict(), "machine": m} for w, m in skipped[:10]],
        "skip_reason": reason,
        **({"skipped": True} if len(skipped) == n_calls else {}),
    }


def _skipped_summary(
    planned: PlannedStep,
    machines: list[str],
    span: Window,
    windows: list[Window],
    skipped: list[tuple[Window, str]],
    run_id: str,
    started: float,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "step": planned.id,
        "table": planned.output,
        "machines": machines if len(machines) <= 5 else len(machines),
        "window": span.as_dict(),
        "rows_in": 0,
        "rows_out": 0,
        "version": None,
        "seconds": round(time.perf_counter() - started, 4),
        "run_id": run_id,
        **_skip_fields(planned, skipped, len(skipped)),
    }
    if len(windows) > 1:
        summary["windows"] = [w.as_dict() for w in windows]
    if len(machines) > 1:  # as run_step's: every machine's counts, all zero here
        summary["by_machine"] = {m: {"rows_in": 0, "rows_out": 0} for m in machines}
    return summary


def _rows_of(frame: pd.DataFrame, machine_id: str, n_machines: int) -> pd.DataFrame:
    if n_machines == 1 or frame.empty:
        return frame
    return frame[frame["machine_id"] == machine_id].reset_index(drop=True)


def _holds(
    cond: Condition, store: DeltaStore, namespace: str, machine_id: str, window: Window
) -> bool:
    try:
        df = store.read(namespace, cond.table, machine_id, window)
    except StoreError:
        return False
    if cond.min_rows is not None and len(df) < cond.min_rows:
        return False
    if cond.column is None:
        return True
    if cond.column not in df.columns:
        raise StepError(
            f"branch rule: table {cond.table!r} has no column {cond.column!r}; "
            f"columns are {list(df.columns)}"
        )
    col = df[cond.column]
    tests = []
    if cond.in_ is not None:
        tests.append(col.isin(cond.in_).any())
    if cond.gt is not None:
        tests.append((pd.to_numeric(col, errors="coerce") > cond.gt).any())
    if cond.lt is not None:
        tests.append((pd.to_numeric(col, errors="coerce") < cond.lt).any())
    return all(bool(t) for t in tests)


def evaluate_when(
    when: When | None, store: DeltaStore, namespace: str, machine_id: str, window: Window
) -> bool:
    """Whether a branch rule holds for this machine-window (no rule: always)."""
    if when is None:
        return True
    results = [
        _holds(c, store, namespace, machine_id, window) for c in (when.any or when.all or [])
    ]
    return any(results) if when.any is not None else all(results)


ProgressHook = Callable[[str, dict[str, Any]], None]


def run_steps(
    steps: list[PlannedStep],
    machine_id: str,
    namespace: str,
    window: Windows,
    store: DeltaStore,
    *,
    run_id: str,
    resolver: Callable[[str], str] | None = None,
    resources: Resources | None = None,
    on_progress: ProgressHook | None = None,
    batch: timedelta = MAX_BATCH,
) -> list[dict[str, Any]]:
    """Every step of a plan for one machine, in order, honouring branch rules.

    Over several windows each step runs as batches covering at most ``batch`` of data
    (:func:`run_step`: one commit per step and batch instead of one per window); the tables
    come out as if each window had run alone. A branch rule is checked per window, and the
    windows where it does not hold are left untouched.
    """
    given = [window] if isinstance(window, Window) else list(window)
    by_run = any(w.run is not None for w in given)
    # Run windows may overlap in time: each is its own batch (one run per step call).
    windows = given if by_run else [w for group in contiguous_groups(window) for w in group]
    summaries: list[dict[str, Any]] = []
    for s in steps:
        held = []
        for w in windows:
            if evaluate_when(s.when, store, namespace, machine_id, w):
                held.append(w)
            else:
                summaries.append(
                    {"step": s.id, "skipped": True, "window": w.as_dict(), "run_id": run_id}
                )
                if on_progress:
                    on_progress(s.id, summaries[-1])
        for part in [[w] for w in held] if by_run else batches(held, batch):
            summaries.append(
                run_step(
                    s,
                    machine_id,
                    part,
                    store,
                    namespace=namespace,
                    run_id=run_id,
                    resolver=resolver,
                    resources=resources,
                )
            )
            if on_progress:
                on_progress(s.id, summaries[-1])
    return summaries


def run_pending_runs(
    steps: list[PlannedStep],
    machine_id: str,
    namespace: str,
    store: DeltaStore,
    drained_windows: list[Window] | None = None,
    *,
    run_id: str,
    resolver: Callable[[str], str] | None = None,
    resources: Resources | None = None,
    on_progress: ProgressHook | None = None,
) -> list[dict[str, Any]]:
    """The steps of every run pending for this machine (whose rows changed), then the record.

    Each run is processed whole (its window is the run's span, its rows only that run's) and
    exactly once per change: the ledger commit that follows the steps takes the runs (and the
    reopened time windows, ``drained_windows``) off the pending list, so a failure leaves them
    pending for the retry or the next run, and a run whose rows did not change is never rerun.
    """
    from meshinsights.engine.ingest import ingest_state, record_drained
    from meshinsights.engine.runs import run_spans

    pending = ingest_state(store, namespace, machine_id).pending_runs
    spans = run_spans(store, namespace, machine_id)
    windows = [spans[r].window for r in pending if r in spans]
    unknown = sorted(set(pending) - set(spans))
    if unknown:  # only if the index was deleted by hand: say so, never silently
        logger.warning(
            "machine %s: pending run(s) %s are not in the run index (deleted?); they are taken "
            "off the pending list without steps; re-ingest their windows to restore them",
            machine_id,
            unknown,
        )
    summaries = (
        run_steps(
            steps,
            machine_id,
            namespace,
            windows,
            store,
            run_id=run_id,
            resolver=resolver,
            resources=resources,
            on_progress=on_progress,
        )
        if windows
        else []
    )
    if pending or drained_windows:
        record_drained(
            store,
            namespace,
            machine_id,
            list(drained_windows or []),
            run_id=run_id,
            runs=list(pending),
        )
    return summaries


def run_runs(
    steps: list[PlannedStep],
    machine_id: str,
    namespace: str,
    store: DeltaStore,
    runs: list[Window],
    *,
    run_id: str,
    resolver: Callable[[str], str] | None = None,
    resources: Resources | None = None,
    on_progress: ProgressHook | None = None,
) -> list[dict[str, Any]]:
    """The steps over these runs (a rerun of one run, or the runs updated since a time).

    Like a rerun of a time window, it recomputes from the stored telemetry; a run it covers
    that was pending is no longer pending afterwards.
    """
    from meshinsights.engine.ingest import ingest_state, record_drained

    summaries = (
        run_steps(
            steps,
            machine_id,
            namespace,
            runs,
            store,
            run_id=run_id,
            resolver=resolver,
            resources=resources,
            on_progress=on_progress,
        )
        if runs
        else []
    )
    done = sorted(
        {w.run for w in runs if w.run}
        & set(ingest_state(store, namespace, machine_id).pending_runs)
    )
    if done:
        record_drained(store, namespace, machine_id, [], run_id=run_id, runs=done)
    return summaries


def late_windows_of(ingested: list[dict[str, Any]]) -> list[Window]:
    """The windows an incremental ingest reopened because late rows arrived for them."""
    return [
        Window.parse(s["window"]["start"], s["window"]["end"]) for s in ingested if s.get("late")
    ]


def pending_of(ingested: list[dict[str, Any]]) -> list[Window]:
    """Every reopened window whose steps have yet to run (this ingest's and earlier ones')."""
    final = ingested[-1] if ingested else {}
    return [Window.parse(w["start"], w["end"]) for w in final.get("pending") or []]


def beside(windows: list[Window], extra: list[Window]) -> tuple[list[Window], list[Window]]:
    """``extra`` split into windows that can join ``windows``' batch and ones that overlap it.

    Reopened windows sit on the schedule's grid; a run over an unaligned range has shorter
    windows at its edges that may overlap one: that one runs in a batch of its own.
    """
    joined = set(windows)
    fits = [w for w in extra if w not in joined and not any(w.overlaps(o) for o in windows)]
    apart = [w for w in extra if w not in joined and w not in fits]
    return sorted(joined | set(fits)), sorted(set(apart))


def run_pipeline(
    configs: LoadedConfigs,
    machine_id: str,
    window: Window,
    store: DeltaStore,
    *,
    run_id: str | None = None,
    resolver: Callable[[str], str] | None = None,
    resources: Resources | None = None,
    split: bool = True,
    on_progress: ProgressHook | None = None,
    batch: timedelta = MAX_BATCH,
) -> list[dict[str, Any]]:
    """The machine's whole pipeline in-process, in dependency order, without Airflow.

    With ``split`` the range is cut into the schedule's intervals (:mod:`meshinsights.schedules`,
    the same windows the DAG's timetable gives its runs) so the tables equal what the
    scheduled runs write. Each ingest is incremental: older windows that received late rows
    since the last watermark are re-ingested, and every window still pending from earlier
    runs (a step that failed after late data, a process killed after the ingest commit) has
    its steps rerun, exactly those and no others. Windows are ingested one by one, then each
    step runs once per batch of windows covering up to ``batch`` (reopened ones included),
    which writes the same tables as one run per window with one commit per step instead of
    one per step and window (``batch`` of one interval: a run per window, as the DAG does).
    Once the steps ran over the pending windows, a ledger commit says so.
    """
    from meshinsights.engine.ingest import record_drained, run_incremental

    machine = configs.machine(machine_id)
    pipeline = configs.pipeline_of(machine)
    steps = plan(pipeline, machine)
    windows = schedules.windows(machine.schedule, window) if split else [window]
    run_id = run_id or new_run_id()
    summaries: list[dict[str, Any]] = []

    def steps_over(ws: list[Window]) -> None:
        summaries.extend(
            run_steps(
                steps,
                machine_id,
                pipeline.name,
                ws,
                store,
                run_id=run_id,
                resolver=resolver,
                resources=resources,
                on_progress=on_progress,
                batch=batch,
            )
        )

    for chunk in batches(windows, batch):
        pending: list[Window] = []
        for w in chunk:
            ingested = run_incremental(
                machine, pipeline, w, store, run_id=run_id, resolver=resolver
            )
            for summary in ingested:
                summaries.append(summary)
                if on_progress:
                    on_progress("ingest", summary)
            pending = pending_of(ingested)
        if pipeline.window == "run":
            # Windowed by run: the steps run over every run that changed (or was left
            # pending), each whole, once; the time windows need no steps of their own.
            summaries.extend(
                run_pending_runs(
                    steps,
                    machine_id,
                    pipeline.name,
                    store,
                    pending,
                    run_id=run_id,
                    resolver=resolver,
                    resources=resources,
                    on_progress=on_progress,
                )
            )
            continue
        together, apart = beside(chunk, pending)
        steps_over(together)
        if apart:
            steps_over(apart)
        if pending:
            record_drained(store, pipeline.name, machine_id, pending, run_id=run_id)
    release_memory()  # a loop over a fleet keeps one machine-window's footprint
    return summaries
