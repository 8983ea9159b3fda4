"""The DAG factory: one Airflow DAG per machine config, one TaskFlow task per step.

``build_dags(config_dir)`` returns ``(dags, errors)``; a thin file in ``dags/`` registers the
DAGs in ``globals()`` and turns each error into one visible import error, so a broken machine
file never hides the rest of the fleet. Task bodies live in :mod:`.tasks` and import the heavy
libraries only when a task runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from meshinsights import schedules
from meshinsights.airflow.callbacks import failure_callback
from meshinsights.config import LoadedConfigs, MachineConfig, PipelineConfig, load_configs
from meshinsights.config.fleet import fleet_key, shard_of
from meshinsights.engine.plan import INGEST, PlannedStep, plan
from meshinsights.settings import get_settings

__all__ = ["build_dags", "asset_for"]

logger = logging.getLogger(__name__)

DEFAULT_ARGS: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def timetable_for(schedule: str | None) -> Any:
    """A *data-interval* timetable: each run covers [previous tick, this tick), its window.

    Airflow 3 defaults cron schedules to trigger timetables whose interval is a single
    point; a per-window pipeline needs real intervals (and backfills of them).
    """
    if schedule is None:
        return None
    from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

    return CronDataIntervalTimetable(schedules.cron_of(schedule) or "", timezone="UTC")


def asset_for(store_uri: str, namespace: str, table: str) -> Any:
    """The Airflow Asset of an artifact table (downstream DAGs can schedule on it).

    The name carries a short hash of the store root: Airflow requires one URI per asset
    name, and the same table in two stores (dev and prod, two test stores) is two assets.
    """
    import hashlib

    from airflow.sdk import Asset

    uri = store_uri if "://" in store_uri else f"file://{store_uri}"
    tag = hashlib.sha256(uri.encode()).hexdigest()[:8]
    return Asset(name=f"meshinsights.{namespace}.{table}.{tag}", uri=f"{uri}/{namespace}/{table}")


def _doc(machine: MachineConfig, pipeline: PipelineConfig, steps: list[PlannedStep]) -> str:
    rows = "\n".join(
        f"| `{s.id}` | `{s.spec.name}` | {', '.join(sorted(set(s.inputs.values())))} | "
        f"`{s.output}` | {'branch' if s.when else ''} |"
        for s in steps
    )
    via = (
        " via connection `" + machine.source.conn_id + "`"
        if hasattr(machine.source, "conn_id")
        else ""
    )
    return (
        f"### {machine.machine_id} — pipeline `{pipeline.name}`\n\n{pipeline.description}\n\n"
        f"Source: `{machine.source.type}`"
        f"{via}."
        ' Trigger with conf `{"start": ISO, "end": ISO}` to process any window on demand'
        + (
            ', or `{"run": "<run id>"}` to rerun one run (windowed by run).\n\n'
            if pipeline.window == "run"
            else ".\n\n"
        )
        + "| task | step | reads | writes | |\n|---|---|---|---|---|\n"
        + rows
    )


def _build_one(
    machine: MachineConfig, pipeline: PipelineConfig, configs_dir: str, store_uri: str
) -> Any:
    from airflow.sdk import DAG, get_current_context, task
    from airflow.sdk.definitions.param import Param, ParamsDict

    steps = plan(pipeline, machine)
    mid = machine.machine_id
    start = datetime(
        machine.start_date.year, machine.start_date.month, machine.start_date.day, tzinfo=UTC
    )
    dag = DAG(
        dag_id=machine.dag_id,
        schedule=timetable_for(machine.schedule),
        start_date=start,
        catchup=machine.catchup,
        # Windowed by run, one DAG run at a time: a run spans intervals, and two concurrent
        # runs could each write it from a partial index (or drain a run the other changed).
        max_active_runs=1 if pipeline.window == "run" else 4,
        default_args={
            **DEFAULT_ARGS,
            "owner": machine.owner,
            "retries": machine.retries,
            # A failed task of this machine posts to its webhook Connection (if it has one).
            "on_failure_callback": failure_callback(machine.alert_conn_id, machine_id=mid),
        },
        tags=["meshinsights", pipeline.name, *machine.tags],
        doc_md=_doc(machine, pipeline, steps),
        render_template_as_native_obj=False,
    )
    tasks: dict[str, Any] = {}
    with dag:
        source_tables = ["telemetry", "quarantine"]
        if getattr(machine.source, "events_query", None):
            source_tables.append("events")

        # multiple_outputs is what Airflow would infer from the dict return annotation; given,
        # it skips a get_type_hints per task at parse time.
        @task(
            task_id=INGEST,
            multiple_outputs=True,
            outlets=[asset_for(store_uri, pipeline.name, t) for t in source_tables],
        )
        def ingest() -> dict[str, Any]:
            from meshinsights.airflow.tasks import ingest_task

            return ingest_task(configs_dir, store_uri, mid, _ctx(get_current_context()))

        tasks[INGEST] = ingest()
        by_run = pipeline.window == "run"
        for s in steps:
            tasks[s.id] = _step_task(
                s, configs_dir, store_uri, mid, asset_for(store_uri, pipeline.name, s.output)
            )
            upstream = s.upstream  # the plan's edges (INGEST for the source tables)
            # By run, a step's task checks its branch rule per run (run_steps) instead.
            if s.when is not None and not by_run:
                check = _branch_task(s, configs_dir, store_uri, mid)
                for u in upstream:
                    tasks[u] >> check
                check >> tasks[s.id]
            else:
                for u in upstream:
                    tasks[u] >> tasks[s.id]
        if by_run:
            drain = _drain_task(configs_dir, store_uri, mid)
            for t in tasks.values():
                t >> drain
    # Set after the tasks: each operator deep-copies the DAG's params once per class of its
    # hierarchy, most of a DAG's build cost. A task's run still sees them (Airflow merges the
    # DAG's params under the task's), and the trigger form is the DAG's.
    dag.params = ParamsDict(
        {
            "start": Param(None, type=["null", "string"], description="window start (ISO)"),
            "end": Param(None, type=["null", "string"], description="window end (ISO)"),
            **(
                {
                    "run": Param(
                        None,
                        type=["null", "string"],
                        description="a run id: rerun that run's steps (window: run)",
                    )
                }
                if pipeline.window == "run"
                else {}
            ),
        }
    )
    return dag


def _ctx(context: Any) -> dict[str, Any]:
    keys = ("dag_run", "data_interval_start", "data_interval_end", "run_id", "logical_date", "ti")
    return {k: context.get(k) for k in keys}


def _step_task(s: PlannedStep, configs_dir: str, store_uri: str, mid: str, outlet: Any) -> Any:
    from airflow.sdk import get_current_context, task

    # A step downstream of a branch must still run when that branch was skipped.
    @task(
        task_id=s.id,
        multiple_outputs=True,
        outlets=[outlet],
        trigger_rule="none_failed_min_one_success",
        doc_md=s.spec.description,
    )
    def run() -> dict[str, Any]:
        from meshinsights.airflow.tasks import step_task

        return step_task(configs_dir, store_uri, mid, s.id, _ctx(get_current_context()))

    return run()


def _drain_task(configs_dir: str, store_uri: str, mid: str) -> Any:
    from airflow.sdk import get_current_context, task

    @task(task_id="drain_runs")
    def drain() -> dict[str, Any]:
        from meshinsights.airflow.tasks import drain_runs_task

        return drain_runs_task(configs_dir, store_uri, mid, _ctx(get_current_context()))

    return drain()


def _branch_task(s: PlannedStep, configs_dir: str, store_uri: str, mid: str) -> Any:
    from airflow.sdk import get_current_context, task

    @task.branch(
        task_id=f"check_{s.id}", multiple_outputs=False, trigger_rule="none_failed_min_one_success"
    )
    def check() -> str | None:
        from meshinsights.airflow.tasks import branch_task

        return branch_task(configs_dir, store_uri, mid, s.id, _ctx(get_current_context()))

    return check()


def build_dags(
    config_dir: Path | str | None = None,
    *,
    store_uri: str | None = None,
    shard: tuple[int, int] | None = None,
    dag_id: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every valid machine config as a DAG, plus ``{file: error}`` for every invalid one.

    ``shard=(index, count)`` builds only the machines of that shard
    (:func:`~meshinsights.config.fleet.shard_of`); ``dag_id`` only that DAG, which is what a
    task process needs (Airflow's parsing context): the other machines' files are not parsed.
    """
    settings = get_settings(configs=str(config_dir) if config_dir else None, store=store_uri)
    configs: LoadedConfigs = load_configs(settings.configs_dir, only=_selector(shard, dag_id))
    dags: dict[str, Any] = {}
    errors = dict(configs.errors)
    for mid, machine in sorted(configs.machines.items()):
        if dag_id is not None and machine.dag_id != dag_id:
            continue
        try:
            dags[machine.dag_id] = _build_one(
                machine, configs.pipeline_of(machine), str(settings.configs_dir), settings.store_uri
            )
        except Exception as exc:  # one bad machine must not take the fleet down
            errors[f"machine {mid}"] = f"machine {mid}: cannot build its DAG: {exc}"
            logger.exception("building the DAG of %s failed", mid)
    return dags, errors


def _selector(shard: tuple[int, int] | None, dag_id: str | None) -> Callable[[str], bool] | None:
    """Which machine ids to load: those of the shard and/or the one whose DAG id is given.

    A DAG id is ``<pipeline>__<fleet key>``; matching its suffix keeps every machine whose id
    could clash with it, so a clash is refused here exactly as in a full parse.
    """
    if shard is None and dag_id is None:
        return None
    index, count = shard if shard is not None else (0, 1)

    def keep(machine_id: str) -> bool:
        if dag_id is not None and not dag_id.endswith("__" + fleet_key(machine_id)):
            return False
        return shard_of(machine_id, count) == index

    return keep
