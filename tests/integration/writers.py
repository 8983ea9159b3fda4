"""A writer process for the concurrency tests (imported by ``spawn`` children, never forked)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd


def write_machine(args: tuple[str, dict[str, str], str, int]) -> list[int]:
    """Overwrite two daily windows of one machine in the shared table; returns the versions."""
    from meshinsights.model import Window
    from meshinsights.store import DeltaStore

    root, options, machine, n_rows = args
    store = DeltaStore(root, storage_options=options)
    versions = []
    for day in (1, 2):
        start = datetime(2024, 1, day, tzinfo=UTC)
        frame = pd.DataFrame({
            "machine_id": machine,
            "ts": pd.date_range(start, periods=n_rows, freq="1min", tz="UTC"),
            "value": [float(i) for i in range(n_rows)],
        })
        result = store.overwrite("shared", "readings", frame, machine_ids=machine,
                                 window=Window(start, start + timedelta(days=1)),
                                 metadata={"meshinsights.run_id": f"{machine}-{day}"})
        versions.append(result.version)
    return versions
