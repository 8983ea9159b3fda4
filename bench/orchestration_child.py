"""Runs in a fresh interpreter with a private AIRFLOW_HOME: one machine's DAG under ``dag.test()``
interleaved with the local runner over the same windows; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import timedelta
from typing import Any

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _xcom_summaries(dag_id: str, run_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out = {}
    with create_session() as session:
        for row in session.scalars(
            XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")
        ):
            value = XComModel.deserialize_value(row)
            if isinstance(value, dict):
                out[row.task_id] = value
    return out


def _dag_run(dag: Any, day: Any) -> dict[str, Any]:
    """One dag.test for the data interval [day, day + 1); per-task wall and summary times."""
    t = time.perf_counter()
    run = dag.test(logical_date=day + timedelta(days=1))
    wall = time.perf_counter() - t
    if run.state != "success":
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        raise RuntimeError(f"dag.test of {dag.dag_id} for {day} ended {run.state}: {states}")
    summaries = _xcom_summaries(dag.dag_id, run.run_id)
    tasks = {}
    for ti in run.get_task_instances():
        s = summaries.get(ti.task_id, {})
        tasks[ti.task_id] = {
            "state": ti.state,
            "task_seconds": (ti.end_date - ti.start_date).total_seconds()
            if ti.start_date and ti.end_date
            else None,
            "step_seconds": s.get("seconds"),
            "func_seconds": s.get("func_seconds"),
        }
    return {"wall": wall, "tasks": tasks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--local-store", required=True)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import pandas as pd
    from airflow.dag_processing.dagbag import DagBag

    from meshinsights.config import load_configs
    from meshinsights.engine.runner import run_pipeline
    from meshinsights.model import Window
    from meshinsights.store import DeltaStore

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(args.dag_id)
    configs = load_configs(os.environ["MESHINSIGHTS_CONFIGS"])
    local = DeltaStore(args.local_store)
    source = os.environ["AIRFLOW_CONN_MESHINSIGHTS_DEMO"]
    dag_runs, local_runs, warmup = [], [], {}
    for rep in range(-1, args.reps):  # rep -1 warms both paths up
        day = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=rep + 1)
        d = _dag_run(dag, day.to_pydatetime())
        t = time.perf_counter()
        summaries = run_pipeline(
            configs,
            args.machine,
            Window(day.to_pydatetime(), (day + pd.Timedelta(days=1)).to_pydatetime()),
            local,
            resolver=lambda _c: source,
        )
        local_wall = time.perf_counter() - t
        if rep < 0:
            warmup = {"dag_wall": d["wall"], "local_wall": local_wall}
        else:
            dag_runs.append(d)
            local_runs.append(
                {
                    "wall": local_wall,
                    "steps": {
                        s["step"]: {
                            "step_seconds": s.get("seconds"),
                            "func_seconds": s.get("func_seconds"),
                        }
                        for s in summaries
                    },
                }
            )
    print(
        json.dumps({"dag_runs": dag_runs, "local_runs": local_runs, "warmup": warmup}, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
