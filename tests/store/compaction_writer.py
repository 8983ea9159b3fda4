"""Writer and compactor processes for the compaction stress tests (spawned, never forked).

A writer writes ``n`` one-row windows of one machine, each twice ("running" then "done", as
the run listener does), into one machine-month partition; a compactor runs maintenance
compaction of that table in a loop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def write_rows(root: str, writer: int, n: int, bound: int, pause: float = 0.0) -> None:
    """``bound``: the writers' auto compaction (0 = off); ``pause``: seconds between writes."""
    import time

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
            time.sleep(pause)


def compact_until(root: str, stop_file: str, max_rounds: int) -> None:
    """Run maintenance compaction of ns/runs over and over until ``stop_file`` exists.

    Touches ``<stop_file>.ready`` once imported (the test starts the writers then), and
    never stops before it has compacted at least once.
    """
    import os
    import time

    from meshinsights.store import DeltaStore

    store = DeltaStore(root, auto_compact_files=0)
    open(stop_file + ".ready", "w").close()
    compacted = False
    for _ in range(max_rounds):
        if compacted and os.path.exists(stop_file):
            return
        if store.exists("ns", "runs"):
            compacted = store.compact("ns", "runs")["commits"] > 0 or compacted
        time.sleep(0.01)
