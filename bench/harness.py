"""Benchmark plumbing: interleaved timing, medians, result rows and the machine description.

Every figure is measured within one run with interleaved repetitions (A, B, A, B, ...) and
reported as the median, so a noisy neighbour slows both sides alike instead of deciding the
result.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "Bench",
    "Row",
    "interleaved",
    "median",
    "machine_info",
    "run_child",
    "quiet_env",
]

REPO = Path(__file__).resolve().parent.parent
MIN_REPS = 5


@dataclass
class Row:
    """One reported figure: a value with its unit and, if the issue sets one, a target."""

    metric: str
    value: float | int | str | None
    unit: str = ""
    target: str = ""
    ok: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "ok": self.ok,
        }


@dataclass
class Bench:
    """What one benchmark returns: its figures, the raw medians behind them, and notes."""

    name: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(
        self, metric: str, value: Any, unit: str = "", target: str = "", ok: bool | None = None
    ) -> None:
        if isinstance(value, float):
            value = round(value, 4)
        self.rows.append(Row(metric, value, unit, target, ok))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "params": self.params,
            "rows": [r.as_dict() for r in self.rows],
            "samples": self.samples,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    reps: int,
    *,
    warmup: int = 1,
    before: Callable[[str, int], None] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each variant over ``reps`` rounds run A, B, A, B, ... (after warm-up).

    ``before(name, rep)`` runs untimed ahead of each call (e.g. to reset a table).
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(-warmup, reps):
        for name, fn in variants.items():
            if before is not None:
                before(name, rep)
            t = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - t
            if rep >= 0:
                times[name].append(elapsed)
    return times


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except Exception:  # not installed: say so rather than fail the run
        return "n/a"


def machine_info() -> dict[str, Any]:
    """The machine and library versions, as recorded in BENCHMARKS.md."""
    mem = ""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        mem = subprocess.run(["free", "-h"], capture_output=True, text=True, check=True).stdout
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "free_h": mem.strip(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "deltalake": _version("deltalake"),
        "duckdb": _version("duckdb"),
        "pandas": _version("pandas"),
        "pyarrow": _version("pyarrow"),
        "numpy": _version("numpy"),
    }


def quiet_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: no GenAI key (offline analyst), repo on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY",)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def run_child(
    module: str, args: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh interpreter (never a fork); parse its JSON line.

    A fresh interpreter gives a clean peak RSS per run and keeps deltalake's runtime out of
    any forked process.
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=quiet_env(env),
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not last:
        raise RuntimeError(f"{module} printed no JSON result; stderr:\n{proc.stderr[-2000:]}")
    return json.loads(last[-1])


def fresh_dir(path: Path) -> Path:
    """An empty directory at ``path`` (removed first if it exists)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
