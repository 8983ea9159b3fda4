"""Shared fixtures. Airflow gets a private AIRFLOW_HOME per test session (set before any import)."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_AF_HOME = Path(tempfile.mkdtemp(prefix="meshinsights-airflow-"))
# Each process that imports this file made its own folder: it removes only that one on exit.
atexit.register(shutil.rmtree, _AF_HOME, ignore_errors=True)
os.environ.setdefault("AIRFLOW_HOME", str(_AF_HOME))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("MESHINSIGHTS_STORE", str(_AF_HOME / "artifacts"))
os.environ.setdefault("MESHINSIGHTS_DEMO_SOURCE", str(_AF_HOME / "demo_source.db"))
# The alert-threshold sink's default SQLite file (connection meshinsights_alerts unset).
os.environ.setdefault("MESHINSIGHTS_ALERTS_DB", str(_AF_HOME / "alerts.db"))
# Tests never reach a real LLM provider: without a key the GenAI step uses its offline analyst.
for _var in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AIRFLOW_CONN_MESHINSIGHTS_GENAI"):
    os.environ.pop(_var, None)
# Nor does a developer's .env (keys, connections) reach the tests: tests that read one set
# MESHINSIGHTS_ENV_FILE themselves.
os.environ.setdefault("MESHINSIGHTS_ENV_FILE", str(_AF_HOME / "no-such.env"))

from meshinsights.model import Window  # noqa: E402
from meshinsights.store import DeltaStore  # noqa: E402

CONFIGS = REPO / "configs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def store(tmp_path: Path) -> DeltaStore:
    """An empty artifact store in a fresh temporary folder."""
    return DeltaStore(str(tmp_path / "artifacts"))


@pytest.fixture
def day() -> Window:
    """The first demo day, 2024-01-01 UTC."""
    return Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded demo SQLite source (3 machines × 3 days) shared by the session."""
    from meshinsights.demo import seed

    path = tmp_path_factory.mktemp("demo") / "demo_source.db"
    seed(f"sqlite:///{path}", machines=3, days=3, seed=7)
    return path


@pytest.fixture
def demo_env(demo_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing configs at the repo, the demo connection at demo_db, a fresh store."""
    env = {
        "MESHINSIGHTS_CONFIGS": str(CONFIGS),
        "MESHINSIGHTS_STORE": str(tmp_path / "artifacts"),
        "AIRFLOW_CONN_MESHINSIGHTS_DEMO": f"sqlite:///{demo_db}",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) in the session's private AIRFLOW_HOME."""
    home = Path(os.environ["AIRFLOW_HOME"])
    if not (home / "airflow.db").exists():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                       capture_output=True, env=os.environ.copy())
    return home


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """End a session that skipped browser tests for want of Chromium by saying so plainly."""
    from tests.chromium import ENABLE, SKIP_REASON

    skipped = [
        r for r in terminalreporter.stats.get("skipped", [])
        if SKIP_REASON in str(getattr(r, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_sep("=", "browser tests skipped", yellow=True, bold=True)
        terminalreporter.write_line(
            f"{len(skipped)} browser test(s) did not run: Chromium is not installed. "
            f"Enable them with:  {ENABLE}"
        )
