"""A standalone writer process for crash and concurrency tests (run with spawn or as a script).

``python -m tests.reliability.writer STORE MACHINE GENERATION [LOOPS]`` overwrites one
machine-day of table ``rel/t`` with rows whose ``value`` equals the generation number.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from meshinsights.model import TELEMETRY_SCHEMA, Window
from meshinsights.store import DeltaStore

DAY = Window.parse("2024-01-01", "2024-01-02")
ROWS = 1440


def rows(machine: str, generation: int) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=ROWS, freq="1min", tz="UTC")
    return pd.DataFrame({"machine_id": machine, "ts": ts, "metric": "temperature",
                         "value": np.full(ROWS, float(generation)), "unit": "degC",
                         "ingested_at": ts})


def write(root: str, machine: str, generation: int) -> int:
    result = DeltaStore(root).overwrite("rel", "t", rows(machine, generation), machine_ids=machine,
                                        window=DAY, schema=TELEMETRY_SCHEMA,
                                        metadata={"meshinsights.generation": generation})
    return result.version


def main() -> None:
    root, machine, generation = sys.argv[1], sys.argv[2], int(sys.argv[3])
    loops = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    for i in range(loops):
        write(root, machine, generation + i)
        print(generation + i, flush=True)


if __name__ == "__main__":
    main()
