"""Benchmark 8 — the data API: rows/s for one machine-day and one machine-month of telemetry
through ``meshinsights serve`` (JSON and Arrow, every page followed, decoded by the client)
against the same rows read with DuckDB directly (``ArtifactSQL``, the engine of
``meshinsights sql``, warm). Results are checked equal (row count and value sum) before timing.

The server runs in a spawned process (its own interpreter: no fork after deltalake, and the
client does not share its GIL), as a notebook user would reach it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.harness import REPO, Bench, fresh_dir, interleaved, median, quiet_env

__all__ = ["bench_api"]

PIPELINE = "bench"
MACHINE = "m-000"
METRICS = ("temperature", "humidity", "power_kw", "return_temperature")
START = datetime(2024, 1, 1, tzinfo=UTC)


def _seed(root: Path, *, machines: int, days: int) -> None:
    """1-minute telemetry, 4 metrics, ``machines`` machines, one commit per day (as ingest)."""
    from meshinsights.model import TELEMETRY_SCHEMA, Window
    from meshinsights.store import DeltaStore

    store = DeltaStore(str(root))
    ids = [f"m-{i:03d}" for i in range(machines)]
    rng = np.random.default_rng(7)
    for d in range(days):
        day = Window(START + timedelta(days=d), START + timedelta(days=d + 1))
        ts = pd.date_range(day.start, day.end, freq="1min", inclusive="left")
        n = len(ts) * len(METRICS)
        frames = [
            pd.DataFrame(
                {
                    "machine_id": m,
                    "ts": np.repeat(ts, len(METRICS)),
                    "metric": np.tile(METRICS, len(ts)),
                    "value": rng.normal(20, 3, n).round(3),
                    "unit": "u",
                    "ingested_at": np.repeat(ts + pd.Timedelta(minutes=1), len(METRICS)),
                }
            )
            for m in ids
        ]
        store.overwrite(
            PIPELINE,
            "telemetry",
            pd.concat(frames, ignore_index=True),
            machine_ids=ids,
            window=day,
            schema=TELEMETRY_SCHEMA,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path, key: str, days: int) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    env = quiet_env({"MESHINSIGHTS_API_KEYS": key})
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "meshinsights.cli", "--store", str(root), "serve",
            "--port", str(port), "--max-range-days", str(days), "--catalog-ttl", "3600",
        ],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("serve did not answer /health within 120 s")


def _fetch(client: Any, window: tuple[str, str], fmt: str) -> tuple[int, float]:
    """Every page of the machine's telemetry in ``window``: (rows, sum of value)."""
    import pyarrow as pa

    rows, total, token = 0, 0.0, None
    params: dict[str, Any] = {"start": window[0], "end": window[1], "limit": 100_000}
    while True:
        query = {**params, "format": fmt, **({"page_token": token} if token else {})}
        resp = client.get(f"/v1/machines/{MACHINE}/telemetry", params=query)
        resp.raise_for_status()
        if fmt == "arrow":
            table = pa.ipc.open_stream(resp.content).read_all()
            rows += table.num_rows
            total += float(pa.compute.sum(table.column("value")).as_py() or 0.0)
            token = resp.headers.get("x-next-page-token")
        else:
            body = resp.json()
            rows += len(body["rows"])
            total += sum(r["value"] for r in body["rows"] if r["value"] is not None)
            token = body["next_page_token"]
        if not token:
            return rows, total


def _duck(engine: Any, window: tuple[str, str]) -> tuple[int, float]:
    import pyarrow.compute as pc

    table = engine.execute(
        f"SELECT * EXCLUDE (month) FROM {PIPELINE}__telemetry WHERE machine_id = '{MACHINE}' "
        f"AND ts >= TIMESTAMPTZ '{window[0]}' AND ts < TIMESTAMPTZ '{window[1]}' "
        "ORDER BY ts, metric"
    )
    return table.num_rows, float(pc.sum(table.column("value")).as_py() or 0.0)


def bench_api(workdir: Path, *, quick: bool = False) -> Bench:
    import httpx

    from meshinsights.store import DeltaStore
    from meshinsights.store.sql import ArtifactSQL

    machines = 3 if quick else int(os.environ.get("BENCH_API_MACHINES", "10"))
    days = 7 if quick else 31
    reps = 3 if quick else 5
    bench = Bench(
        "api",
        "Data API rows/s vs DuckDB direct",
        params={"machines": machines, "days": days, "reps": reps, "metrics": len(METRICS)},
    )
    root = fresh_dir(workdir / "store") / "artifacts"
    t = time.perf_counter()
    _seed(root, machines=machines, days=days)
    bench.notes.append(
        f"seeded {machines} machines x {days} days in {time.perf_counter() - t:.1f} s"
    )
    ranges = {
        "day": (START.isoformat(), (START + timedelta(days=1)).isoformat()),
        "month": (START.isoformat(), (START + timedelta(days=days)).isoformat()),
    }
    key = secrets.token_urlsafe(24)
    proc, url = _start(root, key, days)
    try:
        with (
            httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600) as client,
            ArtifactSQL(DeltaStore(str(root))) as engine,
        ):
            for name, window in ranges.items():
                expected = _duck(engine, window)
                for fmt in ("json", "arrow"):
                    got = _fetch(client, window, fmt)
                    if got[0] != expected[0] or abs(got[1] - expected[1]) > 1e-6 * abs(expected[1]):
                        raise AssertionError(f"{name} {fmt}: API {got} != DuckDB {expected}")
                times = interleaved(
                    {
                        "json": lambda w=window: _fetch(client, w, "json"),
                        "arrow": lambda w=window: _fetch(client, w, "arrow"),
                        "duckdb": lambda w=window: _duck(engine, w),
                    },
                    reps,
                )
                bench.samples[name] = times
                n = expected[0]
                med = {k: median(v) for k, v in times.items()}
                bench.add(f"one machine-{name}: rows", n)
                for k in ("json", "arrow", "duckdb"):
                    bench.add(f"one machine-{name}: {k}", n / med[k], "rows/s")
                    bench.add(f"one machine-{name}: {k} time", med[k] * 1000, "ms")
                for k in ("json", "arrow"):
                    bench.add(
                        f"one machine-{name}: {k} time / DuckDB time", med[k] / med["duckdb"], "x"
                    )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return bench
