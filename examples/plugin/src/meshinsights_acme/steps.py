"""The plugin's step: each metric's daily range (max - min) and reading count."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from meshinsights.model import TS
from meshinsights.steps.registry import step

__all__ = ["DAILY_RANGE_SCHEMA", "daily_range"]

DAILY_RANGE_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("metric", pa.string()),
        ("range", pa.float64()),
        ("count", pa.int64()),
    ]
)


@step(inputs=["telemetry"], output="daily_range", schema=DAILY_RANGE_SCHEMA)
def daily_range(telemetry: pd.DataFrame) -> pd.DataFrame:
    """Max minus min of each metric per day, with the number of readings."""
    rows = telemetry.dropna(subset=["value"])
    if rows.empty:
        return pd.DataFrame(columns=[c for c in DAILY_RANGE_SCHEMA.names if c != "machine_id"])
    grouped = rows.groupby([rows["ts"].dt.floor("1D"), "metric"])["value"]
    out = grouped.agg(["max", "min", "count"]).reset_index()
    out["range"] = out["max"] - out["min"]
    return out[["ts", "metric", "range", "count"]]
