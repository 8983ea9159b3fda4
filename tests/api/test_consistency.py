"""Pages stay consistent while a pipeline commits, and the key sources and the CLI work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from meshinsights.api.keys import KEYS_ENV, KeyRing, load_keys
from meshinsights.errors import ConfigError
from meshinsights.model import TELEMETRY_SCHEMA, Window
from meshinsights.store import DeltaStore
from tests.api.conftest import serve

DAY1 = {"start": "2024-01-01", "end": "2024-01-02"}


def test_pages_read_the_version_the_first_page_read(minimal_store: Path, tmp_path: Path) -> None:
    """A commit between pages changes neither the remaining pages nor their count."""
    root = tmp_path / "artifacts"
    shutil.copytree(minimal_store, root)
    store = DeltaStore(str(root))
    window = Window.parse(**DAY1)
    expected = store.read("minimal", "telemetry", "hvac-001", window)
    with serve(root) as api:
        path, params = "/v1/machines/hvac-001/telemetry", {**DAY1, "limit": 2000}
        first = api.client.get(path, params=params).json()
        pinned = first["version"]
        # A rerun of the window commits other values (and fewer rows) in between.
        changed = expected.iloc[::2].assign(value=lambda d: d["value"] + 1000.0)
        store.overwrite(
            "minimal",
            "telemetry",
            changed,
            machine_ids="hvac-001",
            window=window,
            schema=TELEMETRY_SCHEMA,
        )
        assert store.version("minimal", "telemetry") == pinned + 1
        rows, token = list(first["rows"]), first["next_page_token"]
        while token:
            page = api.client.get(path, params={**params, "page_token": token}).json()
            assert page["version"] == pinned
            rows += page["rows"]
            token = page["next_page_token"]
        result = pd.DataFrame(rows)
        assert len(result) == len(expected)
        assert result["value"].tolist() == expected.sort_values(["ts", "metric"])["value"].tolist()
        fresh = api.client.get(path, params=params).json()
        assert fresh["version"] == pinned + 1
        assert fresh["rows"][0]["value"] == pytest.approx(
            changed.sort_values(["ts", "metric"])["value"].iloc[0]
        )


def test_key_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (KEYS_ENV, "AIRFLOW_CONN_MESHINSIGHTS_API"):
        monkeypatch.delenv(var, raising=False)
    a, b = "a" * 20, "b" * 24
    monkeypatch.setenv(KEYS_ENV, f" {a} ,{b},")
    ring = load_keys()
    assert len(ring) == 2 and ring.accepts(a) and ring.accepts(b) and not ring.accepts(a[:-1])
    monkeypatch.delenv(KEYS_ENV)
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_API", f"http://api:{a}%2C{b}@localhost")
    assert load_keys().accepts(b)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MESHINSIGHTS_API", f'{{"conn_type": "http", "password": "{a}"}}'
    )
    assert load_keys().accepts(a) and not load_keys().accepts(b)
    monkeypatch.delenv("AIRFLOW_CONN_MESHINSIGHTS_API")
    with pytest.raises(ConfigError, match="no API key configured: set MESHINSIGHTS_API_KEYS"):
        load_keys()
    with pytest.raises(ConfigError, match="API key #2 is shorter than 16"):
        KeyRing([a, "short"])


def test_serve_command(minimal_store: Path, tmp_path: Path) -> None:
    """``meshinsights serve --generate-key`` in a spawned process: the printed key works."""
    env = {
        k: v for k, v in os.environ.items() if k not in (KEYS_ENV, "AIRFLOW_CONN_MESHINSIGHTS_API")
    }
    env["COLUMNS"] = "400"
    refused = subprocess.run(
        [sys.executable, "-m", "meshinsights.cli", "--store", str(minimal_store), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1 and "no API key configured" in refused.stderr
    assert "Traceback" not in refused.stderr
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshinsights.cli",
                "--store",
                str(minimal_store),
                "serve",
                "--port",
                str(port),
                "--generate-key",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        key = re.search(r"generated API key \(this process only\): (\S+)", log.read_text())
        assert key, log.read_text()
        resp = httpx.get(url + "/v1/machines", headers={"X-API-Key": key.group(1)}, timeout=30)
        assert resp.status_code == 200
        assert {m["machine_id"] for m in resp.json()["machines"]} == {"hvac-001", "hvac-006"}
        assert httpx.get(url + "/v1/machines", timeout=30).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_api_package_has_no_write_path() -> None:
    """The API reaches the store only through ReadOnlyStore; no module calls a write."""
    import inspect
    import pkgutil

    import meshinsights.api as api

    for info in pkgutil.iter_modules(api.__path__):
        source = inspect.getsource(__import__(f"meshinsights.api.{info.name}", fromlist=["_"]))
        for forbidden in (
            "overwrite(",
            "read_all(",
            ".dataset(",
            "vacuum(",
            "compact(",
            ".delete(",
            "DeltaStore(",
            "write_deltalake",
            "import deltalake",
        ):
            assert forbidden not in source, (info.name, forbidden)
