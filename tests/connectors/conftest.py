"""Connector test fixtures: the real MariaDB and PostgreSQL servers (see servers.py)."""

from __future__ import annotations

from tests.connectors.servers import mysql_url, postgres_url  # noqa: F401 - fixtures

