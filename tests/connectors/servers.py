"""Real database servers for tests: a private MySQL database and PostgreSQL schema.

Import the fixtures where needed: ``from tests.connectors.servers import mysql_url``.

Each session gets its own database (MariaDB) or schema (PostgreSQL, in db ``test``) so it
never touches tables other tests or helpers use. Without a server the tests skip with the
reason — unless ``CI`` is set, where they fail (CI must run them).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

MYSQL_ROOT = "mysql+pymysql://root@127.0.0.1:3306/test"
PG_ROOT = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _unavailable(what: str, exc: Exception) -> None:
    reason = f"{what} not reachable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI requires it — .ci/run starts the servers")
    pytest.skip(f"{reason}; start it to run this test")


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A fresh MariaDB database for this session (dropped afterwards); its SQLAlchemy URL."""
    name = f"mi_test_{uuid.uuid4().hex[:10]}"
    try:
        engine = create_engine(MYSQL_ROOT, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # any failure to reach the server
        _unavailable("MariaDB at 127.0.0.1:3306", exc)
    yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    with engine.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh schema in PostgreSQL db ``test`` for this session; a URL whose search_path is it."""
    name = f"mi_test_{uuid.uuid4().hex[:10]}"
    try:
        engine = create_engine(PG_ROOT, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}"))
    except Exception as exc:
        _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    yield f"{PG_ROOT}?options=-csearch_path%3D{name}"
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
    engine.dispose()
