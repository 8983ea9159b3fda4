"""A writer process for the auto-compaction stress test (spawned, never forked).

Writes ``n`` one-row windows of one machine, each twice ("running" then "done", as the run
listener does), into one machine-month partition, with auto compaction on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def write_rows(root: str, writer: int, n: int, bound: int) -> None:
    import pandas as pd

    from meshinsights.model import TELEMETRY_SCHEMA, Window
    from meshinsights.store import DeltaStore

    store = DeltaStore(root, auto_compact_files=bound)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(n):
        ts = base + timedelta(microseconds=writer * 10_000 + i)
        for state in (1.0, 2.0):
            frame = pd.DataFrame(
                {
                    "machine_id": ["m"],
                    "ts": [pd.Timestamp(ts)],
                    "metric": ["state"],
                    "value": [state],
                    "unit": ["-"],
                    "ingested_at": [pd.Timestamp(ts)],
                }
            )
            store.overwrite(
                "ns",
                "runs",
                frame,
                machine_ids="m",
                window=Window(ts, ts + timedelta(microseconds=1)),
                schema=TELEMETRY_SCHEMA,
            )


def compact_until(root: str, stop_file: str, max_rounds: int) -> None:
    """Run maintenance compaction of ns/runs over and over until ``stop_file`` exists."""
    import os
    import time

    from meshinsights.store import DeltaStore

    store = DeltaStore(root)
    for _ in range(max_rounds):
        if os.path.exists(stop_file):
            return
        if store.exists("ns", "runs"):
            store.compact("ns", "runs")
        time.sleep(0.01)
