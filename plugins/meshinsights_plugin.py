"""The MeshInsights Airflow plugin: dashboard links on DAG/task pages and the runs listener.

Loaded by every Airflow component (scheduler included), so it imports nothing heavy: the
listener writes the ``<pipeline>/runs`` table only inside task processes.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from meshinsights.airflow import listener
from meshinsights.airflow.links import PREFIX, links_app


class MeshInsightsPlugin(AirflowPlugin):
    """Dashboard tabs on every machine DAG, task and task instance; task outcomes in runs."""

    name = "meshinsights"
    listeners = [listener]
    fastapi_apps = [{"app": links_app(), "url_prefix": PREFIX, "name": "MeshInsights links"}]
    # Airflow fills {DAG_ID}/{TASK_ID}/{RUN_ID}; a url_route embeds the view as a tab.
    external_views = [
        {"name": "Dashboard", "href": f"{PREFIX}/dag/{{DAG_ID}}", "destination": "dag",
         "url_route": "meshinsights-dag"},
        {"name": "Dashboard", "href": f"{PREFIX}/dag/{{DAG_ID}}?task_id={{TASK_ID}}",
         "destination": "task", "url_route": "meshinsights-task"},
        {"name": "Dashboard",
         "href": f"{PREFIX}/dag/{{DAG_ID}}?task_id={{TASK_ID}}&run_id={{RUN_ID}}",
         "destination": "task_instance", "url_route": "meshinsights-task-instance"},
    ]
