"""Long-running child processes: start each in its own session with a pid file, stop by group.

A component's pid is its process group id, so stopping it stops exactly what it started
(never by name); used by the local stack (``make run``/``make stop``) and the integration
tests' Airflow cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshinsights.settings import PROJECT_ROOT

__all__ = ["Component", "alive", "spawn", "stop_all", "stop_group", "tail", "wait_http"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    """One long-running process of the stack: its name (pid/log file stem) and command."""

    name: str
    argv: Sequence[str]


def spawn(component: Component, env: Mapping[str, str], directory: Path) -> subprocess.Popen[bytes]:
    """Start a component in its own session (its pid is its process group id) with a pid file."""
    log = (directory / f"{component.name}.log").open("ab")
    proc = subprocess.Popen(
        list(component.argv),
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=str(PROJECT_ROOT),
    )
    log.close()
    (directory / f"{component.name}.pid").write_text(f"{proc.pid}\n")
    logger.info("started %s (pid %d): %s", component.name, proc.pid, " ".join(component.argv))
    return proc


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie child of ours counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _group_alive(pgid: int) -> bool:
    """Whether any live process is in process group ``pgid`` (psutil, not a /proc scan)."""
    import psutil

    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def stop_group(pgid: int, *, timeout: float = 30.0) -> None:
    """SIGINT the group's leader (it shuts its children down), then SIGTERM/SIGKILL the group."""
    steps = (
        (os.kill, signal.SIGINT, timeout),
        (os.killpg, signal.SIGTERM, 10.0),
        (os.killpg, signal.SIGKILL, 5.0),
    )
    for send, sig, wait in steps:
        try:
            send(pgid, sig)
        except ProcessLookupError:
            if send is os.kill:
                continue
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pgid, os.WNOHANG)
            if not _group_alive(pgid):
                return
            time.sleep(0.2)
        logger.warning("process group %d ignored %s", pgid, sig.name)


def stop_all(directory: Path, *, timeout: float = 30.0) -> list[str]:
    """Stop every component with a pid file in ``directory``; returns the names stopped."""
    stopped = []
    for pid_file in sorted(directory.glob("*.pid")):
        if pid_file.stem == "stack":  # the supervisor itself: stop_stack signals it
            continue
        try:
            pgid = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError, OSError):
            pid_file.unlink(missing_ok=True)
            continue
        if _group_alive(pgid):
            stop_group(pgid, timeout=timeout)
            stopped.append(pid_file.stem)
        pid_file.unlink(missing_ok=True)
    return stopped


def wait_http(url: str, *, timeout: float, procs: Sequence[subprocess.Popen[bytes]] = ()) -> bool:
    """Poll ``url`` until it answers 2xx/3xx; False on timeout or when a watched process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback URL)
                if resp.status < 400:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
