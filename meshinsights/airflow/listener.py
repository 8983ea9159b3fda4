"""Airflow listener: every MeshInsights task's outcome, timings and row counts in a runs table.

Registered by ``plugins/meshinsights_plugin.py``. Airflow calls these hooks in the task process
(where the task itself already used the store) and, for tasks failed from outside, in the API
server; only the task process writes. This module stays light at import time (no pandas,
pyarrow or deltalake): the scheduler and API server import it with the plugin, and a process
that has touched deltalake must never fork.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

try:
    from airflow.listeners import hookimpl
except ImportError:  # a worker with only the Task SDK installed
    import pluggy

    hookimpl = pluggy.HookimplMarker("airflow")

__all__ = [
    "RUNS_TABLE",
    "record_ts",
    "run_record",
    "runs_schema",
    "write_run",
    "write_runs",
    "on_task_instance_success",
    "on_task_instance_failed",
    "on_task_instance_skipped",
]

logger = logging.getLogger(__name__)

#: The runs table of a pipeline: ``<root>/<pipeline>/runs`` (next to the tables it describes).
RUNS_TABLE = "runs"
_MAX_ERROR = 500
#: A run's rows sit in the first minute of its window (see :func:`record_ts`).
_SPREAD_US = 60_000_000
#: A group DAG's last task (its failures are the ingest's, recorded per member there).
GROUP_CHECK_TASK = "check_machines"


def runs_schema() -> Any:
    """One row per task attempt; ``ts`` places it in its window (see :func:`record_ts`)."""
    import pyarrow as pa

    from meshinsights.model import TS

    return pa.schema(
        [
            ("machine_id", pa.string()),
            ("ts", TS),
            ("pipeline", pa.string()),
            ("dag_id", pa.string()),
            ("run_id", pa.string()),
            ("task_id", pa.string()),
            ("try_number", pa.int64()),
            ("state", pa.string()),
            ("started_at", TS),
            ("window_start", TS),
            ("window_end", TS),
            ("ended_at", TS),
            ("seconds", pa.float64()),
            ("step_seconds", pa.float64()),
            ("rows_in", pa.int64()),
            ("rows_out", pa.int64()),
            ("rows_quarantined", pa.int64()),
            ("duplicates_removed", pa.int64()),
            ("dq_rate", pa.float64()),
            ("table", pa.string()),
            ("table_version", pa.int64()),
            ("error", pa.string()),
            ("hostname", pa.string()),
        ]
    )


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def dq_rate(summary: dict[str, Any]) -> float | None:
    """Share of distinct source rows that passed validation (ingest only; None elsewhere)."""
    rows_in, quarantined = _int(summary.get("rows_in")), _int(summary.get("rows_quarantined"))
    if rows_in is None or quarantined is None:
        return None
    distinct = rows_in - (_int(summary.get("duplicates_removed")) or 0)
    return 1.0 if distinct <= 0 else round(1.0 - quarantined / distinct, 6)


def run_record(
    *,
    machine_id: str,
    pipeline: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int,
    state: str,
    started: datetime,
    ended: datetime,
    window: tuple[datetime, datetime] | None,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
    hostname: str | None = None,
) -> dict[str, Any]:
    """The ``runs`` row of one task attempt (pure; secrets are removed from the error)."""
    from meshinsights.credentials import redact

    s = summary if isinstance(summary, dict) else {}
    return {
        "machine_id": machine_id,
        "ts": record_ts(window, started=started, key=f"{dag_id}|{run_id}|{task_id}|{try_number}"),
        "started_at": started,
        "pipeline": pipeline,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "try_number": int(try_number),
        "state": state,
        "window_start": window[0] if window else None,
        "window_end": window[1] if window else None,
        "ended_at": ended,
        "seconds": round((ended - started).total_seconds(), 4),
        "step_seconds": s.get("seconds"),
        "rows_in": _int(s.get("rows_in")),
        "rows_out": _int(s.get("rows_out")),
        "rows_quarantined": _int(s.get("rows_quarantined")),
        "duplicates_removed": _int(s.get("duplicates_removed")),
        "dq_rate": dq_rate(s),
        "table": s.get("table"),
        "table_version": _int(s.get("version")),
        "error": redact(error)[:_MAX_ERROR] if error else None,
        "hostname": hostname or socket.gethostname(),
    }


def record_ts(window: tuple[datetime, datetime] | None, *, started: datetime, key: str) -> datetime:
    """The row's ``ts``: inside the run's window, so window reads (the dashboard) find it.

    Each attempt gets its own microsecond in the window's first minute (a hash of its ids), so
    one row can be overwritten alone — idempotently — while parallel tasks of the same window
    write theirs. Without a known window the attempt's start time is used.
    """
    if window is None:
        return started
    span = min(_SPREAD_US, int((window[1] - window[0]) / timedelta(microseconds=1)))
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return window[0] + timedelta(microseconds=digest % max(span, 1))


def write_run(store: Any, record: dict[str, Any]) -> int:
    """Write one row idempotently (partition: machine, [ts, ts + 1 µs)); returns the version."""
    return write_runs(store, [record])


def write_runs(store: Any, records: list[dict[str, Any]]) -> int:
    """Write the rows of one task attempt (one per machine: a group's task concerns several) in
    one commit, idempotently (partition: those machines, [ts, ts + 1 µs)); returns the version.
    """
    import pandas as pd

    from meshinsights.model import Window

    frame = pd.DataFrame(records)
    for col in ("ts", "started_at", "window_start", "window_end", "ended_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    start = records[0]["ts"]  # one attempt's rows share it (record_ts keys on the attempt)
    window = Window(start, start + timedelta(microseconds=1))
    result = store.overwrite(
        records[0]["pipeline"],
        RUNS_TABLE,
        frame,
        machine_ids=[r["machine_id"] for r in records],
        window=window,
        schema=runs_schema(),
        metadata={"meshinsights.step": "runs"},
    )
    return int(result.version)


# ---------------------------------------------------------------------- Airflow hooks


@lru_cache(maxsize=8)
def _machines_of_dag(configs_dir: str, dag_id: str) -> tuple[str, tuple[str, ...]] | None:
    """(pipeline, machine ids) of a machine's DAG or a machine group's; None for other DAGs.

    A task process records one DAG's runs: it parses that DAG's files, not the fleet's."""
    from meshinsights.config import load_group_configs, machine_of_dag
    from meshinsights.config.machines import GROUP_MARK

    if GROUP_MARK in dag_id:
        loaded = load_group_configs(configs_dir, dag_id.split(GROUP_MARK, 1)[1])
        members = [m for m in loaded.machines.values() if m.dag_id == dag_id]
        if not members:
            return None
        return members[0].pipeline, tuple(sorted(m.machine_id for m in members))
    machine = machine_of_dag(configs_dir, dag_id)
    return None if machine is None else (machine.pipeline, (machine.machine_id,))


def _per_machine(
    members: tuple[str, ...], state: str, summary: dict[str, Any] | None, error: Any
) -> list[tuple[str, str, dict[str, Any] | None, Any]]:
    """(machine, state, its summary, error) for each member a group task's outcome concerns.

    A group task's summary says what each member got (``per_machine``), which failed
    (``failed``) and which it left out (``left_out``, ``rule_skipped``: recorded as skipped);
    a task that failed or was skipped as a whole concerns every member.
    """
    if summary is None or "per_machine" not in summary:
        return [(m, state, summary, error) for m in members]
    shared = {k: v for k, v in summary.items() if k not in ("per_machine", "rows_out", "rows_in")}
    out: list[tuple[str, str, dict[str, Any] | None, Any]] = [
        (m, state, {**shared, **counts}, None) for m, counts in summary["per_machine"].items()
    ]
    out += [(m, "failed", shared, why) for m, why in (summary.get("failed") or {}).items()]
    left = {**(summary.get("left_out") or {}), **dict.fromkeys(summary.get("rule_skipped") or ())}
    out += [(m, "skipped", shared, why) for m, why in left.items()]
    return out


def _window(ti: Any, summary: dict[str, Any] | None) -> tuple[datetime, datetime] | None:
    from meshinsights.airflow.tasks import window_from_context
    from meshinsights.model import Window

    try:
        if summary and isinstance(summary.get("window"), dict):
            w = Window.parse(summary["window"]["start"], summary["window"]["end"])
        else:
            w = window_from_context(ti.get_template_context())
    except Exception:  # a run without a usable window still gets its outcome recorded
        return None
    return w.start, w.end


def _record(ti: Any, state: str, error: Any = None) -> None:
    # The API server passes ORM TaskInstances for tasks failed from outside: never write there.
    if type(ti).__name__ != "RuntimeTaskInstance":
        return
    from meshinsights.config.machines import GROUP_MARK
    from meshinsights.settings import get_settings

    settings = get_settings()
    found = _machines_of_dag(str(settings.configs_dir), ti.dag_id)
    if found is None:  # not a machine DAG (maintenance, user DAGs)
        return
    if ti.task_id == GROUP_CHECK_TASK and GROUP_MARK in ti.dag_id:
        return  # a group's check: the ingest's per-member rows already say who failed
    pipeline, members = found
    summary = None
    if state == "success":
        pulled = ti.xcom_pull(task_ids=ti.task_id, key="return_value")
        summary = pulled if isinstance(pulled, dict) else None
    window = _window(ti, summary)
    records = [
        run_record(
            machine_id=machine_id,
            pipeline=pipeline,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            try_number=ti.try_number,
            state=its_state,
            started=ti.start_date or datetime.now(UTC),
            ended=ti.end_date or datetime.now(UTC),
            window=window,
            summary=its_summary,
            error=f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else err,
            hostname=getattr(ti, "hostname", None),
        )
        for machine_id, its_state, its_summary, err in _per_machine(members, state, summary, error)
    ]
    if not records:
        return
    version = write_runs(settings.open_store(), records)
    logger.info(
        "recorded %s %s of %s in %s/%s v%d",
        ti.task_id,
        state,
        ", ".join(r["machine_id"] for r in records[:3]) + ("…" if len(records) > 3 else ""),
        pipeline,
        RUNS_TABLE,
        version,
    )


def _safe_record(ti: Any, state: str, error: Any = None) -> None:
    try:
        _record(ti, state, error)
    except Exception:  # recording must never fail the task it observes
        logger.exception("could not record the outcome of %s", getattr(ti, "task_id", ti))


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _safe_record(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    state = str(getattr(task_instance.state, "value", task_instance.state) or "failed")
    _safe_record(task_instance, state if state == "up_for_retry" else "failed", error)


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    _safe_record(task_instance, "skipped")
