"""Weekly table maintenance: compact small files, delete rows past each pipeline's ``retention:``,
then vacuum versions older than the retention hours.

Light at parse time (no pandas/deltalake); the tasks import the store when they run. Trigger it
with conf ``{"retention_hours": 72, "pipelines": ["minimal"]}`` to change what one run does;
``MESHINSIGHTS_MAINTENANCE_SCHEDULE`` (cron or preset, "none" to disable) and
``MESHINSIGHTS_RETENTION_HOURS`` set the defaults.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.definitions.param import Param

_schedule = os.environ.get("MESHINSIGHTS_MAINTENANCE_SCHEDULE", "@weekly")


def _options() -> tuple[Any, list[tuple[str, str]], int]:
    from meshinsights.engine.maintenance import select_tables
    from meshinsights.settings import get_settings

    params = get_current_context()["params"]
    store = get_settings().open_store()
    pairs = select_tables(store, namespaces=params.get("pipelines") or [],
                          tables=params.get("tables") or [])
    return store, pairs, int(params["retention_hours"])


@dag(
    dag_id="meshinsights_maintenance",
    schedule=None if _schedule.lower() == "none" else _schedule,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["meshinsights-ops"],
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "retention_hours": Param(int(os.environ.get("MESHINSIGHTS_RETENTION_HOURS", "168")),
                                 type="integer", minimum=0,
                                 description="vacuum keeps every version younger than this"),
        "pipelines": Param([], type="array", description="only these pipelines (empty: all)"),
        "tables": Param([], type="array", description="only these tables (empty: all)"),
    },
    doc_md=__doc__,
)
def meshinsights_maintenance() -> None:
    @task
    def compact() -> list[dict[str, Any]]:
        from meshinsights.engine.maintenance import compact_tables

        store, pairs, _ = _options()
        return [r.as_dict() for r in compact_tables(store, pairs)]

    @task
    def retain() -> list[dict[str, Any]]:
        from meshinsights.config import load_configs
        from meshinsights.engine.lifecycle import retain_tables
        from meshinsights.settings import get_settings

        params = get_current_context()["params"]
        settings = get_settings()
        pipelines = load_configs(settings.configs_dir).pipelines
        rows = retain_tables(settings.open_store(), pipelines,
                             namespaces=params.get("pipelines") or [],
                             run_id=get_current_context()["run_id"])
        return [r.as_dict() for r in rows]

    @task
    def vacuum() -> list[dict[str, Any]]:
        from meshinsights.engine.maintenance import vacuum_tables

        store, pairs, retention = _options()
        return [r.as_dict() for r in vacuum_tables(store, pairs, retention_hours=retention)]

    compact() >> retain() >> vacuum()


meshinsights_maintenance()
