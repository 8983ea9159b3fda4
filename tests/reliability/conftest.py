"""Reliability suite helpers: the soak switch, figures for RELIABILITY.md, a private MariaDB."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import REPO
from tests.connectors.servers import MYSQL_ROOT, _unavailable

#: ``make soak`` sets MESHINSIGHTS_SOAK=1: long versions run, property tests draw many examples.
SOAK = os.environ.get("MESHINSIGHTS_SOAK") == "1"


def soak(test: Any) -> Any:
    """Mark a long test ``soak``; it runs only under ``make soak``."""
    skip = pytest.mark.skipif(not SOAK, reason="long run: `make soak` (MESHINSIGHTS_SOAK=1)")
    return pytest.mark.soak(skip(test))
FIGURES = REPO / "test-artifacts" / "reliability"


def record(name: str, **figures: object) -> None:
    """Keep a run's figures (trials, outcomes, seconds) in test-artifacts/ for RELIABILITY.md."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=1, default=str))

#: What the seeded fleet holds (6 units: hvac-006 has spikes and duplicates for quarantine).
FLEET = {"machines": 6, "days": 2, "seed": 11}


@dataclass(frozen=True)
class SeededMySQL:
    """A seeded demo database on the real MariaDB, readable by its own password-protected user."""

    database: str
    user: str
    password: str  # a secret created for this session: it must never show up anywhere

    def url(self, port: int = 3306, **query: str) -> str:
        args = "&".join(f"{k}={v}" for k, v in query.items())
        return (f"mysql+pymysql://{self.user}:{self.password}@127.0.0.1:{port}/{self.database}"
                + (f"?{args}" if args else ""))


@pytest.fixture(scope="session")
def seeded_mysql() -> Iterator[SeededMySQL]:
    """A fresh database with the demo fleet (6 units × 2 days) and a login only for it."""
    from meshinsights.demo import seed

    tag = uuid.uuid4().hex[:10]
    db = SeededMySQL(f"mi_rel_{tag}", f"mi_rel_{tag}", f"Rel-{secrets.token_hex(12)}-pw")
    try:
        engine = create_engine(MYSQL_ROOT, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(text(f"CREATE DATABASE {db.database}"))
            conn.execute(text(f"CREATE USER '{db.user}'@'%' IDENTIFIED BY '{db.password}'"))
            conn.execute(text(f"GRANT ALL ON {db.database}.* TO '{db.user}'@'%'"))
    except Exception as exc:  # any failure to reach the server
        _unavailable("MariaDB at 127.0.0.1:3306", exc)
    seed(db.url(), **FLEET)
    yield db
    with engine.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {db.database}"))
        conn.execute(text(f"DROP USER IF EXISTS '{db.user}'@'%'"))
    engine.dispose()
