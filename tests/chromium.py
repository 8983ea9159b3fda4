"""Headless Debian Chromium for the browser tests: where it is, how to get it, a driver.

Without ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` the browser tests skip (or fail
when CI is set), and the session's summary ends by naming the one command that enables them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ENABLE = "sudo apt-get install -y chromium chromium-driver"
SKIP_REASON = f"Chromium is not installed ({ENABLE})"


def available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def require() -> None:
    """Skip the test (fail it in CI) when Chromium or its driver is missing."""
    if available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: {ENABLE}")
    pytest.skip(SKIP_REASON)


@contextmanager
def chromium(*, size: str = "1400,2200") -> Iterator[object]:
    """A headless Chromium through chromedriver with a fresh profile, quit afterwards."""
    require()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"mi-chromium-{os.getpid()}-{time.time_ns()}"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={size}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
