"""The local stack behind ``make run`` / ``make stop``: Airflow standalone, the dashboard and
the live demo source's feeder, opened on data (see ``live_demo.py``).

Every process is started in its own session with a pid file under ``$AIRFLOW_HOME/run/``, so
Ctrl-C in the ``make run`` terminal or ``make stop`` from another shell stops exactly the
processes this stack started (by process group id, never by name; ``processes.py``, which
also starts the separate Airflow components for the integration tests).
``meshinsights stack run|stop|demo`` (:mod:`meshinsights.cli.stack`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshinsights.devstack.airflow_api import AirflowAPI
from meshinsights.devstack.environment import _say, airflow_env, airflow_home, run_dir
from meshinsights.devstack.live_demo import (
    BACKGROUND_MACHINES,
    FEED_INTERVAL,
    WARM_MACHINES,
    WarmRun,
    dag_ids_of,
    feeder_component,
    live_demo,
    start_runs,
    warm_up,
    warm_window,
)
from meshinsights.devstack.processes import (
    Component,
    alive,
    spawn,
    stop_all,
    tail,
    wait_http,
)
from meshinsights.errors import MeshInsightsError
from meshinsights.settings import PROJECT_ROOT, get_settings

__all__ = ["ensure_password", "run_stack", "stop_stack"]

logger = logging.getLogger(__name__)

#: Name of SimpleAuthManager's generated-passwords file inside AIRFLOW_HOME (Airflow 3.3).
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
# SimpleAuthManager's own alphabet (no look-alike characters).
_ALPHABET = "abcdefghkmnpqrstuvwxyzABCDEFGHKMNPQRSTUVWXYZ23456789"


def ensure_password(home: Path, user: str = "admin") -> str:
    """The user's SimpleAuthManager password, generated (random, 16 chars) on first use.

    Airflow reads the same JSON file, so the login printed here is the one the UI accepts.
    """
    path = home / PASSWORDS_FILE
    home.mkdir(parents=True, exist_ok=True)
    passwords: dict[str, str] = {}
    if path.exists() and path.read_text().strip():
        passwords = json.loads(path.read_text())
    if user not in passwords:
        passwords[user] = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        path.write_text(json.dumps(passwords) + "\n")
        path.chmod(0o600)
    return passwords[user]


def _interrupt(signum: int, frame: object) -> None:
    # `make stop` sends SIGTERM: unwind through the same cleanup as Ctrl-C.
    raise KeyboardInterrupt


def _has_dashboard() -> bool:
    return importlib.util.find_spec("meshinsights.cli.dashboard") is not None


def _seed_live(env: Mapping[str, str], now: datetime) -> Any:
    """Write the live demo source up to ``now``; returns its timeline (for the feeder)."""
    from meshinsights.credentials import demo_source_url
    from meshinsights.demo_feed import seed_live

    demo = live_demo(demo_source_url(get_settings()), now)
    fleet = seed_live(demo, now)
    _say(
        f"seeded the live demo source: {fleet.rows:,} rows for {len(fleet.machines)} units "
        f"from {demo.start:%Y-%m-%d %H:%M} to now ({fleet.seconds:.1f}s); a feeder adds "
        "what arrives as time passes"
    )
    return demo


def _start(
    env: Mapping[str, str], directory: Path, dashboard_port: int, feeder: Component
) -> dict[str, subprocess.Popen[bytes]]:
    procs = {"airflow": spawn(Component("airflow", ["airflow", "standalone"]), env, directory)}
    procs["feeder"] = spawn(feeder, env, directory)
    if _has_dashboard():
        exe = str(Path(sys.executable).parent / "meshinsights")
        argv = [exe, "dashboard", "--port", str(dashboard_port)]
        procs["dashboard"] = spawn(Component("dashboard", argv), env, directory)
    else:
        _say("(the dashboard command is not available in this build; starting Airflow only)")
    if env.get("MESHINSIGHTS_API_KEYS"):
        exe = str(Path(sys.executable).parent / "meshinsights")
        argv = [exe, "serve", "--port", env["MESHINSIGHTS_DATA_API_PORT"]]
        procs["data-api"] = spawn(Component("data-api", argv), env, directory)
    return procs


def _ready(
    procs: dict[str, subprocess.Popen[bytes]],
    directory: Path,
    api_port: int,
    dashboard_port: int,
    timeout: float,
) -> bool:
    """Wait for Airflow's API (a first start migrates the DB: minutes on a busy machine)."""
    url = f"http://127.0.0.1:{api_port}/api/v2/monitor/health"
    if not wait_http(url, timeout=timeout, procs=list(procs.values())):
        dead = [n for n, p in procs.items() if p.poll() is not None]
        why = f"{', '.join(dead)} exited" if dead else f"no answer on {url} after {timeout:.0f}s"
        _say(
            f"Airflow did not come up ({why}); last lines of its log:\n"
            + tail(directory / "airflow.log")
        )
        return False
    health = f"http://127.0.0.1:{dashboard_port}/_stcore/health"
    if "dashboard" in procs and not wait_http(health, timeout=120, procs=[procs["dashboard"]]):
        _say(f"the dashboard did not come up:\n{tail(directory / 'dashboard.log')}")
    return True


def run_stack(*, api_port: int, dashboard_port: int, timeout: float = 600.0) -> int:
    """Seed, start Airflow standalone and the dashboard, print URLs and login, wait for Ctrl-C."""
    home = airflow_home()
    directory = run_dir(home)
    if (directory / "stack.pid").exists() and alive(int((directory / "stack.pid").read_text())):
        _say("the stack is already running; stop it with `make stop`")
        return 1
    stop_all(directory)  # leftovers of a run that was killed hard
    started = time.monotonic()
    # The live demo's configs (hourly, over a source that ends at now) unless told otherwise.
    os.environ.setdefault("MESHINSIGHTS_CONFIGS", str(PROJECT_ROOT / "configs" / "live"))
    dashboard_url = f"http://localhost:{dashboard_port}"
    env = airflow_env(home, api_port=api_port, dashboard_url=dashboard_url)
    now = datetime.now(UTC)
    demo = _seed_live(env, now)
    password = ensure_password(home)
    # The data API gets a key made for this run (env only, printed once in the banner).
    data_api_port = os.environ.get("DATA_API_PORT", "8000")
    env = {
        **env,
        "MESHINSIGHTS_API_KEYS": os.environ.get("MESHINSIGHTS_API_KEYS")
        or secrets.token_urlsafe(24),
        "MESHINSIGHTS_DATA_API_PORT": data_api_port,
    }
    (directory / "stack.pid").write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        interval = float(os.environ.get("MESHINSIGHTS_FEED_INTERVAL") or FEED_INTERVAL)
        procs = _start(
            env, directory, dashboard_port, feeder_component(demo, now, interval=interval)
        )
        _say(f"starting Airflow on port {api_port} (logs: {directory}/*.log) …")
        if not _ready(procs, directory, api_port, dashboard_port, timeout):
            return 1
        warm = _warm_up(api_port, password, env, now, timeout=timeout)
        data_api = f"http://localhost:{data_api_port}"
        if not wait_http(
            f"http://127.0.0.1:{data_api_port}/health", timeout=60, procs=[procs["data-api"]]
        ):
            _say(f"the data API did not come up:\n{tail(directory / 'data-api.log')}")
            data_api = ""
        _banner(
            api_port,
            dashboard_url if "dashboard" in procs else None,
            password,
            home,
            time.monotonic() - started,
            warm,
            data_api=data_api,
            data_api_key=env["MESHINSIGHTS_API_KEYS"].split(",")[0],
        )
        # The feeder ends with its timeline (days from now): the stack stays up without it.
        watched = {n: p for n, p in procs.items() if n != "feeder"}
        while all(p.poll() is None for p in watched.values()):
            time.sleep(1)
        dead = [n for n, p in watched.items() if p.poll() is not None]
        _say(f"{', '.join(dead)} exited; stopping the stack")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not abandon the cleanup half way (it is bounded anyway).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _say("stopping …")
        stop_all(directory)
        (directory / "stack.pid").unlink(missing_ok=True)
        _say("stopped")


def _warm_up(
    api_port: int, password: str, env: Mapping[str, str], now: datetime, *, timeout: float
) -> list[WarmRun]:
    """The warm machines' last day through Airflow (REST API), printed as each run ends; then
    the background machines' last day is triggered (not waited for)."""
    configs = env["MESHINSIGHTS_CONFIGS"]
    dag_ids = dag_ids_of(configs, WARM_MACHINES)
    later = dag_ids_of(configs, BACKGROUND_MACHINES)
    window = warm_window(now)
    api = AirflowAPI(f"http://127.0.0.1:{api_port}", "admin", password)

    def done(run: WarmRun) -> None:
        rows = f", {run.telemetry_rows:,} telemetry rows" if run.telemetry_rows is not None else ""
        _say(f"  {run.dag_id}: {run.state}{rows} ({run.seconds:.0f}s)")

    try:
        runs: list[WarmRun] = []
        if dag_ids:
            _say(
                f"running {', '.join(dag_ids)} through Airflow for the last day "
                f"[{window[0]:%Y-%m-%d %H:%M}, {window[1]:%Y-%m-%d %H:%M}) UTC …"
            )
            runs = warm_up(api, dag_ids, window, timeout=timeout, on_done=done)
        if later:
            start_runs(api, later, window, timeout=60)
            _say(f"  started the same window for {', '.join(later)} (see its grid)")
        return runs
    except MeshInsightsError as exc:  # the stack still comes up; say what did not happen
        _say(f"the warm-up runs could not be started: {exc}")
        return []


def _banner(
    api_port: int,
    dashboard_url: str | None,
    password: str,
    home: Path,
    seconds: float,
    warm: list[WarmRun],
    *,
    data_api: str = "",
    data_api_key: str = "",
) -> None:
    lines = [
        "",
        f"MeshInsights is up ({seconds:.0f}s)",
        f"  Airflow UI : http://localhost:{api_port}   login: admin / {password}",
        f"               (password stored in {home / PASSWORDS_FILE})",
    ]
    if dashboard_url:
        lines.append(f"  Dashboard  : {dashboard_url}")
    if data_api:
        lines.append(f"  Data API   : {data_api}/docs   key (header X-API-Key): {data_api_key}")
    ok = [r.dag_id for r in warm if r.state == "success"]
    failed = [f"{r.dag_id} ({r.state})" for r in warm if r.state != "success"]
    if ok:
        lines.append(f"  Ran the last day through Airflow: {', '.join(ok)} (now hourly)")
    if failed:
        lines.append(f"  Did not finish: {', '.join(failed)}; see {home / 'run'}/airflow.log")
    lines += [
        "  The source grows every minute (faults included). The other DAGs start paused:",
        "  unpause one in the UI and its next hourly run ingests what arrived; or run any window:",
        '    airflow dags trigger minimal__hvac-001 --conf \'{"start": "…", "end": "…"}\'',
        "  Stop with Ctrl-C here, or `make stop` from another shell.",
        "",
    ]
    _say("\n".join(lines))


def stop_stack() -> int:
    """Stop a running ``make run`` (its supervisor first, then any leftover component)."""
    directory = run_dir(airflow_home())
    stack = directory / "stack.pid"
    if stack.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            pid = int(stack.read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.3)
        stack.unlink(missing_ok=True)
    stopped = stop_all(directory)
    _say("stopped" + (f" leftover {', '.join(stopped)}" if stopped else ""))
    return 0
