"""Bodies of the Airflow tasks the DAG factory builds; glue between Airflow context and the runner.

Everything heavy (pandas, deltalake) is imported when a task runs, never when a DAG file is
parsed. XCom carries only the small summaries these functions return.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import Any

from meshinsights.engine.logging import on_secret
from meshinsights.errors import ConfigError, ConnectorError
from meshinsights.model import Window

__all__ = [
    "window_from_context",
    "overrides_from_context",
    "ingest_task",
    "step_task",
    "branch_task",
    "drain_runs_task",
    "runs_from_context",
    "machines_from_context",
    "group_ingest_task",
    "group_step_task",
    "group_check_task",
]

logger = logging.getLogger(__name__)


def _airflow_mask(value: str) -> None:
    # Only inside an Airflow task process: importing Airflow's logging elsewhere reconfigures it.
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    if runner is None or getattr(runner, "SUPERVISOR_COMMS", None) is None:
        return
    from airflow.sdk.log import mask_secret

    mask_secret(value)


on_secret(_airflow_mask)  # secrets MeshInsights learns are masked in Airflow's task logs too


def window_from_context(context: dict[str, Any]) -> Window:
    """The run's window: ``conf.start``/``conf.end`` if given (request mode), else the data
    interval."""
    dag_run = context.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    if conf.get("start") or conf.get("end"):
        if not (conf.get("start") and conf.get("end")):
            raise ConfigError(
                "run conf needs both 'start' and 'end' (ISO times), e.g. "
                '{"start": "2024-01-01", "end": "2024-01-02"}'
            )
        return Window.parse(conf["start"], conf["end"])
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        raise ConfigError(
            "this run has no data interval; trigger it with conf "
            '{"start": ISO, "end": ISO} or let the schedule run it'
        )
    return Window.parse(start, end)


@lru_cache(maxsize=4)
def _configs(configs_dir: str, machine_id: str) -> Any:
    # Only this machine's file is parsed: a task's start cost does not grow with the fleet.
    from meshinsights.config import load_machine_configs

    return load_machine_configs(configs_dir, machine_id)


def _resolve(conn_id: str) -> str:
    # Environment first (AIRFLOW_CONN_* is also what Airflow reads), then the Connection API.
    from meshinsights.credentials import airflow_resolver, env_resolver

    try:
        return env_resolver(conn_id)
    except ConnectorError:
        return airflow_resolver(conn_id)


def overrides_from_context(context: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``conf.overrides`` (``{step_id: {param: value}}``): this run's params, over the machine's.

    How one run (a backfill of one window, a rerun with another reference period) uses other
    params without editing the machine file; the commits' fingerprints record what was used,
    so `meshinsights status` later shows those windows as made by another definition.
    """
    dag_run = context.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    overrides = conf.get("overrides") or {}
    if not isinstance(overrides, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in overrides.items()
    ):
        raise ConfigError(
            "run conf 'overrides' must map step ids to params, e.g. "
            '{"overrides": {"average_temperature": {"freq": "30min"}}}'
        )
    return overrides


def _with_run_overrides(machine: Any, pipeline: Any, context: dict[str, Any]) -> Any:
    overrides = overrides_from_context(context)
    if not overrides:
        return machine
    known = {s.id for s in pipeline.steps}
    unknown = sorted(set(overrides) - known)
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(u, known, n=1) for u in unknown]
        raise ConfigError(
            f"run conf overrides name no step of pipeline {pipeline.name}: "
            + ", ".join(
                f"{u}" + (f" (did you mean {h[0]}?)" if h else "")
                for u, h in zip(unknown, hints, strict=True)
            )
            + f"; its steps: {', '.join(sorted(known))}"
        )
    merged = {**machine.overrides}
    for step_id, params in overrides.items():
        merged[step_id] = {**merged.get(step_id, {}), **params}
    logger.info("machine %s: this run's conf overrides %s", machine.machine_id, overrides)
    return machine.model_copy(update={"overrides": merged})


def _setup(
    configs_dir: str, store_uri: str, machine_id: str, context: dict[str, Any] | None = None
) -> tuple[Any, Any, Any, Any]:
    from meshinsights.settings import storage_options_from_env
    from meshinsights.store import DeltaStore

    configs = _configs(configs_dir, machine_id)
    machine = configs.machine(machine_id)
    if context is not None:
        machine = _with_run_overrides(machine, configs.pipeline_of(machine), context)
    # The URI is the DAG's; credentials and endpoints come from the worker's environment.
    store = DeltaStore(store_uri, storage_options=storage_options_from_env())
    return configs, machine, configs.pipeline_of(machine), store


def _run_id(context: dict[str, Any]) -> str:
    return str(context.get("run_id") or "airflow")


def ingest_task(
    configs_dir: str, store_uri: str, machine_id: str, context: dict[str, Any]
) -> dict[str, Any]:
    """Incremental ingest of the run window, then the steps of every pending reopened window.

    Windows reopened by late rows (now or by an earlier run whose steps failed) are rerun here
    as one batch (one commit per step); only when all of their steps committed does a ledger
    commit mark them drained, so a failure leaves them pending for the retry or the next run.
    The DAG's step tasks cover the run window itself.
    """

    _, machine, pipeline, store = _setup(configs_dir, store_uri, machine_id, context)
    run_id = _run_id(context)
    if pipeline.window == "run":
        return _ingest_runs(machine, pipeline, store, run_id, context)
    return _ingest_window(machine, pipeline, store, window_from_context(context), run_id)


def _ingest_window(
    machine: Any, pipeline: Any, store: Any, window: Window, run_id: str
) -> dict[str, Any]:
    from meshinsights.engine.ingest import record_drained, run_incremental
    from meshinsights.engine.plan import plan
    from meshinsights.engine.runner import late_windows_of, pending_of, run_steps

    machine_id = machine.machine_id
    ingested = run_incremental(machine, pipeline, window, store, run_id=run_id, resolver=_resolve)
    pending = pending_of(ingested)
    if pending:
        steps = plan(pipeline, machine)
        run_steps(
            steps, machine_id, pipeline.name, pending, store, run_id=run_id, resolver=_resolve
        )
        record_drained(store, pipeline.name, machine_id, pending, run_id=run_id)
    return {
        **ingested[-1],
        "late_windows": [w.as_dict() for w in late_windows_of(ingested)],
        "drained": [w.as_dict() for w in pending],
    }


def runs_from_context(context: dict[str, Any]) -> list[str]:
    """``conf.run`` (one run id) or ``conf.runs`` (a list): the runs this DAG run addresses."""
    dag_run = context.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    runs = conf.get("runs") or ([conf["run"]] if conf.get("run") else [])
    if not isinstance(runs, list) or not all(isinstance(r, str) and r for r in runs):
        raise ConfigError(
            "run conf 'run' must be a run id and 'runs' a list of them, e.g. {\"run\": \"r-42\"}"
        )
    return runs


def _ingest_runs(
    machine: Any, pipeline: Any, store: Any, run_id: str, context: dict[str, Any]
) -> dict[str, Any]:
    """A pipeline windowed by run: ingest the interval, then name the runs the steps process.

    With ``conf.run``/``conf.runs`` the DAG run addresses those runs (a rerun of one run from
    the stored telemetry: no ingest); else the interval is ingested and the runs are every
    run pending for the machine — those whose rows changed, now or in a run whose steps failed.
    The step tasks run over these runs; the ``drain_runs`` task then takes them off the list.
    """
    from meshinsights.engine.ingest import ingest_state, run_incremental
    from meshinsights.engine.runs import run_spans, run_window

    ns, mid = pipeline.name, machine.machine_id
    asked = runs_from_context(context)
    if asked:
        windows = [run_window(store, ns, mid, r) for r in asked]
        return {
            "step": "ingest",
            "skipped": True,
            "runs": [w.as_dict() for w in windows],
            "window": windows[0].as_dict(),
            "run_id": run_id,
            "skip_reason": f"conf names run(s) {asked}: steps rerun from stored telemetry",
        }
    ingested = run_incremental(
        machine, pipeline, window_from_context(context), store, run_id=run_id, resolver=_resolve
    )
    state = ingest_state(store, ns, mid)
    spans = run_spans(store, ns, mid)
    windows = [spans[r].window for r in state.pending_runs if r in spans]
    return {
        **ingested[-1],
        "runs": [w.as_dict() for w in windows],
        "drain_windows": [w.as_dict() for w in state.pending],
    }


def _runs_of(context: dict[str, Any]) -> list[Window]:
    ti = context.get("ti")
    found = ti.xcom_pull(task_ids="ingest", key="runs") if ti is not None else None
    return [Window.from_dict(w) for w in found or []]


def drain_runs_task(
    configs_dir: str, store_uri: str, machine_id: str, context: dict[str, Any]
) -> dict[str, Any]:
    """After every step ran over the DAG run's runs: they (and reopened windows) are done."""
    from meshinsights.engine.ingest import record_drained

    _, _, pipeline, store = _setup(configs_dir, store_uri, machine_id, context)
    ti = context.get("ti")
    windows = ti.xcom_pull(task_ids="ingest", key="drain_windows") if ti is not None else None
    runs = [w.run for w in _runs_of(context) if w.run]
    drained = [Window.from_dict(w) for w in windows or []]
    if runs or drained:
        record_drained(
            store, pipeline.name, machine_id, drained, run_id=_run_id(context), runs=runs
        )
    return {"step": "drain_runs", "runs": runs, "windows": len(drained)}


def step_task(
    configs_dir: str, store_uri: str, machine_id: str, step_id: str, context: dict[str, Any]
) -> dict[str, Any]:
    from meshinsights.engine.runner import plan, run_step, run_steps

    _, machine, pipeline, store = _setup(configs_dir, store_uri, machine_id, context)
    planned = {p.id: p for p in plan(pipeline, machine)}[step_id]
    if pipeline.window == "run":
        runs = _runs_of(context)
        done = (
            run_steps(
                [planned],
                machine_id,
                pipeline.name,
                runs,
                store,
                run_id=_run_id(context),
                resolver=_resolve,
            )
            if runs
            else []
        )
        return {
            "step": step_id,
            "runs": [w.run for w in runs],
            "rows_out": sum(int(s.get("rows_out") or 0) for s in done),
            "skipped": not runs,
            **({"skip_reason": "no run changed in this interval"} if not runs else {}),
        }
    return run_step(
        planned,
        machine_id,
        window_from_context(context),
        store,
        namespace=pipeline.name,
        run_id=_run_id(context),
        resolver=_resolve,
    )


def branch_task(
    configs_dir: str, store_uri: str, machine_id: str, step_id: str, context: dict[str, Any]
) -> str | None:
    """The step's task id when its rule holds, else None (Airflow then skips it)."""
    from meshinsights.engine.runner import evaluate_when, plan

    _, machine, pipeline, store = _setup(configs_dir, store_uri, machine_id, context)
    planned = {p.id: p for p in plan(pipeline, machine)}[step_id]
    holds = evaluate_when(
        planned.when, store, pipeline.name, machine_id, window_from_context(context)
    )
    logger.info(
        "branch %s for %s: rule %s", step_id, machine_id, "holds" if holds else "does not hold"
    )
    return step_id if holds else None


# ------------------------------------------------------------------ the grouped grain
# One DAG per machine group (``group:`` in the member files): each task does its job for every
# member of the run, and a step writes all of them in one commit.

#: The per-machine counts a group task's summary keeps under ``per_machine`` (its listener
#: writes one runs row per member from them).
PER_MACHINE_COUNTS = ("rows_in", "rows_out", "rows_quarantined", "duplicates_removed", "version")


def planned_output(pipeline: Any, step_id: str) -> str:
    from meshinsights.engine.plan import plan

    return {p.id: p for p in plan(pipeline)}[step_id].output


@lru_cache(maxsize=4)
def _group_configs(configs_dir: str, group: str) -> Any:
    # Only the files naming this group are parsed (config.fleet.group_in).
    from meshinsights.config.loading import load_group_configs

    return load_group_configs(configs_dir, group)


def machines_from_context(context: dict[str, Any]) -> list[str]:
    """``conf.machines``: the members one run of a group's DAG addresses (a backfill or rerun
    of some machines); empty means all."""
    dag_run = context.get("dag_run")
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    asked = conf.get("machines") or []
    if isinstance(asked, str):
        asked = [asked]
    if not isinstance(asked, list) or not all(isinstance(m, str) and m for m in asked):
        raise ConfigError(
            "run conf 'machines' must list machine ids of the group, e.g. "
            '{"machines": ["chiller-07"], "start": "2024-01-01", "end": "2024-01-02"}'
        )
    return asked


def _group_setup(
    configs_dir: str, store_uri: str, pipeline_name: str, group: str, context: dict[str, Any]
) -> tuple[list[Any], Any, Any, Window, dict[str, str]]:
    """The members this run covers (conf.machines, less paused ones and those whose
    start_date is after the window), the pipeline, the store, the window, and why each left-out
    member is left out."""
    from meshinsights.settings import storage_options_from_env
    from meshinsights.store import DeltaStore

    configs = _group_configs(configs_dir, group)
    members = {mid: m for mid, m in sorted(configs.machines.items()) if m.pipeline == pipeline_name}
    if not members:
        bad = "; ".join(configs.errors.values())
        raise ConfigError(
            f"group {group!r} of pipeline {pipeline_name} has no valid member in "
            f"{configs_dir}/machines" + (f": {bad}" if bad else "")
        )
    pipeline = configs.pipelines[pipeline_name]
    window = window_from_context(context)
    asked = machines_from_context(context)
    unknown = sorted(set(asked) - set(members))
    if unknown:
        raise ConfigError(
            f"run conf machines {unknown} are not members of group {group!r}; its members: "
            + ", ".join(members)
        )
    left_out: dict[str, str] = {}
    chosen = []
    for mid, machine in members.items():
        if asked and mid not in asked:
            continue
        if machine.paused:
            left_out[mid] = "paused: true in its config"
        elif datetime.combine(machine.start_date, time(0), UTC) >= window.end:
            left_out[mid] = f"start_date {machine.start_date} is after this window"
        else:
            chosen.append(_with_run_overrides(machine, pipeline, context))
    for mid, why in left_out.items():
        logger.info("group %s: machine %s left out of this run: %s", group, mid, why)
    store = DeltaStore(store_uri, storage_options=storage_options_from_env())
    return chosen, pipeline, store, window, left_out


def group_ingest_task(
    configs_dir: str, store_uri: str, pipeline_name: str, group: str, context: dict[str, Any]
) -> dict[str, Any]:
    """Each member's incremental ingest of the window (one commit each, as its own DAG would).

    A member whose ingest fails does not stop the others: it is listed under ``failed`` (the
    steps leave it out, its watermark does not move, so a later run catches it up) and the
    DAG's last task fails the run naming it.
    """
    from meshinsights.credentials import redact

    machines, pipeline, store, window, left_out = _group_setup(
        configs_dir, store_uri, pipeline_name, group, context
    )
    run_id = _run_id(context)
    per_machine: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for machine in machines:
        try:
            summary = _ingest_window(machine, pipeline, store, window, run_id)
        except Exception as exc:  # one member's source must not hold the group's analytics
            logger.exception("group %s: ingest of %s failed", group, machine.machine_id)
            failed[machine.machine_id] = redact(f"{type(exc).__name__}: {exc}")
            continue
        per_machine[machine.machine_id] = {k: summary.get(k) for k in PER_MACHINE_COUNTS}
    return {
        "step": "ingest",
        "group": group,
        "window": window.as_dict(),
        "machines": list(per_machine),
        "per_machine": per_machine,
        "failed": failed,
        "left_out": left_out,
        "rows_in": sum(int(c.get("rows_in") or 0) for c in per_machine.values()),
        "run_id": run_id,
    }


def group_step_task(
    configs_dir: str,
    store_uri: str,
    pipeline_name: str,
    group: str,
    step_id: str,
    context: dict[str, Any],
) -> dict[str, Any]:
    """The step for every member the ingest succeeded for, in one commit per set of members
    sharing the step's definition (their overrides); a branch rule is checked per member, and
    the members where it does not hold are left untouched (as their own DAG would skip)."""
    from meshinsights.engine.runner import evaluate_when, plan, run_step

    machines, pipeline, store, window, _ = _group_setup(
        configs_dir, store_uri, pipeline_name, group, context
    )
    ti = context.get("ti")
    ingested = ti.xcom_pull(task_ids="ingest", key="machines") if ti is not None else None
    if ingested is not None:
        machines = [m for m in machines if m.machine_id in set(ingested)]
    by_definition: dict[str, tuple[Any, list[str]]] = {}
    rule_skipped: list[str] = []
    for machine in machines:
        planned = {p.id: p for p in plan(pipeline, machine)}[step_id]
        if not evaluate_when(planned.when, store, pipeline.name, machine.machine_id, window):
            rule_skipped.append(machine.machine_id)
            continue
        by_definition.setdefault(planned.fingerprint, (planned, []))[1].append(machine.machine_id)
    per_machine: dict[str, dict[str, Any]] = {}
    commits = 0
    for planned, ids in by_definition.values():
        done = run_step(
            planned,
            ids,
            window,
            store,
            namespace=pipeline.name,
            run_id=_run_id(context),
            resolver=_resolve,
        )
        counts = done.get("by_machine") or {ids[0]: done}
        for mid in ids:
            per_machine[mid] = {
                "rows_in": counts[mid].get("rows_in"),
                "rows_out": counts[mid].get("rows_out"),
                "version": done.get("version"),
            }
        commits += done.get("version") is not None
    if rule_skipped:
        logger.info("step %s: branch rule does not hold for %s", step_id, rule_skipped)
    return {
        "step": step_id,
        "group": group,
        "window": window.as_dict(),
        "machines": sorted(per_machine),
        "per_machine": per_machine,
        "rule_skipped": rule_skipped,
        "rows_out": sum(int(c["rows_out"] or 0) for c in per_machine.values()),
        "table": planned_output(pipeline, step_id),
        "commits": commits,
    }


def group_check_task(context: dict[str, Any]) -> dict[str, Any]:
    """The group DAG's last task: fails the run when a member's ingest failed, naming it (the
    other members' steps ran), so the failure is as visible as a failed per-machine DAG run."""
    ti = context.get("ti")
    failed = (ti.xcom_pull(task_ids="ingest", key="failed") if ti is not None else None) or {}
    if failed:
        raise ConnectorError(
            f"{len(failed)} member(s) of this group failed to ingest; the others' steps ran. "
            + "; ".join(f"{mid}: {why}" for mid, why in sorted(failed.items()))
            + ". Their watermarks did not move: fix the source, then clear this DAG run or "
            "let the next run catch them up."
        )
    return {"step": "check_machines", "failed": {}}
