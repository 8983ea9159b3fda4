"""The local stack behind `make run` / `make stop`: login, pid files, clean stops."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from meshinsights.orchestration.local_stack import PASSWORDS_FILE, airflow_env, ensure_password
from meshinsights.orchestration.processes import Component, spawn, stop_all
from tests.integration.cluster import free_port
from tests.integration.conftest import write_configs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_the_generated_password_is_random_private_and_stable(tmp_path: Path):
    first = ensure_password(tmp_path)
    assert re.fullmatch(r"[a-zA-Z2-9]{16}", first) and first != "admin"
    assert ensure_password(tmp_path) == first
    path = tmp_path / PASSWORDS_FILE
    assert json.loads(path.read_text()) == {"admin": first}
    assert path.stat().st_mode & 0o777 == 0o600
    other = ensure_password(tmp_path / "other")
    assert other != first


def test_airflow_env_points_every_component_at_the_project(tmp_path: Path):
    env = airflow_env(tmp_path, api_port=18123, dashboard_url="http://localhost:9")
    assert env["AIRFLOW_HOME"] == str(tmp_path)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"].endswith("plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://localhost:18123/execution/"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["MESHINSIGHTS_DASHBOARD_URL"] == "http://localhost:9"


def test_stop_all_ends_whole_process_groups_and_forgets_stale_pids(tmp_path: Path):
    # A leader that ignores SIGINT and has a child: stop escalates and takes the child too.
    script = f"trap '' INT; sleep 300 & echo $! > {tmp_path / 'child.pid'}; wait"
    proc = spawn(Component("stubborn", ["bash", "-c", script]), os.environ, tmp_path)
    deadline = time.monotonic() + 10
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int((tmp_path / "child.pid").read_text())
    (tmp_path / "ghost.pid").write_text("999999999\n")
    (tmp_path / "garbage.pid").write_text("not a pid\n")
    (tmp_path / "stack.pid").write_text(f"{os.getpid()}\n")  # the supervisor: never itself
    stopped = stop_all(tmp_path, timeout=1)
    assert stopped == ["stubborn"]
    proc.wait(timeout=10)
    assert not _alive(child)
    assert [p.name for p in tmp_path.glob("*.pid")] == ["stack.pid"]


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            if re.search(pattern, line):
                return "".join(seen)
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout}s:\n{''.join(seen)}")


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_run_prints_a_working_login_and_make_stop_ends_everything(tmp_path: Path):
    home = tmp_path / "airflow"
    env = {**os.environ, "AIRFLOW_HOME": str(home),
           "MESHINSIGHTS_CONFIGS": str(write_configs(tmp_path / "configs")),
           "MESHINSIGHTS_STORE": str(tmp_path / "artifacts"),
           "MESHINSIGHTS_DEMO_SOURCE": str(tmp_path / "demo.db"),
           "AIRFLOW__API__WORKERS": "1"}
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER"):
        env.pop(key, None)
    port, dash = free_port(), free_port()
    cmd = [sys.executable, "-m", "meshinsights.orchestration.local_stack"]
    started = time.monotonic()
    proc = subprocess.Popen([*cmd, "run", "--api-port", str(port), "--dashboard-port", str(dash)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = _read_until(proc, r"Stop with Ctrl-C", timeout=400)
        print(f"make run ready in {time.monotonic() - started:.0f}s")
        password = re.search(r"login: admin / (\S+)", out).group(1)
        assert password == json.loads((home / PASSWORDS_FILE).read_text())["admin"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/auth/token", method="POST",
                                     data=json.dumps({"username": "admin",
                                                      "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201 and json.loads(resp.read())["access_token"]
        if "Dashboard  :" in out:
            with urllib.request.urlopen(f"http://127.0.0.1:{dash}/_stcore/health", timeout=30) as r:
                assert r.status == 200
        pids = [int(p.read_text()) for p in (home / "run").glob("*.pid")]
        assert len(pids) >= 2  # the supervisor and airflow standalone (+ the dashboard)

        stop = subprocess.run([*cmd, "stop"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert proc.wait(timeout=60) == 0
        assert not [p for p in pids if _alive(p)]
        assert list((home / "run").glob("*.pid")) == []
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
