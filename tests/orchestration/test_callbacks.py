"""Failure alerts: a failed Airflow task posts its alert to a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meshinsights.airflow.callbacks import (
    WebhookAlert,
    alert_payload,
    failure_callback,
    webhook_url,
)

SECRET = "hunter2-not-for-logs"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status = 200

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append({"path": self.path, "json": json.loads(body),  # type: ignore[attr-defined]
                                     "type": self.headers["Content-Type"]})
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on 127.0.0.1 recording every POST in ``.received``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer, path: str = "/hooks/T0/abc") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def _connection(uri: str) -> Any:
    from airflow.sdk import Connection

    return Connection.from_uri(uri, conn_id="alerts")


@pytest.mark.parametrize(("uri", "expected"), [
    ("https://hooks.example.com/services/T0/B0/xyz", "https://hooks.example.com/services/T0/B0/xyz"),
    ("http://127.0.0.1:8765/hook", "http://127.0.0.1:8765/hook"),
    ("http://ignored?webhook_url=https%3A%2F%2Fexample.org%2Fw", "https://example.org/w"),
], ids=["https-with-path", "http-port", "extra-webhook_url"])
def test_webhook_url_is_rebuilt_from_the_connection(uri: str, expected: str):
    assert webhook_url(_connection(uri)) == expected


def test_a_connection_without_host_is_a_clear_error():
    from airflow.sdk import Connection

    with pytest.raises(ValueError, match="connection 'alerts' has no host"):
        webhook_url(Connection(conn_id="alerts", conn_type="http"))


def test_no_alert_connection_means_no_callback():
    assert failure_callback(None, machine_id="m-1") is None
    assert failure_callback("", machine_id="m-1") is None
    assert isinstance(failure_callback("alerts", machine_id="m-1"), WebhookAlert)


def test_payload_names_the_run_and_hides_secrets():
    class TI:
        dag_id, task_id, run_id, try_number, log_url = "d", "ingest", "r1", 2, "http://x/log"

    class Run:
        conf = {"start": "2024-01-01", "end": "2024-01-02"}

    context = {"ti": TI(), "run_id": "r1", "dag_run": Run(),
               "exception": RuntimeError(f"cannot connect to mysql://svc:{SECRET}@db/x")}
    payload = alert_payload(context, machine_id="m-1")
    assert payload["machine_id"] == "m-1" and payload["try_number"] == 2
    assert payload["window"] == {"start": "2024-01-01T00:00:00+00:00",
                                 "end": "2024-01-02T00:00:00+00:00"}
    assert "RuntimeError" in payload["text"]
    assert "d.ingest failed for machine m-1" in payload["text"]
    assert SECRET not in json.dumps(payload)


_DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG, task

from meshinsights.airflow.callbacks import failure_callback

with DAG("meshinsights_callback_test", schedule=None, start_date=datetime(2024, 1, 1),
         catchup=False) as dag:

    @task(retries=0, on_failure_callback=failure_callback("machine_alerts", machine_id="m-7"))
    def ingest():
        raise RuntimeError("source down: postgresql://svc:SECRET@db:5432/x")

    ingest()
""".replace("SECRET", SECRET)


def _failing_dag(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A DAG whose only task fails, in its own DAG folder (dag.test needs it in a bundle)."""
    from airflow.dag_processing.dagbag import DagBag

    folder.mkdir()
    (folder / "callback_test_dag.py").write_text(_DAG_FILE)
    bundle = {"classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(
        [{**bundle, "name": "callback-test", "kwargs": {"path": str(folder)}}]))
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    return bag.get_dag("meshinsights_callback_test")


@pytest.mark.airflow
def test_a_failed_task_posts_its_alert_to_the_webhook(webhook, airflow_db, monkeypatch,
                                                      tmp_path: Path):
    monkeypatch.setenv("AIRFLOW_CONN_MACHINE_ALERTS", _url(webhook))
    run = _failing_dag(tmp_path / "dags", monkeypatch).test(
        logical_date=datetime(2024, 1, 2, tzinfo=UTC),
        run_conf={"start": "2024-01-05T00:00:00+00:00", "end": "2024-01-06T00:00:00+00:00"})
    assert run.state == "failed"
    (post,) = webhook.received
    assert post["path"] == "/hooks/T0/abc" and post["type"] == "application/json"
    body = post["json"]
    assert (body["dag_id"], body["task_id"], body["machine_id"]) == (
        "meshinsights_callback_test", "ingest", "m-7")
    assert body["window"]["start"] == "2024-01-05T00:00:00+00:00"
    assert "RuntimeError: source down" in body["error"]
    assert SECRET not in json.dumps(body)


@pytest.mark.airflow
def test_an_unreachable_or_refusing_webhook_never_breaks_the_run(webhook, airflow_db, monkeypatch,
                                                                 caplog):
    webhook.status = 500
    monkeypatch.setenv("AIRFLOW_CONN_MACHINE_ALERTS", _url(webhook))
    alert = WebhookAlert("machine_alerts", machine_id="m-7")
    assert alert({"run_id": "r"}) is False  # HTTP 500
    assert len(webhook.received) == 1
    monkeypatch.setenv("AIRFLOW_CONN_MACHINE_ALERTS", "http://127.0.0.1:9/closed")
    assert alert({"run_id": "r"}) is False  # connection refused
    assert "closed" not in caplog.text  # the URL (it may hold a token) is never logged
    monkeypatch.delenv("AIRFLOW_CONN_MACHINE_ALERTS")
    assert WebhookAlert("no_such_conn_xyz")({"run_id": "r"}) is False


@pytest.mark.airflow
def test_machine_dags_alert_through_their_alert_connection(webhook, airflow_db, demo_db,
                                                           monkeypatch, tmp_path: Path):
    """End to end through the DAG factory: a machine with ``alert_conn_id`` whose ingest fails."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO
    from tests.integration.conftest import write_configs

    configs = write_configs(tmp_path / "configs", machine_extra="alert_conn_id: machine_alerts\n")
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(configs))
    monkeypatch.setenv("MESHINSIGHTS_STORE", str(tmp_path / "artifacts"))
    # The source is an empty SQLite file: the query fails, so ingest fails.
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("AIRFLOW_CONN_MACHINE_ALERTS", _url(webhook, "/machine"))
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("minimal__hvac-002")
    callbacks = dag.get_task("ingest").on_failure_callback or []
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    (alert,) = [c for c in callbacks if isinstance(c, WebhookAlert)]
    assert (alert.conn_id, alert.machine_id) == ("machine_alerts", "hvac-002")
    run = dag.test(logical_date=datetime(2024, 1, 2, tzinfo=UTC))
    assert run.state == "failed"
    (post,) = webhook.received
    assert post["path"] == "/machine"
    assert (post["json"]["machine_id"], post["json"]["task_id"]) == ("hvac-002", "ingest")
    assert post["json"]["window"] == {"start": "2024-01-01T00:00:00+00:00",
                                      "end": "2024-01-02T00:00:00+00:00"}
