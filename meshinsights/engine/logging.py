"""Structured logs: run id, machine and window on every MeshInsights log line; secrets masked.

``@logged_run`` (on ``run_step`` / ``run_ingest``) or ``with log_context(...)`` binds the context
in a ``ContextVar``; a log-record factory (installed once, idempotent) then stamps every record
of a ``meshinsights.*`` logger with ``run_id``, ``machine_id`` and ``window`` attributes and a
``[run=… machine=… window=…]`` prefix, so the context survives any handler or formatter —
Airflow's task-log processors included — and removes URL passwords and registered secrets.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = [
    "log_context",
    "logged_run",
    "current_context",
    "mask_secret",
    "on_secret",
    "install",
    "JsonFormatter",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "meshinsights_log_context", default=None
)
_secrets: set[str] = set()
_secret_hooks: list[Callable[[str], None]] = []
_installed = False


def current_context() -> dict[str, str]:
    """The bound ``run_id``/``machine_id``/``window`` (empty outside a run)."""
    return dict(_context.get() or {})


def mask_secret(value: str | None) -> None:
    """Never show ``value`` in MeshInsights logs (and wherever a registered hook masks it: the
    Airflow adapter adds Airflow's own task-log masking, see :func:`on_secret`)."""
    if not value or len(value) < 4:
        return
    _secrets.add(value)
    from meshinsights.credentials import remember_secrets

    remember_secrets(value)  # error messages (not only log lines) drop it too
    for hook in _secret_hooks:
        with contextlib.suppress(Exception):  # a masking hook never breaks the caller
            hook(value)


def on_secret(hook: Callable[[str], None]) -> None:
    """Call ``hook(value)`` for every secret :func:`mask_secret` learns (idempotent)."""
    if hook not in _secret_hooks:
        _secret_hooks.append(hook)


def _machines(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "machine_id"):
        return str(value.machine_id)
    if isinstance(value, str):
        return value
    items = list(value)
    return ",".join(map(str, items[:3])) + (f",+{len(items) - 3}" if len(items) > 3 else "")


def _windows(windows: list[Any] | tuple[Any, ...]) -> str:
    from meshinsights.model import spans

    try:
        return f"{len(windows)} windows in " + ", ".join(map(str, spans(list(windows))))
    except Exception:  # not windows, or overlapping: run_step reports that; log them as given
        return str(windows)


@contextlib.contextmanager
def log_context(
    *, run_id: str | None = None, machine_id: Any = None, window: Any = None
) -> Iterator[dict[str, str]]:
    """Bind the run context for every log line emitted inside the block (nests, thread-safe)."""
    install()
    ctx = {**current_context()}
    if run_id is not None:
        ctx["run_id"] = str(run_id)
    if machine_id is not None:
        ctx["machine_id"] = _machines(machine_id)
    if window is not None:
        # A batch (several windows) logs the stretches it covers.
        ctx["window"] = str(window) if not isinstance(window, list | tuple) else _windows(window)
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


def logged_run(func: F) -> F:
    """Decorator: bind ``run_id``, ``machine``/``machine_id`` and ``window`` from the args."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind_partial(*args, **kwargs).arguments
        except TypeError:  # let the call itself raise the real error
            return func(*args, **kwargs)
        machine = bound.get("machine", bound.get("machine_id"))
        with log_context(
            run_id=bound.get("run_id"), machine_id=machine, window=bound.get("window")
        ):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _scrub(text: str) -> str:
    from meshinsights.credentials import redact

    return redact(text, *_secrets)


def install() -> None:
    """Wrap the log-record factory once: stamp context and mask secrets on our records."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not str(record.name or "").startswith("meshinsights"):
            return record
        ctx = _context.get() or {}
        run_id, machine, window = (ctx.get(k, "-") for k in ("run_id", "machine_id", "window"))
        record.__dict__.update(run_id=run_id, machine_id=machine, window=window)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the handler to report
            return record
        prefix = f"[run={run_id} machine={machine} window={window}] " if ctx else ""
        record.msg, record.args = prefix + _scrub(message), ()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the run context as fields (for log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "machine_id": getattr(record, "machine_id", None),
            "window": getattr(record, "window", None),
        }
        if record.exc_info:
            out["exc"] = _scrub(self.formatException(record.exc_info))
        return json.dumps(out, default=str)
