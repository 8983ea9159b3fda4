"""Secrets never leave a run: not in logs, XCom, artifacts or exception messages.

A MariaDB login with a password made for this session and an API key set for the run drive
real pipeline runs (the minimal pipeline and hvac_power, the real ``openai`` client against a
loopback server that even echoes the key back in an error). Then everything the run produced
is searched for both secrets: every log record at DEBUG (third-party loggers included), the
task summaries (what XCom carries), every file under the store root (Delta logs as text,
Parquet files as bytes *and* decoded cell by cell), the alert database, exception messages
and tracebacks — and, through Airflow's ``dag.test``, the Airflow home (metadata DB with XCom,
task logs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import shutil
import traceback
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
import yaml

from meshinsights.config import load_configs
from meshinsights.engine.runner import run_pipeline
from meshinsights.errors import ConnectorError
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS, REPO
from tests.genai.fake_openai import FakeOpenAI, Reply
from tests.reliability.conftest import SeededMySQL
from tests.reliability.proxy import closed_port

KEY = f"sk-rel-{secrets.token_hex(16)}"
TWO_DAYS = Window.parse("2024-01-01", "2024-01-03")


def forms(*values: str) -> list[str]:
    """Each secret as written and URL-encoded (how it sits inside a connection URL)."""
    return sorted({f for v in values for f in (v, quote(v, safe=""))})


def leaks_in_files(root: Path, needles: Iterable[str]) -> list[str]:
    """Files under ``root`` holding a needle in their bytes or, for Parquet, in any cell."""
    needles = list(needles)
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        hits += [f"{path} (bytes)" for n in needles if n.encode() in blob]
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist(), default=str)
            hits += [f"{path} (cell)" for n in needles if n in text]
    return hits


def leaks_in_text(text: str, needles: Iterable[str]) -> list[str]:
    return [n for n in needles if n in text]


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record: message, arguments and formatted exception."""
    parts = [caplog.text]
    for r in caplog.records:
        parts += [r.getMessage(), repr(r.args), r.exc_text or ""]
        if r.exc_info and r.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(r.exc_info[1])))
    return "\n".join(parts)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A loopback OpenAI-compatible server; its first answer is a 401 that echoes the key."""
    with FakeOpenAI() as server:
        server.push(Reply(401, body={"error": {
            "message": f"Incorrect API key provided: {KEY}. Find your key at https://x/keys.",
            "type": "invalid_request_error", "code": "invalid_api_key"}}))
        yield server


def _configs(tmp_path: Path, base_url: str) -> Path:
    """Repo configs; hvac-001 (minimal) and hvac-003 (hvac_power) send GenAI to ``base_url``."""
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    for mid in ("hvac-001", "hvac-003"):
        path = configs / "machines" / f"{mid}.yaml"
        machine = yaml.safe_load(path.read_text())
        machine["overrides"] = {"genai": {"provider": "compatible", "base_url": base_url,
                                          "max_attempts": 1}}
        path.write_text(yaml.safe_dump(machine))
    return configs


@pytest.fixture
def run_env(seeded_mysql: SeededMySQL, fake: FakeOpenAI, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The source URL (with the password) and the API key, set only in the environment."""
    env = {"AIRFLOW_CONN_MESHINSIGHTS_DEMO": seeded_mysql.url(), "OPENAI_API_KEY": KEY,
           "MESHINSIGHTS_CONFIGS": str(_configs(tmp_path, fake.base_url)),
           "MESHINSIGHTS_STORE": str(tmp_path / "artifacts"),
           "MESHINSIGHTS_ALERTS_DB": str(tmp_path / "alerts.db")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_the_leak_detector_finds_a_planted_secret(tmp_path):
    """The searches below are not vacuous: a secret in a compressed Parquet cell is found."""
    from tests.reliability.writer import DAY, rows

    store = DeltaStore(str(tmp_path / "store"))
    frame = rows("m", 1).assign(unit=[f"x{i}-{KEY}" if i == 700 else "degC" for i in range(1440)])
    store.overwrite("rel", "t", frame, machine_ids="m", window=DAY,
                    metadata={"meshinsights.note": f"url=mysql://u:{quote(KEY)}@h/db"})
    hits = leaks_in_files(tmp_path, forms(KEY))
    assert any(h.endswith(".parquet (cell)") for h in hits)
    assert any("_delta_log" in h for h in hits)
    assert leaks_in_text(f"Bearer {KEY}", forms(KEY)) == [KEY]


@pytest.mark.mysql
def test_a_full_local_run_leaks_no_secret(seeded_mysql, fake, run_env, tmp_path, caplog):
    needles = forms(seeded_mysql.password, KEY)
    configs = load_configs(run_env["MESHINSIGHTS_CONFIGS"])
    store = DeltaStore(run_env["MESHINSIGHTS_STORE"])
    with caplog.at_level(logging.DEBUG):
        summaries = run_pipeline(configs, "hvac-001", TWO_DAYS, store)
        summaries += run_pipeline(configs, "hvac-003", Window.parse("2024-01-01", "2024-01-02"),
                                  store)
    # The secrets were really used: rows came from MariaDB, requests carried the key.
    assert sum(s.get("rows_in", 0) for s in summaries if s["step"] == "ingest") > 3 * 5000
    assert fake.requests and all(r.headers["authorization"] == f"Bearer {KEY}"
                                 for r in fake.requests)
    genai = store.read_all("minimal", "genai_analysis").sort_values("ts")
    assert genai["status"].tolist() == ["fallback", "ok"]  # the 401, then an answer
    assert "Incorrect API key provided" in genai["error"].iloc[0]
    assert leaks_in_text(log_text(caplog), needles) == []
    assert leaks_in_text(json.dumps(summaries, default=str), needles) == []  # XCom payloads
    # The store, the alert database and the configs: everything the run could write.
    assert leaks_in_files(tmp_path, needles) == []


@pytest.mark.mysql
@pytest.mark.parametrize("fault", ["wrong_password", "server_down", "unknown_database"])
def test_source_errors_name_no_secret(seeded_mysql, run_env, monkeypatch, caplog, fault):
    wrong = f"Wrong-{secrets.token_hex(8)}"
    url = {"wrong_password": seeded_mysql.url().replace(seeded_mysql.password, wrong),
           "server_down": seeded_mysql.url(port=closed_port()),
           "unknown_database": dataclasses.replace(seeded_mysql, database="nope_db").url()}
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", url[fault])
    configs = load_configs(run_env["MESHINSIGHTS_CONFIGS"])
    store = DeltaStore(run_env["MESHINSIGHTS_STORE"])
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorError) as info:
        run_pipeline(configs, "hvac-001", Window.parse("2024-01-01", "2024-01-02"), store)
    shown = "\n".join([str(info.value), repr(info.value),
                       "".join(traceback.format_exception(info.value)), log_text(caplog)])
    # (MariaDB answers a user without grants on a missing database with 1044 access denied)
    assert {"wrong_password": "authentication failed", "server_down": "transient",
            "unknown_database": "to database 'nope_db'"}[fault] in str(info.value)
    assert leaks_in_text(shown, forms(seeded_mysql.password, wrong, KEY)) == []
    assert store.tables() == []  # nothing was written


@pytest.mark.mysql
@pytest.mark.airflow
def test_an_airflow_run_leaks_no_secret_into_xcom_or_task_logs(seeded_mysql, fake, run_env,
                                                               airflow_db, tmp_path, caplog):
    from airflow.dag_processing.dagbag import DagBag

    needles = forms(seeded_mysql.password, KEY)
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag(
        "minimal__hvac-001")
    with caplog.at_level(logging.DEBUG):
        run = dag.test(logical_date=datetime(2024, 1, 2, tzinfo=UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    xcoms = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()}
    assert xcoms["ingest"]["rows_in"] > 5000 and fake.requests  # the secrets were used
    assert leaks_in_text(json.dumps(xcoms, default=str), needles) == []
    assert leaks_in_text(log_text(caplog), needles) == []
    assert leaks_in_files(Path(airflow_db), needles) == []  # metadata DB (XCom), task logs
    assert leaks_in_files(tmp_path / "artifacts", needles) == []


def _awkward_sources(port: int) -> dict[str, tuple[str, list[str]]]:
    """Connection values whose secrets a URL regex misses: (AIRFLOW_CONN_ value, secrets)."""
    token = secrets.token_hex(6)
    space, at, query, ssl = (f"pw {token} sp", f"pw@{token}", f"q{token}pw", f"ssl{token}pw")
    json_pw = f"js{token}pw"
    return {
        "space": (f"mysql://mi:{space}@127.0.0.1:{port}/test", [space]),
        "unencoded_at": (f"mysql://mi:{at}@127.0.0.1:{port}/test", [at]),
        "query_password": (f"mysql://mi@127.0.0.1:{port}/test?password={query}", [query]),
        "json_extra": (
            json.dumps({"conn_type": "postgres", "login": "mi", "password": json_pw,
                        "host": "127.0.0.1", "port": port, "schema": "test",
                        "extra": {"sslmode": "prefer", "sslpassword": ssl}}),
            [json_pw, ssl],
        ),
    }


@pytest.mark.parametrize("shape", ["space", "unencoded_at", "query_password", "json_extra"])
def test_secrets_of_any_url_shape_stay_out_of_errors_and_retry_warnings(
    shape, tmp_path, monkeypatch, caplog
):
    """Redaction works from the known secret values, not from the URL's shape: a server that
    refuses the connection makes the connector retry (warnings) and then fail (the error)."""
    value, hidden = _awkward_sources(closed_port())[shape]
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", value)
    configs = load_configs(CONFIGS)
    store = DeltaStore(str(tmp_path / "artifacts"))
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorError) as info:
        run_pipeline(configs, "hvac-001", Window.parse("2024-01-01", "2024-01-02"), store)
    shown = "\n".join([str(info.value), repr(info.value),
                       "".join(traceback.format_exception(info.value)), log_text(caplog)])
    assert "127.0.0.1" in str(info.value) or "transient" in str(info.value)  # a real failure
    assert leaks_in_text(shown, forms(*hidden)) == []
