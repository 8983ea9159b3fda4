"""PluginManager: built-ins, entry-point discovery, pooling by config hash, cleanup."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshinsights.connectors.base import PluginManager, config_key
from meshinsights.connectors.files import FileConnector
from meshinsights.connectors.sql import SQLConnector
from meshinsights.errors import ConnectorError


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Iterator[str]:
    """An installed-looking third-party distribution declaring a ``meshinsights.connectors``
    entry point (a real dist-info on sys.path, found by importlib.metadata)."""
    (tmp_path / "acme_conn.py").write_text(textwrap.dedent("""
        import pandas as pd
        from meshinsights.connectors.base import DBConnector

        class EchoConnector(DBConnector):
            conn_type = "echo"
            closed = 0
            def connect(self):
                return object()
            def query(self, query, params=None):
                extra = {k: [v] for k, v in (params or {}).items()}
                return pd.DataFrame({"query": [query], **extra})
            def close(self):
                type(self).closed += 1
                super().close()
    """))
    info = tmp_path / "acme_conn-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-conn\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[meshinsights.connectors]\necho = acme_conn:EchoConnector\n"
        "broken = acme_conn:DoesNotExist\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield "acme_conn"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("acme_conn", None)


def test_entry_point_connectors_are_discovered_and_broken_ones_skipped(
        plugin_dist: str, caplog: pytest.LogCaptureFixture) -> None:
    with PluginManager() as manager:
        assert {"sql", "adx", "file", "echo"} <= set(manager.known())
        echo = manager.get("echo", tenant="a")
        assert echo.query("ping", {"x": 1}).to_dict("records") == [{"query": "ping", "x": 1}]
        assert "could not load connector plugin broken" in caplog.text
    assert type(echo).closed == 1


def test_builtins_load_lazily_by_name() -> None:
    manager = PluginManager(load_entry_points=False)
    assert manager.connector_class("sql") is SQLConnector
    assert manager.connector_class("file") is FileConnector


def test_unknown_type_names_the_closest_match() -> None:
    with pytest.raises(ConnectorError, match="Did you mean 'sql'"):
        PluginManager(load_entry_points=False).connector_class("sqll")


def test_pool_key_is_stable_and_credential_sensitive() -> None:
    a = config_key("sql", {"url": "mysql://u:p1@h/db", "connect_timeout": 10})
    same = config_key("sql", {"connect_timeout": 10, "url": "mysql://u:p1@h/db"})
    other_pw = config_key("sql", {"url": "mysql://u:p2@h/db", "connect_timeout": 10})
    other_tenant = config_key("adx", {"url": "https://c?tenant=t2", "database": "d"})
    assert a == same and a != other_pw
    assert len({a, other_pw, other_tenant}) == 3 and "p1" not in a


def test_cleanup_closes_every_pooled_connector(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text("timestamp,v\n2024-01-01,1\n")
    manager = PluginManager(load_entry_points=False)
    files = manager.get("file", path=str(tmp_path / "f.csv"))
    from meshinsights.connectors import files as file_module

    assert len(files.query()) == 1
    read = {part[0] for key in file_module._READS for part in key[1:]}
    assert str(tmp_path / "f.csv") in read  # parsed once, kept for this process
    assert manager.get("file", path=str(tmp_path / "f.csv")) is files
    manager.cleanup()
    assert manager.pooled() == 0
    assert manager.get("file", path=str(tmp_path / "f.csv")) is not files
