"""Small pure helpers shared by the analytics steps (no I/O, no registration)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import Window

__all__ = [
    "empty_frame",
    "in_window",
    "infer_step",
    "runs",
    "window_bounds",
    "dumps",
]

UTC_US = "datetime64[us, UTC]"


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """An empty frame with the schema's columns (minus ``machine_id``, which the runner sets)."""
    return pd.DataFrame(columns=[n for n in schema.names if n != "machine_id"])


def window_bounds(window: Window | None, ts: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` of the run window, or of the data when called without one."""
    if window is not None:
        return pd.Timestamp(window.start), pd.Timestamp(window.end)
    if ts.empty:
        raise ValueError("no window and no data: cannot tell which period to process")
    return ts.min(), ts.max() + pd.Timedelta(microseconds=1)


def in_window(df: pd.DataFrame, window: Window | None, column: str = "ts") -> pd.DataFrame:
    """Rows whose ``column`` lies in the run window (all rows when there is no window)."""
    if window is None or df.empty:
        return df.reset_index(drop=True)
    ts = df[column]
    keep = (ts >= pd.Timestamp(window.start)) & (ts < pd.Timestamp(window.end))
    return df[keep].reset_index(drop=True)


def infer_step(ts: pd.Series, default: str = "1min") -> pd.Timedelta:
    """The sampling step of a regular series: the most common positive difference."""
    diffs = pd.Series(ts).sort_values().diff().dropna()
    diffs = diffs[diffs > pd.Timedelta(0)]
    if diffs.empty:
        return pd.Timedelta(default)
    return pd.Timedelta(diffs.mode().iloc[0])


def runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of runs of equal consecutive values (NaN equals NaN here)."""
    n = len(values)
    if n == 0:
        return np.array([], dtype=int), np.array([], dtype=int)
    v = np.asarray(values)
    same = v[1:] == v[:-1]
    if v.dtype.kind == "f":
        same |= np.isnan(v[1:]) & np.isnan(v[:-1])
    starts = np.concatenate([[0], np.flatnonzero(~same) + 1])
    lengths = np.diff(np.concatenate([starts, [n]]))
    return starts, lengths


def dumps(evidence: dict[str, Any]) -> str:
    """Evidence as compact, stable JSON (timestamps as ISO strings, numpy scalars as numbers)."""

    def _default(o: Any) -> Any:
        if isinstance(o, pd.Timestamp):
            return o.isoformat()
        if isinstance(o, np.generic):
            return o.item()
        return str(o)

    return json.dumps(evidence, default=_default, sort_keys=True, separators=(",", ":"))
