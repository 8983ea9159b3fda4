"""Day-one steps: hourly average temperature and a per-window summary of every metric."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps.params import Duration
from meshinsights.steps.registry import step

__all__ = ["average_temperature", "window_summary", "AGG_SCHEMA", "SUMMARY_SCHEMA"]

AGG_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("metric", pa.string()),
        ("mean", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("count", pa.int64()),
    ]
)

SUMMARY_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("window_end", TS),
        ("metric", pa.string()),
        ("unit", pa.string()),
        ("count", pa.int64()),
        ("mean", pa.float64()),
        ("std", pa.float64()),
        ("min", pa.float64()),
        ("p50", pa.float64()),
        ("max", pa.float64()),
        ("first_ts", TS),
        ("last_ts", TS),
    ]
)


@step(inputs=["telemetry"], output="temperature_hourly", schema=AGG_SCHEMA)
def average_temperature(
    telemetry: pd.DataFrame, *, metric: str = "temperature", freq: Duration = "1h"
) -> pd.DataFrame:
    """Mean, min, max and sample count of one metric per time bucket (default: hourly)."""
    rows = telemetry.loc[telemetry["metric"] == metric, ["ts", "value"]].dropna(subset=["value"])
    if rows.empty:
        return pd.DataFrame(columns=[c for c in AGG_SCHEMA.names if c != "machine_id"])
    grouped = rows.groupby(rows["ts"].dt.floor(freq))["value"]
    out = grouped.agg(["mean", "min", "max", "count"]).reset_index()
    out.insert(1, "metric", metric)
    return out


@step(inputs=["telemetry"], output="summary", schema=SUMMARY_SCHEMA)
def window_summary(telemetry: pd.DataFrame, window: Window) -> pd.DataFrame:
    """One row per metric for the window: count, mean, spread and the time covered."""
    if telemetry.empty:
        return pd.DataFrame(columns=[c for c in SUMMARY_SCHEMA.names if c != "machine_id"])
    grouped = telemetry.groupby("metric", sort=True)
    out = grouped["value"].agg(
        count="count", mean="mean", std="std", min="min", p50="median", max="max"
    )
    out["unit"] = grouped["unit"].agg(lambda s: s.dropna().iloc[0] if s.notna().any() else None)
    out["first_ts"] = grouped["ts"].min()
    out["last_ts"] = grouped["ts"].max()
    out = out.reset_index()
    out["ts"] = pd.Timestamp(window.start)
    out["window_end"] = pd.Timestamp(window.end)
    return out[[c for c in SUMMARY_SCHEMA.names if c != "machine_id"]]
