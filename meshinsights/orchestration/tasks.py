"""Bodies of the Airflow tasks the DAG factory builds; glue between Airflow context and the runner.

Everything heavy (pandas, deltalake) is imported when a task runs, never when a DAG file is
parsed. XCom carries only the small summaries these functions return.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from meshinsights.errors import ConfigError, ConnectorError
from meshinsights.model import Window

__all__ = [
    "window_from_context",
    "overrides_from_context",
    "ingest_task",
    "step_task",
    "branch_task",
]

logger = logging.getLogger(__name__)


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
    from meshinsights.connectors.credentials import airflow_resolver, env_resolver

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
    from meshinsights.orchestration.ingest import record_drained, run_incremental
    from meshinsights.orchestration.plan import plan
    from meshinsights.orchestration.runner import late_windows_of, pending_of, run_steps

    _, machine, pipeline, store = _setup(configs_dir, store_uri, machine_id, context)
    run_id = _run_id(context)
    ingested = run_incremental(
        machine,
        pipeline,
        window_from_context(context),
        store,
        run_id=run_id,
        resolver=_resolve,
    )
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


def step_task(
    configs_dir: str, store_uri: str, machine_id: str, step_id: str, context: dict[str, Any]
) -> dict[str, Any]:
    from meshinsights.orchestration.runner import plan, run_step

    _, machine, pipeline, store = _setup(configs_dir, store_uri, machine_id, context)
    planned = {p.id: p for p in plan(pipeline, machine)}[step_id]
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
    from meshinsights.orchestration.runner import evaluate_when, plan

    _, machine, pipeline, store = _setup(configs_dir, store_uri, machine_id, context)
    planned = {p.id: p for p in plan(pipeline, machine)}[step_id]
    holds = evaluate_when(
        planned.when, store, pipeline.name, machine_id, window_from_context(context)
    )
    logger.info(
        "branch %s for %s: rule %s", step_id, machine_id, "holds" if holds else "does not hold"
    )
    return step_id if holds else None
