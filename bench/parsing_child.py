"""One DAG-file parse in a fresh interpreter, as Airflow's dag-processor or task runner does it.

``python -m bench.parsing_child FILE [--dag-id ID]`` imports Airflow's DagBag first (the
dag-processor has Airflow loaded before it starts a file's process), then times the parse of
FILE; with ``--dag-id`` the parsing context is set the way the task runner sets it, and the
task's own config load (``load_machine_configs``) is timed after it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--dag-id")
    args = parser.parse_args()
    if args.dag_id:
        # What airflow.sdk.execution_time.task_runner does around its parse of the DAG file.
        os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = args.dag_id
        os.environ["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "ingest"
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=args.file)
    parsed = time.perf_counter()
    result = {
        "parse_seconds": parsed - started,
        "dags": len(bag.dags),
        "tasks": sum(len(d.tasks) for d in bag.dags.values()),
        "import_errors": [str(e).splitlines()[-1][:300] for e in bag.import_errors.values()],
    }
    if args.dag_id:
        from meshinsights.config import load_machine_configs
        from meshinsights.settings import get_settings

        dag = bag.dags[args.dag_id]
        machine_id = args.dag_id.split("__", 1)[1]
        load_machine_configs(get_settings().configs_dir, machine_id).machine(machine_id)
        result["start_seconds"] = time.perf_counter() - started
        result["task_ids"] = len(dag.task_ids)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
