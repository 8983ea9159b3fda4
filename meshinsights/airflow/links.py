"""Links from Airflow to the dashboard: each machine DAG (and task) opens its machine's view.

The plugin mounts :func:`links_app` on the Airflow API server under ``/meshinsights`` and adds
"Dashboard" tabs to the DAG and task pages whose URL Airflow fills with ``{DAG_ID}`` /
``{TASK_ID}``; this app maps the DAG to its machine (from the configs) and redirects to the
dashboard at ``MESHINSIGHTS_DASHBOARD_URL`` (default http://localhost:8501).
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

__all__ = ["dashboard_url", "dashboard_url_for_dag", "links_app", "PREFIX"]

logger = logging.getLogger(__name__)

#: Where the plugin mounts the links app on the Airflow API server.
PREFIX = "/meshinsights"


def dashboard_url(
    machine_id: str,
    *,
    pipeline: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    base: str | None = None,
) -> str:
    """The dashboard view of one machine (optionally focused on a step and a run)."""
    root = base or os.environ.get("MESHINSIGHTS_DASHBOARD_URL") or "http://localhost:8501"
    query = {"machine": machine_id, "pipeline": pipeline, "task": task_id, "run_id": run_id}
    return f"{root.rstrip('/')}/?" + urlencode({k: v for k, v in query.items() if v})


@lru_cache(maxsize=4)
def _machines(configs_dir: str) -> dict[str, tuple[str, str]]:
    from meshinsights.config import load_configs

    configs = load_configs(configs_dir)
    out: dict[str, tuple[str, str]] = {}
    for mid, m in sorted(configs.machines.items()):  # a group's DAG: its first member's view
        out.setdefault(m.dag_id, (mid, m.pipeline))
    return out


def dashboard_url_for_dag(
    dag_id: str, *, task_id: str | None = None, run_id: str | None = None
) -> str | None:
    """The machine view for a MeshInsights DAG id; None if the DAG is not a machine's."""
    from meshinsights.settings import get_settings

    found = _machines(str(get_settings().configs_dir)).get(dag_id)
    if found is None:
        return None
    machine_id, pipeline = found
    # The task is a step id, except the branch checks ("check_<step>") which point at the step.
    step = task_id.removeprefix("check_") if task_id else None
    return dashboard_url(machine_id, pipeline=pipeline, task_id=step, run_id=run_id)


def links_app() -> Any:
    """A tiny FastAPI app: ``GET /dag/{dag_id}?task_id=&run_id=`` redirects to the dashboard."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import RedirectResponse

    app = FastAPI(title="MeshInsights links", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/dag/{dag_id}")
    def to_dashboard(
        dag_id: str, task_id: str | None = None, run_id: str | None = None
    ) -> RedirectResponse:
        url = dashboard_url_for_dag(dag_id, task_id=task_id, run_id=run_id)
        if url is None:
            raise HTTPException(404, f"{dag_id!r} is not a MeshInsights machine DAG")
        return RedirectResponse(url, status_code=307)

    return app
