"""Per-machine failure alerts: a failed task posts a JSON message to the machine's webhook.

``MachineConfig.alert_conn_id`` names an Airflow Connection (or ``AIRFLOW_CONN_<ID>``) whose
URL is the webhook, e.g. ``https://hooks.slack.com/services/...`` or a Teams/incoming-webhook
URL; the payload carries a Slack/Teams-compatible ``text`` plus structured fields. The DAG
factory sets ``on_failure_callback=failure_callback(machine.alert_conn_id, machine_id=...)``;
the callback runs in the task process, never raises, and never logs the URL (it holds a token).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["WebhookAlert", "failure_callback", "webhook_url", "alert_payload"]

logger = logging.getLogger(__name__)

_MAX_ERROR = 1000


def webhook_url(conn: Any) -> str:
    """The webhook URL of a Connection: ``extra.webhook_url``, a full URL in ``host``, or the URI.

    ``AIRFLOW_CONN_ALERTS='https://hooks.example.com/T0/B0/x'`` parses as conn_type https,
    host hooks.example.com, schema ``T0/B0/x`` — rebuilt here as the same URL.
    """
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    if isinstance(extra, dict) and extra.get("webhook_url"):
        return str(extra["webhook_url"])
    host = conn.host or ""
    if "://" in host:
        return host.rstrip("/") + (f"/{conn.schema}" if conn.schema else "")
    scheme = conn.conn_type if conn.conn_type in ("http", "https") else "https"
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema}" if conn.schema else ""
    if not host:
        raise ValueError(f"connection {conn.conn_id!r} has no host: set its URL to the webhook")
    return f"{scheme}://{host}{port}{path}"


def _get_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def _window(context: Any) -> dict[str, str] | None:
    from meshinsights.airflow.tasks import window_from_context

    try:
        return window_from_context(context).as_dict()
    except Exception:  # an alert without a window is still an alert
        return None


def alert_payload(context: Any, *, machine_id: str | None) -> dict[str, Any]:
    """What the webhook receives: a one-line ``text`` plus the run's coordinates (no secrets)."""
    from meshinsights.credentials import redact

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    task_id = getattr(ti, "task_id", None)
    error = context.get("exception")
    error_text = redact(f"{type(error).__name__}: {error}")[:_MAX_ERROR] if error else None
    window = _window(context)
    where = f" window {window['start']} → {window['end']}" if window else ""
    return {
        "text": f"MeshInsights: {dag_id}.{task_id} failed for machine {machine_id}{where}"
        + (f": {error_text}" if error_text else ""),
        "event": "task_failed",
        "machine_id": machine_id,
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "window": window,
        "error": error_text,
        "log_url": getattr(ti, "log_url", None),
    }


class WebhookAlert:
    """The ``on_failure_callback`` of one machine's tasks (a class: it pickles and prints well)."""

    def __init__(
        self, conn_id: str, *, machine_id: str | None = None, timeout: float = 10.0
    ) -> None:
        self.conn_id = conn_id
        self.machine_id = machine_id
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookAlert({self.conn_id!r}, machine_id={self.machine_id!r})"

    def __call__(self, context: Any) -> bool:
        """Post the alert; True if the webhook took it. Never raises (the task already failed)."""
        try:
            url = webhook_url(_get_connection(self.conn_id))
        except Exception as exc:
            logger.error(
                "failure alert for %s not sent: connection %r unusable (%s: %s)",
                self.machine_id,
                self.conn_id,
                type(exc).__name__,
                exc,
            )
            return False
        payload = alert_payload(context, machine_id=self.machine_id)
        try:
            import httpx

            resp = httpx.post(url, json=payload, timeout=self.timeout)
        except Exception as exc:
            logger.error(
                "failure alert for %s not sent via connection %r: %s",
                self.machine_id,
                self.conn_id,
                type(exc).__name__,
            )
            return False
        if resp.status_code >= 400:
            logger.error(
                "failure alert for %s rejected by the webhook of %r: HTTP %d",
                self.machine_id,
                self.conn_id,
                resp.status_code,
            )
            return False
        logger.info("failure alert for %s sent via connection %r", self.machine_id, self.conn_id)
        return True


def failure_callback(
    alert_conn_id: str | None, *, machine_id: str | None = None
) -> WebhookAlert | None:
    """The callback for a machine's tasks, or None when it has no ``alert_conn_id``."""
    return WebhookAlert(alert_conn_id, machine_id=machine_id) if alert_conn_id else None
