"""What every component of the local stack shares: its AIRFLOW_HOME, its environment and its
console line (used by ``local_stack`` and ``airflow_demo`` alike)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from meshinsights.settings import PROJECT_ROOT, get_settings

__all__ = ["airflow_env", "airflow_home", "run_dir"]


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow").resolve()


def run_dir(home: Path) -> Path:
    path = home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def airflow_env(
    home: Path,
    *,
    api_port: int = 8080,
    dashboard_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment every component shares: one AIRFLOW_HOME, the repo's DAGs and plugins."""
    settings = get_settings()
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": env.get(
                "AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags")
            ),
            "AIRFLOW__CORE__PLUGINS_FOLDER": env.get(
                "AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins")
            ),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # LocalExecutor forks one worker per parallelism slot: a laptop needs a few, not 32.
            "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "4"),
            # SQLite metadata: wait for locks (CLI next to a busy scheduler) instead of failing.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": env.get(
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db?timeout=60"
            ),
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__HOST": env.get("AIRFLOW__API__HOST", "127.0.0.1"),
            # The task supervisor reaches the Execution API through this URL (default port 8080).
            "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
            "MESHINSIGHTS_CONFIGS": str(settings.configs_dir),
            "MESHINSIGHTS_STORE": settings.store_uri,
            "MESHINSIGHTS_DEMO_SOURCE": str(settings.demo_source),
            # `airflow standalone` runs `airflow ...` from PATH: make it this venv's.
            "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
        }
    )
    if dashboard_url:
        env["MESHINSIGHTS_DASHBOARD_URL"] = dashboard_url
    env.update(extra or {})
    return env
