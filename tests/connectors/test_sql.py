"""SQLConnector on real SQLite, MariaDB and PostgreSQL: parameters, injection, errors, retry."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from meshinsights.connectors.base import PluginManager
from meshinsights.connectors.retry import with_retry
from meshinsights.connectors.sql import SQLConnector
from meshinsights.errors import ConnectorError, TransientConnectorError

ROWS = [
    ("m1", "2024-01-01 00:00:00", "temperature", 20.5),
    ("m1", "2024-01-01 12:00:00", "temperature", 21.5),
    ("m1", "2024-01-02 00:00:00", "temperature", 22.5),
    ("m2", "2024-01-01 06:00:00", "temperature", 30.0),
]
QUERY = ("SELECT machine_id, ts, metric, value FROM telemetry "
         "WHERE machine_id = :machine_id AND ts >= :start AND ts < :end ORDER BY ts")
DAY = {"start": datetime(2024, 1, 1), "end": datetime(2024, 1, 2)}


def _fill(url: str) -> None:
    engine = create_engine(url)
    ts_type = "TEXT" if url.startswith("sqlite") else "TIMESTAMP"
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS telemetry"))
        conn.execute(text(f"CREATE TABLE telemetry (machine_id VARCHAR(64), ts {ts_type}, "
                          "metric VARCHAR(32), value DOUBLE PRECISION)"))
        conn.execute(text("INSERT INTO telemetry VALUES (:m, :ts, :metric, :v)"),
                     [{"m": m, "ts": ts, "metric": k, "v": v} for m, ts, k, v in ROWS])
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each kind holding the small ``telemetry`` table above."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.db'}"
    else:
        url = request.getfixturevalue(f"{request.param}_url")
    _fill(url)
    return url


def test_parameterized_query_returns_only_the_machine_window(db_url: str) -> None:
    with SQLConnector(url=db_url) as conn:
        result = conn.query(QUERY, {"machine_id": "m1", **DAY})
    assert list(result["value"]) == [20.5, 21.5]
    assert set(result["machine_id"]) == {"m1"}
    assert pd.to_datetime(result["ts"]).max() < pd.Timestamp("2024-01-02")


@pytest.mark.parametrize("evil", ["x' OR '1'='1", "x'; DROP TABLE telemetry; --",
                                  "m1' --", "m1\\' OR 1=1 #"],
                         ids=["or-true", "drop-table", "comment", "backslash"])
def test_injection_through_machine_id_does_nothing(db_url: str, evil: str) -> None:
    with SQLConnector(url=db_url) as conn:
        found = conn.query(QUERY, {"machine_id": evil, **DAY})
        everything = conn.query("SELECT COUNT(*) AS n FROM telemetry")
    assert found.empty
    assert int(everything["n"].iloc[0]) == len(ROWS)  # the table is still there, whole


def test_injection_through_a_config_param_does_nothing(db_url: str) -> None:
    query = QUERY.replace("ORDER BY", "AND metric = :metric ORDER BY")
    with SQLConnector(url=db_url) as conn:
        honest = conn.query(query, {"machine_id": "m1", "metric": "temperature", **DAY})
        evil = conn.query(query, {"machine_id": "m1", "metric": "x' OR '1'='1", **DAY})
    assert len(honest) == 2
    assert evil.empty


def test_missing_table_is_one_permanent_line(db_url: str) -> None:
    with pytest.raises(ConnectorError) as info:
        SQLConnector(url=db_url).query("SELECT * FROM no_such_table")
    message = str(info.value)
    assert not isinstance(info.value, TransientConnectorError)
    assert "missing table" in message and "no_such_table" in message
    assert "\n" not in message


@pytest.mark.mysql
def test_wrong_password_names_the_fix_not_the_secret(mysql_url: str) -> None:
    secret = "Sup3r-Secret-Pw"
    url = mysql_url.replace("root@", f"root:{secret}@")
    with pytest.raises(ConnectorError) as info:
        SQLConnector(url=url, connect_timeout=3).query("SELECT 1")
    message = str(info.value)
    assert "authentication failed" in message and "check the login and password" in message
    assert secret not in message and "\n" not in message
    assert not isinstance(info.value, TransientConnectorError)


@pytest.mark.parametrize("url", [
    pytest.param("mysql+pymysql://root:pw-123456@nohost.invalid:3306/test", id="mysql"),
    pytest.param("postgresql+psycopg2://postgres:pw-123456@nohost.invalid:5432/test",
                 id="postgres"),
])
def test_unknown_host_is_permanent_and_secret_free(url: str) -> None:
    with pytest.raises(ConnectorError) as info:
        SQLConnector(url=url, connect_timeout=3).query("SELECT 1")
    message = str(info.value)
    assert "unknown host" in message and "pw-123456" not in message and "\n" not in message
    assert not isinstance(info.value, TransientConnectorError)


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(ConnectorError, match="does not exist"):
        SQLConnector(url=f"sqlite:///{path}").query("SELECT 1")
    assert not path.exists()


@pytest.mark.parametrize("url", [
    pytest.param("mysql+pymysql://root@127.0.0.1:1/test", id="mysql"),
    pytest.param("postgresql+psycopg2://postgres@127.0.0.1:1/test", id="postgres"),
])
def test_refused_connection_is_transient_and_retried(url: str) -> None:
    conn = SQLConnector(url=url, connect_timeout=3)
    calls: list[int] = []
    sleeps: list[float] = []

    def attempt() -> pd.DataFrame:
        calls.append(1)
        return conn.query("SELECT 1")

    with pytest.raises(ConnectorError) as info:
        with_retry(attempt, attempts=3, base_delay=0.1, sleep=sleeps.append)
    assert len(calls) == 3 and len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 0.9  # backoff grows (jitter is at most ×0.5)
    assert "after 3 attempts" in str(info.value)
    assert isinstance(info.value.__cause__, TransientConnectorError)


def test_permanent_errors_are_not_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    _fill(url)
    calls: list[int] = []

    def attempt() -> pd.DataFrame:
        calls.append(1)
        return SQLConnector(url=url).query("SELEC 1")

    with pytest.raises(ConnectorError, match="syntax"):
        with_retry(attempt, attempts=4, sleep=lambda s: None)
    assert calls == [1]


def _hold_lock(url: str, locked: threading.Event, release: threading.Event) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT * FROM telemetry WHERE machine_id = 'm2' FOR UPDATE"))
        locked.set()
        release.wait(20)
        conn.rollback()
    engine.dispose()


@pytest.mark.parametrize("server", [pytest.param("mysql", marks=pytest.mark.mysql),
                                    pytest.param("postgres", marks=pytest.mark.postgres)])
def test_lock_timeout_is_transient(server: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{server}_url")
    _fill(url)
    timeout = ("&init_command=SET%20SESSION%20innodb_lock_wait_timeout%3D1" if server == "mysql"
               else "%20-clock_timeout%3D500")
    short = url + ("?" + timeout[1:] if "?" not in url else timeout)
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(url, locked, release))
    holder.start()
    try:
        assert locked.wait(10)
        with pytest.raises(TransientConnectorError, match="transient"):
            SQLConnector(url=short).query(
                "SELECT * FROM telemetry WHERE machine_id = 'm2' FOR UPDATE")
    finally:
        release.set()
        holder.join()


def test_pool_shares_identical_configs_and_separates_credentials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    _fill(url)
    with PluginManager(load_entry_points=False) as manager:
        a = manager.get("sql", url=url)
        b = manager.get("sql", url=url)
        other = manager.get("sql", url=url, connect_timeout=5)
        mysql_a = manager.get("sql", url="mysql://alice:pw1@db:3306/x")
        mysql_b = manager.get("sql", url="mysql://alice:pw2@db:3306/x")
        assert a is b and a is not other and mysql_a is not mysql_b
        assert manager.pooled() == 4
        assert len(a.query("SELECT * FROM telemetry")) == len(ROWS)
        engine = a._client
        assert engine is not None
    assert manager.pooled() == 0 and a._client is None  # cleanup() closed the pool
    # A closed connector reconnects lazily.
    assert len(a.query("SELECT * FROM telemetry")) == len(ROWS)
    a.close()
