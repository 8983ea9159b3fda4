"""The local stack behind `make run` / `make stop`: login, pid files, clean stops, and the real
stack end to end (warm-up runs through Airflow, the dashboard in Chromium, a live DAG run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.devstack.airflow_api import AirflowAPI
from meshinsights.devstack.environment import airflow_env
from meshinsights.devstack.local_stack import PASSWORDS_FILE, ensure_password
from meshinsights.devstack.processes import Component, spawn, stop_all
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests import chromium
from tests.conftest import REPO
from tests.integration.cluster import free_port

#: The dashboard as `make run` opens it (README quickstart), taken by the end-to-end test.
SCREENSHOT = REPO / "docs" / "make-run-dashboard.png"


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


def _live_configs(root: Path) -> Path:
    """configs/live, plus a paused minimal unit on a 3-minute schedule (the test's "unpause");
    its averages per minute, as an hourly bucket would not fit in a 3-minute window."""
    shutil.copytree(REPO / "configs" / "live", root, symlinks=False)
    (root / "machines" / "hvac-002.yaml").write_text(
        'machine_id: hvac-002\npipeline: minimal\nschedule: "*/3 * * * *"\ntags: [itest]\n'
        "overrides:\n  average_temperature: {freq: 1min}\n")
    return root


def _wait_for(what: str, check, timeout: float, every: float = 3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"no {what} after {timeout:.0f}s")


def _points(browser) -> list[int]:
    """Data points per trace of every plotly chart on the page (from the chart's own data)."""
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap("
        "p => (p.data || []).map(t => (t.x || []).length));")


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(1500)
def test_make_run_opens_on_data_that_came_through_airflow(tmp_path: Path):
    """The real `make run` stack: warm-up runs through Airflow, a chart with points in
    Chromium, an unpaused DAG ingesting what the feeder wrote after start-up, a clean stop."""
    chromium.require()
    home = tmp_path / "airflow"
    env = {**os.environ, "AIRFLOW_HOME": str(home),
           "MESHINSIGHTS_CONFIGS": str(_live_configs(tmp_path / "configs")),
           "MESHINSIGHTS_STORE": str(tmp_path / "data" / "artifacts"),
           "MESHINSIGHTS_FEED_INTERVAL": "15", "AIRFLOW__API__WORKERS": "1"}
    # The demo source follows the store (tmp/data/demo_source.db): nothing in the checkout.
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER",
                "MESHINSIGHTS_DEMO_SOURCE", "AIRFLOW_CONN_MESHINSIGHTS_DEMO"):
        env.pop(key, None)
    port, dash, data_api = free_port(), free_port(), free_port()
    env["DATA_API_PORT"] = str(data_api)
    env.pop("MESHINSIGHTS_API_KEYS", None)
    cmd = [sys.executable, "-m", "meshinsights.cli", "stack"]
    started_at = datetime.now(UTC)
    proc = subprocess.Popen([*cmd, "run", "--api-port", str(port), "--dashboard-port", str(dash)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = _read_until(proc, r"Stop with Ctrl-C", timeout=1000)
        print(out)
        seconds = int(re.search(r"MeshInsights is up \((\d+)s\)", out).group(1))
        print(f"make run reached its URLs in {seconds}s")
        password = re.search(r"login: admin / (\S+)", out).group(1)
        assert password == json.loads((home / PASSWORDS_FILE).read_text())["admin"]
        api = AirflowAPI(f"http://127.0.0.1:{port}", "admin", password)
        assert api.token()

        # The warm-up: a successful manual run of the last day that ingested rows.
        [warm] = [r for r in api.runs("minimal__hvac-001")
                  if r["dag_run_id"].startswith("warmup__")]
        assert warm["state"] == "success" and warm["run_type"] == "manual"
        window = (warm["conf"]["start"], warm["conf"]["end"])
        warm_rows = api.result("minimal__hvac-001", warm["dag_run_id"], "ingest")["rows_out"]
        assert warm_rows > 0 and f"minimal__hvac-001: success, {warm_rows:,} telemetry rows" in out

        # The data API, with the key made for this run: the warm-up machine is listed.
        import httpx

        key = re.search(r"key \(header X-API-Key\): (\S+)", out).group(1)
        listed = httpx.get(f"http://127.0.0.1:{data_api}/v1/machines",
                           headers={"X-API-Key": key}, timeout=30)
        assert listed.status_code == 200, listed.text
        assert "hvac-001" in listed.text
        assert httpx.get(f"http://127.0.0.1:{data_api}/v1/machines", timeout=30).status_code == 401

        # The dashboard, right after start-up, in headless Chromium: a chart with points.
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        with chromium.chromium(size="1400,1800") as browser:
            browser.get(f"http://127.0.0.1:{dash}/?pipeline=minimal&machine=hvac-001")
            wait = WebDriverWait(browser, 180)
            wait.until(ec.presence_of_element_located(
                (By.CSS_SELECTOR, ".js-plotly-plot .main-svg")))
            wait.until(lambda d: sum(_points(d)) > 0)
            analysis = wait.until(ec.presence_of_element_located(
                (By.CSS_SELECTOR, ".st-key-analysis")))
            wait.until(lambda d: "severity" in analysis.text)
            time.sleep(2)  # let plotly finish drawing before the screenshot
            points = _points(browser)
            assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
            shot = SCREENSHOT
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
        print(f"plotted points per trace: {points}; screenshot {shot}")

        # A newcomer unpauses a paused DAG: its next scheduled run ingests rows the feeder
        # appended after start-up (the seed held only rows that had arrived by then).
        dag_id = "minimal__hvac-002"
        assert api.runs(dag_id) == []
        api.unpause(dag_id)

        def live_run():
            for r in api.runs(dag_id):
                assert r["state"] != "failed", r
                begun = datetime.fromisoformat(r["data_interval_start"])
                if r["run_type"] == "scheduled" and r["state"] == "success" and (
                        begun >= started_at):
                    return r
            return None

        run = _wait_for("scheduled run after start-up", live_run, timeout=600)
        live_rows = api.result(dag_id, run["dag_run_id"], "ingest")["rows_out"]
        assert live_rows > 0
        print(f"{dag_id} {run['data_interval_start']} → {run['data_interval_end']}: "
              f"{live_rows} rows")
        assert "fed " in (home / "run" / "feeder.log").read_text()

        pids = {p.stem: int(p.read_text()) for p in (home / "run").glob("*.pid")}
        assert {"stack", "airflow", "dashboard", "feeder", "data-api"} <= set(pids)
        stop = subprocess.run([*cmd, "stop"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert proc.wait(timeout=60) == 0
        assert not [p for p in pids.values() if _alive(p)]
        assert list((home / "run").glob("*.pid")) == []
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    # What the runs wrote, read after the stack is down: the Airflow counts are the table's.
    store = DeltaStore(env["MESHINSIGHTS_STORE"])
    w = Window.parse(*window)
    assert len(store.read("minimal", "telemetry", "hvac-001", w)) == warm_rows
    assert len(store.read("minimal", "genai_analysis", "hvac-001", w)) >= 1
    live = Window.parse(run["data_interval_start"], run["data_interval_end"])
    fed = store.read("minimal", "telemetry", "hvac-002", live)
    # (a minute that arrived after the run is a late row: a later run may have added it)
    assert len(fed) >= live_rows and fed["ingested_at"].min() > pd.Timestamp(started_at)
    assert (tmp_path / "data" / "demo_source.db").exists()
