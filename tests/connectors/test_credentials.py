"""Credentials come from the environment, a .env file or Airflow's JSON form — never YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshinsights.credentials import adx_url, env_resolver, redact
from meshinsights.errors import ConnectorError


@pytest.fixture
def no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the .env lookup at an empty temp folder (the checkout's .env is ignored)."""
    path = tmp_path / ".env"
    monkeypatch.setenv("MESHINSIGHTS_ENV_FILE", str(path))
    return path


def test_environment_variable_wins(no_env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_env_file.write_text("AIRFLOW_CONN_PLANT_DB=mysql://from:file@h/db\n")
    monkeypatch.setenv("AIRFLOW_CONN_PLANT_DB", "mysql://from:env@h/db")
    assert env_resolver("plant-db") == "mysql://from:env@h/db"


def test_dotenv_file_is_read_without_touching_the_environment(
        no_env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_PLANT_DB", raising=False)
    no_env_file.write_text("# local secrets\nAIRFLOW_CONN_PLANT_DB='postgres://u:p@h:5432/db'\n")
    assert env_resolver("plant_db") == "postgres://u:p@h:5432/db"
    import os

    assert "AIRFLOW_CONN_PLANT_DB" not in os.environ


def test_missing_connection_names_the_variable(no_env_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    with pytest.raises(ConnectorError, match="set AIRFLOW_CONN_NOPE .* .env file"):
        env_resolver("nope")


def test_airflow_json_form(no_env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_J", json.dumps({
        "conn_type": "mysql", "login": "u", "password": "p@ss/word", "host": "db",
        "port": 3306, "schema": "plant"}))
    assert env_resolver("j") == "mysql://u:p%40ss%2Fword@db:3306/plant"
    monkeypatch.setenv("AIRFLOW_CONN_K", json.dumps({
        "conn_type": "azure_data_explorer", "host": "https://c.westeurope.kusto.windows.net",
        "login": "app-id", "password": "sec/ret", "extra": {"tenant": "t-1"}}))
    assert env_resolver("k") == ("https://app-id:sec%2Fret@c.westeurope.kusto.windows.net"
                                 "?tenant=t-1")


def test_adx_url_without_login_keeps_auth_options() -> None:
    assert adx_url("c.kusto.windows.net", None, None, {"auth": "msi", "client_id": "x"}) == \
        "https://c.kusto.windows.net?auth=msi&client_id=x"


@pytest.mark.parametrize("text, secret", [
    ("mysql+pymysql://root:hunter22@db/x failed", None),
    ("login failed for token abc123xyz", "abc123xyz"),
], ids=["url-password", "explicit-secret"])
def test_redact(text: str, secret: str | None) -> None:
    out = redact(text, secret)
    assert "hunter22" not in out and "abc123xyz" not in out and "***" in out
