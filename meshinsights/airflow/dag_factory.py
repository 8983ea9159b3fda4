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
from meshinsights.airflow.listener import GROUP_CHECK_TASK
from meshinsights.config import LoadedConfigs, MachineConfig, PipelineConfig, load_configs
from meshinsights.config.fleet import (
    UNKNOWN_GROUP,
    dag_shard_key,
    fleet_key,
    scan_machine_files,
    scan_machine_groups,
    shard_of,
)
from meshinsights.config.loading import MAX_CONFIG_BYTES
from meshinsights.config.machines import GROUP_MARK
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


def _group_doc(members: list[MachineConfig], pipeline: PipelineConfig, steps: list[Any]) -> str:
    head = _doc(members[0], pipeline, steps).split("\n\n", 1)[1]
    shown = ", ".join(f"`{m.machine_id}`" for m in members[:50])
    more = f" and {len(members) - 50} more" if len(members) > 50 else ""
    return (
        f"### group {members[0].group} — pipeline `{pipeline.name}`, {len(members)} "
        f"machines\n\nMembers: {shown}{more}. Each step task runs the step for every member in "
        'one commit. Trigger with conf `{"machines": ["<id>"], "start": ISO, "end": ISO}` '
        "to backfill or rerun some members only; `paused: true` in a member's file leaves it "
        "out.\n\n" + head
    )


def _build_one(
    members: list[MachineConfig], pipeline: PipelineConfig, configs_dir: str, store_uri: str
) -> Any:
    """The DAG of one machine, or of a machine group (``members`` sharing ``group:``)."""
    from airflow.sdk import DAG, get_current_context, task
    from airflow.sdk.definitions.param import Param, ParamsDict

    machine = members[0]
    group = machine.group  # members agree on the DAG-level settings (config.loading)
    steps = plan(pipeline, machine)
    mid = machine.machine_id
    first = min(m.start_date for m in members)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
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
            "on_failure_callback": failure_callback(
                machine.alert_conn_id, machine_id=mid if group is None else None
            ),
        },
        tags=[
            "meshinsights",
            pipeline.name,
            *dict.fromkeys(t for m in members for t in m.tags),  # members' tags, once each
            *([f"group:{group}"] if group is not None else []),
        ],
        doc_md=(
            _doc(machine, pipeline, steps)
            if group is None
            else _group_doc(members, pipeline, steps)
        ),
        render_template_as_native_obj=False,
    )
    tasks: dict[str, Any] = {}
    with dag:
        source_tables = ["telemetry", "quarantine"]
        if any(getattr(m.source, "events_query", None) for m in members):
            source_tables.append("events")

        # multiple_outputs is what Airflow would infer from the dict return annotation; given,
        # it skips a get_type_hints per task at parse time.
        @task(
            task_id=INGEST,
            multiple_outputs=True,
            outlets=[asset_for(store_uri, pipeline.name, t) for t in source_tables],
        )
        def ingest() -> dict[str, Any]:
            from meshinsights.airflow import tasks as t

            context = _ctx(get_current_context())
            if group is not None:
                return t.group_ingest_task(configs_dir, store_uri, pipeline.name, group, context)
            return t.ingest_task(configs_dir, store_uri, mid, context)

        tasks[INGEST] = ingest()
        by_run = pipeline.window == "run"
        # By run (a per-run check in run_steps) or by group (a per-member check in the step
        # task), a step's task checks its branch rule itself instead of a branch task.
        own_check = by_run or group is not None
        target = (pipeline.name, group) if group is not None else mid
        for s in steps:
            tasks[s.id] = _step_task(
                s, configs_dir, store_uri, target, asset_for(store_uri, pipeline.name, s.output)
            )
            upstream = s.upstream  # the plan's edges (INGEST for the source tables)
            if s.when is not None and not own_check:
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
        if group is not None:
            last = _group_check_task()
            for t in tasks.values():
                t >> last
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
            **(
                {
                    "machines": Param(
                        [],
                        type=["null", "array"],
                        description="members this run covers (empty: all)",
                    )
                }
                if group is not None
                else {}
            ),
        }
    )
    return dag


def _ctx(context: Any) -> dict[str, Any]:
    keys = ("dag_run", "data_interval_start", "data_interval_end", "run_id", "logical_date", "ti")
    return {k: context.get(k) for k in keys}


def _step_task(
    s: PlannedStep, configs_dir: str, store_uri: str, target: str | tuple[str, str], outlet: Any
) -> Any:
    """A step's task for a machine (``target`` its id) or a group (``(pipeline, group)``)."""
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
        from meshinsights.airflow import tasks as t

        context = _ctx(get_current_context())
        if isinstance(target, tuple):
            return t.group_step_task(configs_dir, store_uri, *target, s.id, context)
        return t.step_task(configs_dir, store_uri, target, s.id, context)

    return run()


def _group_check_task() -> Any:
    from airflow.sdk import get_current_context, task

    # Not all_done: a leaf that succeeds after a failed task would mark the DAG run a success.
    @task(task_id=GROUP_CHECK_TASK, trigger_rule="none_failed")
    def check() -> dict[str, Any]:
        from meshinsights.airflow.tasks import group_check_task

        return group_check_task(_ctx(get_current_context()))

    return check()


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
    """Every valid machine config as a DAG (a group's members as one), plus ``{file: error}``
    for every invalid one.

    ``shard=(index, count)`` builds only the DAGs of that shard
    (:func:`~meshinsights.config.fleet.shard_of` of a machine's id, or of its group); ``dag_id``
    only that DAG, which is what a task process needs (Airflow's parsing context): the other
    machines' files are not parsed.
    """
    settings = get_settings(configs=str(config_dir) if config_dir else None, store=store_uri)
    root = settings.configs_dir
    configs: LoadedConfigs = load_configs(root, only=_selector(root, shard, dag_id))
    dags: dict[str, Any] = {}
    errors = dict(configs.errors)
    index, count = shard if shard is not None else (0, 1)
    by_dag: dict[str, list[MachineConfig]] = {}
    for _, machine in sorted(configs.machines.items()):
        if dag_id is not None and machine.dag_id != dag_id:
            continue
        if shard_of(dag_shard_key(machine.machine_id, machine.group), count) != index:
            continue  # parsed because its text did not tell its group plainly; not this shard
        by_dag.setdefault(machine.dag_id, []).append(machine)
    for did, members in by_dag.items():
        label = f"group {members[0].group}" if members[0].group else f"machine {did}"
        try:
            dags[did] = _build_one(
                members, configs.pipeline_of(members[0]), str(root), settings.store_uri
            )
        except Exception as exc:  # one bad machine (or group) must not take the fleet down
            name = members[0].group or members[0].machine_id
            kind = "group" if members[0].group else "machine"
            errors[label] = f"{kind} {name}: cannot build its DAG: {exc}"
            logger.exception("building the DAG %s failed", did)
    return dags, errors


def _selector(
    root: Path, shard: tuple[int, int] | None, dag_id: str | None
) -> Callable[[str], bool] | None:
    """Which machine ids to load: those of the shard and/or of the DAG whose id is given.

    A machine's DAG id is ``<pipeline>__<fleet key>``; matching its suffix keeps every machine
    whose id could clash with it, so a clash is refused here exactly as in a full parse. A
    group's (``<pipeline>__group__<group>``) keeps the files whose text names that group. The
    shard of a group member is its group's. A file whose text does not tell its id or group
    plainly is always parsed (and placed after parsing).
    """
    if shard is None and dag_id is None:
        return None
    index, count = shard if shard is not None else (0, 1)
    ids = scan_machine_files(root, max_bytes=MAX_CONFIG_BYTES)
    groups = scan_machine_groups(root, max_bytes=MAX_CONFIG_BYTES)
    group_of = {mid: groups[p] for p, mid in ids.items() if mid is not None}
    wanted_group = dag_id.split(GROUP_MARK, 1)[1] if dag_id and GROUP_MARK in dag_id else None

    def keep(machine_id: str) -> bool:
        group = group_of.get(machine_id, UNKNOWN_GROUP)
        if group == UNKNOWN_GROUP:
            return True
        if wanted_group is not None:
            return group == wanted_group
        if dag_id is not None and not dag_id.endswith("__" + fleet_key(machine_id)):
            return False
        return shard_of(dag_shard_key(machine_id, group), count) == index

    return keep
