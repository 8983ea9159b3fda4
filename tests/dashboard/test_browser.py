"""End to end: the dashboard served on loopback, opened in headless Chromium (Debian's).

Needs ``apt-get install -y chromium chromium-driver`` (``tests/chromium.py``); skipped with a
reason when they are absent and CI is not set (in CI the test fails instead), and the session's
summary then names the command. A screenshot lands in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshinsights.cli.dashboard import APP_PATH, streamlit_command
from tests.chromium import chromium
from tests.conftest import REPO

ARTIFACTS = REPO / "test-artifacts"

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/_stcore/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no healthy server on port {port} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the server and anything it started (it runs in its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    deadline = time.monotonic() + 20
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    assert not _group_alive(proc.pid), "the server left processes behind"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def server(minimal_store: Path) -> Iterator[int]:
    """``streamlit run`` of the app on 127.0.0.1:<free port> over the minimal store."""
    port = _free_port()
    env = {**os.environ, "MESHINSIGHTS_STORE": str(minimal_store)}
    proc = subprocess.Popen(
        streamlit_command(port=port, address="127.0.0.1"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_healthy(port, proc)
        yield port
    finally:
        _stop(proc)


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Debian Chromium through chromedriver, with a fresh profile."""
    with chromium() as driver:
        yield driver


def test_dashboard_in_chromium_shows_chart_and_analysis(server: int, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.perf_counter()
    browser.get(f"http://127.0.0.1:{server}/?machine=hvac-006")
    wait = WebDriverWait(browser, 120)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot .main-svg")))
    analysis = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".st-key-analysis")))
    wait.until(lambda d: "severity" in analysis.text)
    loaded = time.perf_counter() - started
    time.sleep(1.5)  # let plotly finish drawing before the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    # The telemetry chart drew its traces (WebGL lines), with one legend entry per metric.
    legend = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .legendtext")}
    assert {"humidity", "power_kw", "temperature"} <= legend
    assert "GenAI analysis" in analysis.text and "offline analyst" in analysis.text
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    assert "hvac-006" in [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h1")]
    print(f"dashboard loaded in Chromium in {loaded:.1f}s; screenshot {shot}")


def test_dashboard_command_serves_the_app(minimal_store: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MESHINSIGHTS_STORE": str(minimal_store)}
    cmd = [
        sys.executable,
        "-c",
        "from meshinsights.cli import main; main()",
        "dashboard",
        "--port",
        str(port),
        "--address",
        "127.0.0.1",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_healthy(port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200 and b'<div id="root">' in resp.read()
    finally:
        _stop(proc)
    assert APP_PATH.is_file()
