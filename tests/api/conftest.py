"""A real data API server on loopback over a store seeded by running real pipelines."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from meshinsights.api import KeyRing, Limits, create_app
from meshinsights.store import DeltaStore
from tests.dashboard.conftest import fleet_db, hvac_store, minimal_store  # noqa: F401

#: Two keys, as a deployment rotating keys would have.
KEYS = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
#: Small bounds so the tests can cross them: 3-day ranges, 5,000 rows per page.
LIMITS = Limits(max_page_rows=5000, default_page_rows=1000, max_range=timedelta(days=3))


@dataclass
class Served:
    """A running server: its base URL, the store behind it and a client holding a valid key."""

    url: str
    root: Path
    client: httpx.Client


def table_versions(root: Path) -> dict[str, int | None]:
    """Every table's current Delta version (to prove the API never writes)."""
    store = DeltaStore(str(root))
    return {f"{t.namespace}/{t.name}": t.version for t in store.tables()}


@contextlib.contextmanager
def serve(root: Path, *, limits: Limits = LIMITS) -> Iterator[Served]:
    """uvicorn on an ephemeral loopback port, in a thread (no fork: deltalake is in use)."""
    app = create_app(str(root), KeyRing(KEYS), limits=limits, catalog_ttl=0.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": KEYS[0]}, timeout=60) as client:
            yield Served(url, root, client)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def api(minimal_store: Path) -> Iterator[Served]:  # noqa: F811
    """The API over the ``minimal`` store (hvac-001, hvac-006 over 2024-01-01..02); on teardown,
    every table's version is checked unchanged."""
    before = table_versions(minimal_store)
    with serve(minimal_store) as served:
        yield served
    assert table_versions(minimal_store) == before, "the API changed a table version"
