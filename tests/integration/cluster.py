"""A real Airflow deployment for integration tests: separate components as subprocesses.

Private AIRFLOW_HOME, loopback ports, the repo's DAGs and plugins; started and stopped by pid
through :mod:`meshinsights.devstack.local_stack` (the code ``make run`` uses).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from meshinsights.devstack.environment import airflow_env
from meshinsights.devstack.local_stack import ensure_password
from meshinsights.devstack.processes import Component, spawn, stop_all, wait_http

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """Scheduler + api-server + dag-processor (+ optional Celery worker) on one AIRFLOW_HOME."""

    def __init__(self, home: Path, *, extra_env: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.run_dir = home / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        base = {
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
        self.env = airflow_env(home, api_port=self.port, extra={**base, **(extra_env or {})})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.password = ensure_password(home)
        self._token: str | None = None

    # ----------------------------------------------------------------- lifecycle
    def airflow(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        done = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self, *components: str | tuple[str, list[str]], timeout: float = 180) -> None:
        """Migrate the DB, then start each component: a command ("scheduler") or (name, args)."""
        self.airflow("db", "migrate", timeout=300)
        for item in components:
            name, args = (item, item.split()) if isinstance(item, str) else item
            self.procs[name] = spawn(Component(name.replace(" ", "-"), [AIRFLOW, *args]),
                                     self.env, self.run_dir)
        if not wait_http(f"{self.url}/api/v2/monitor/health", timeout=timeout,
                         procs=list(self.procs.values())):
            raise AssertionError(f"api-server did not come up:\n{self.logs()}")

    def stop(self) -> None:
        stop_all(self.run_dir, timeout=30)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return list(self.request("GET", path)["task_instances"])

    def logs(self, lines: int = 40) -> str:
        out = []
        for log in sorted(self.run_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)

    # ----------------------------------------------------------------- REST API
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        if self._token is None:
            body = self.request("POST", "/auth/token",
                                {"username": "admin", "password": self.password}, auth=False)
            self._token = body["access_token"]
        return self._token

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc

    def wait_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the dag-processor has serialized ``dag_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dags = self.request("GET", "/api/v2/dags?limit=100")["dags"]
            if any(d["dag_id"] == dag_id for d in dags):
                return
            time.sleep(2)
        raise AssertionError(f"{dag_id} never appeared:\n{self.logs()}")

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"])

    def wait_runs(self, dag_id: str, n: int, *, timeout: float = 300,
                  run_type: str | None = None) -> list[dict[str, Any]]:
        """Until ``n`` runs (of ``run_type``) have finished; fails fast on a failed run."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = [r for r in self.dag_runs(dag_id)
                    if run_type is None or r["run_type"] == run_type]
            if any(r["state"] == "failed" for r in runs):
                raise AssertionError(f"a run of {dag_id} failed: {runs}\n{self.logs()}")
            done = [r for r in runs if r["state"] == "success"]
            if len(done) >= n:
                return done
            time.sleep(2)
        raise AssertionError(f"{dag_id}: {runs} after {timeout}s\n{self.logs()}")

    def wait_backfills(self, dag_id: str, *, timeout: float = 600) -> list[dict[str, Any]]:
        """Until every backfill of ``dag_id`` has completed; returns its successful runs."""
        deadline = time.monotonic() + timeout
        backfills: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            backfills = list(self.request("GET", f"/api/v2/backfills?dag_id={dag_id}")["backfills"])
            runs = [r for r in self.dag_runs(dag_id) if r["run_type"] == "backfill"]
            if any(r["state"] == "failed" for r in runs):
                raise AssertionError(f"a backfill run of {dag_id} failed: {runs}\n{self.logs()}")
            if backfills and all(b["completed_at"] for b in backfills):
                assert all(r["state"] == "success" for r in runs), runs
                return runs
            time.sleep(2)
        raise AssertionError(f"{dag_id}: backfills {backfills} after {timeout}s\n{self.logs()}")

