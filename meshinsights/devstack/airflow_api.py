"""A small client of Airflow 3's REST API (``/api/v2``) for the local stack: log in, unpause,
trigger a run, read its task results. Standard library only; loopback use."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from meshinsights.errors import MeshInsightsError

__all__ = ["AirflowAPI", "AirflowAPIError", "FINISHED"]

#: DAG run states that do not change any more.
FINISHED = frozenset({"success", "failed"})


class AirflowAPIError(MeshInsightsError):
    """A REST call failed: method, path, HTTP status and the start of the answer."""


class AirflowAPI:
    """Bearer-token calls to one Airflow API server (SimpleAuthManager's ``/auth/token``)."""

    def __init__(self, url: str, user: str, password: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.user, self.password, self.timeout = user, password, timeout
        self._token: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AirflowAPIError(
                f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}"
            ) from None

    def token(self) -> str:
        if self._token is None:
            body = {"username": self.user, "password": self.password}
            self._token = self.request("POST", "/auth/token", body, auth=False)["access_token"]
        return self._token

    def wait_dags(self, dag_ids: list[str], *, timeout: float) -> list[str]:
        """Until the DAG processor has serialized each DAG; returns the ones that never came."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while missing and time.monotonic() < deadline:
            known = {d["dag_id"] for d in self.request("GET", "/api/v2/dags?limit=1000")["dags"]}
            missing = [d for d in missing if d not in known]
            if missing:
                time.sleep(1)
        return missing

    def unpause(self, dag_id: str) -> None:
        # Queued runs of a paused DAG (manual triggers and backfills alike) never start.
        self.request("PATCH", f"/api/v2/dags/{quote(dag_id)}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any], *, run_id: str | None = None) -> str:
        """A manual run with ``conf``; returns its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        made = self.request("POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns", body)
        return str(made["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}"
        return dict(self.request("GET", path))

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns?limit=100"
        return list(self.request("GET", path)["dag_runs"])

    def result(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """The task's return value (its XCom), e.g. the ingest summary with its row counts."""
        path = (
            f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
            f"{quote(task_id)}/xcomEntries/return_value"
        )
        return self.request("GET", path).get("value")
