"""Local object stores for tests: moto's S3 server and Azurite (npm), on loopback ports.

Started as subprocesses with pid files and stopped by pid. Azurite is installed with npm into
``tools/azurite`` (gitignored) on first use; without npm the Azure tests skip, unless CI is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meshinsights.devstack.processes import Component, spawn, stop_all, wait_http
from tests.conftest import REPO
from tests.integration.cluster import free_port

AZURITE_VERSION = "3.37.0"
AZURITE_DIR = REPO / "tools" / "azurite"
#: Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI requires it")
    pytest.skip(reason)


@contextmanager
def moto_s3(run_dir: Path, bucket: str) -> Iterator[dict[str, str]]:
    """moto's S3 server with ``bucket``; yields the AWS_* settings that reach it."""
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        _missing("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    spawn(Component("moto", [str(moto), "-H", "127.0.0.1", "-p", str(port)]), os.environ,
          run_dir)
    try:
        if not wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60):
            raise AssertionError(f"moto_server did not start: {(run_dir / 'moto.log').read_text()}")
        settings = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        import boto3

        boto3.client("s3", endpoint_url=settings["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=bucket)
        yield settings
    finally:
        stop_all(run_dir, timeout=10)


def azurite_binary() -> Path:
    """Azurite's blob server, installed from npm into tools/azurite if it is not there yet."""
    binary = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        _missing("npm not found: Azurite (the Azure Storage emulator) comes from npm")
    AZURITE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(AZURITE_DIR),
                    f"azurite@{AZURITE_VERSION}"], check=True, capture_output=True, timeout=600)
    return binary


@contextmanager
def azurite(run_dir: Path, container: str) -> Iterator[dict[str, str]]:
    """Azurite's blob service with ``container``; yields deltalake storage options for it."""
    binary = azurite_binary()
    port = free_port()
    data = run_dir / "azurite-data"
    data.mkdir(parents=True, exist_ok=True)
    spawn(Component("azurite", [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                "--location", str(data), "--skipApiVersionCheck", "--loose",
                                "--silent"]), os.environ, run_dir)
    try:
        import socket
        import time

        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                log = (run_dir / "azurite.log").read_text()
                raise AssertionError(f"azurite did not start: {log}")
            time.sleep(0.3)
        from pyarrow.fs import AzureFileSystem

        AzureFileSystem(account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY,
                        blob_storage_authority=f"127.0.0.1:{port}", blob_storage_scheme="http",
                        dfs_storage_authority=f"127.0.0.1:{port}", dfs_storage_scheme="http",
                        ).create_dir(container)
        yield {
            "azure_storage_account_name": AZURITE_ACCOUNT,
            "azure_storage_account_key": AZURITE_KEY,
            "azure_endpoint": f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
            "allow_http": "true",
        }
    finally:
        stop_all(run_dir, timeout=10)
