"""Resampling to a fixed time grid with explicit gaps, and rolling statistics over that grid.

The grid is the contract the later steps rely on: one row per metric and grid time over the
whole run window, ``value`` null where nothing was observed and the gap was too long to fill,
``n_obs`` the number of raw samples behind the cell and ``filled`` marking filled cells.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, empty_frame, in_window, runs, window_bounds
from meshinsights.steps.params import Count, Duration, PositiveInt
from meshinsights.steps.registry import step

__all__ = ["resample", "rolling_stats", "fill_short_gaps", "CLEAN_SCHEMA", "ROLLING_SCHEMA"]

logger = logging.getLogger(__name__)

CLEAN_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("n_obs", pa.int64()),
        ("filled", pa.bool_()),
    ]
)

ROLLING_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("metric", pa.string()),
        ("mean", pa.float64()),
        ("std", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("median", pa.float64()),
        ("count", pa.int64()),
    ]
)

Fill = Literal["ffill", "linear", "none"]


def fill_short_gaps(values: pd.Series, *, limit: int, method: Fill) -> pd.Series:
    """Fill only interior runs of nulls of at most ``limit`` cells; longer gaps stay null.

    Unlike ``Series.interpolate(limit=...)``, which fills the first ``limit`` cells of any
    gap, a long gap is left entirely empty, and gaps at either end (whose length is unknown)
    are never filled.
    """
    if method == "none" or limit <= 0 or not values.isna().any():
        return values
    isna = values.isna().to_numpy()
    starts, lengths = runs(isna)
    fillable = np.zeros(len(values), dtype=bool)
    for s, n in zip(starts, lengths, strict=True):
        if isna[s] and n <= limit and s > 0 and s + n < len(values):
            fillable[s : s + n] = True
    if not fillable.any():
        return values
    if method == "ffill":
        candidate = values.ffill()
    else:
        candidate = values.interpolate(
            method="index" if isinstance(values.index, pd.DatetimeIndex) else "linear",
            limit_area="inside",
        )
    return values.where(~fillable, candidate)


def _grid(start: pd.Timestamp, end: pd.Timestamp, freq: str) -> pd.DatetimeIndex:
    first = start.floor(freq)
    return pd.date_range(first, end, freq=freq, inclusive="left", unit="us")


def _one_metric(
    rows: pd.DataFrame, grid: pd.DatetimeIndex, *, freq: str, agg: str, fill: Fill, fill_limit: int
) -> pd.DataFrame:
    bucket = rows["ts"].dt.floor(freq)
    observed = rows["value"].notna()
    grouped = rows.loc[observed, "value"].groupby(bucket[observed])
    values = grouped.agg(agg).reindex(grid)
    n_obs = grouped.size().reindex(grid, fill_value=0).astype("int64")
    filled_values = fill_short_gaps(values, limit=fill_limit, method=fill)
    return pd.DataFrame(
        {
            "ts": grid,
            "value": filled_values.to_numpy(dtype="float64"),
            "n_obs": n_obs.to_numpy(),
            "filled": (values.isna() & filled_values.notna()).to_numpy(),
        }
    )


@step(inputs=["telemetry"], output="clean", schema=CLEAN_SCHEMA)
def resample(
    telemetry: pd.DataFrame,
    *,
    freq: Duration = "1min",
    agg: Literal["mean", "median", "last", "max", "min"] = "mean",
    fill: Fill = "ffill",
    fill_limit: Count = 5,
    metrics: list[str] | None = None,
    window: Window | None = None,
) -> pd.DataFrame:
    """Long telemetry onto a fixed grid; gaps of up to ``fill_limit`` cells filled, longer null."""
    if telemetry.empty and not metrics:
        return empty_frame(CLEAN_SCHEMA)
    start, end = window_bounds(window, telemetry["ts"])
    data_start = telemetry["ts"].min() if not telemetry.empty else start
    # Read-back (lookback) rows before the window let a gap at the window start be filled.
    grid = _grid(min(start, data_start), end, freq)
    names = metrics if metrics is not None else sorted(set(telemetry["metric"]))
    parts = []
    for metric in names:
        rows = telemetry.loc[telemetry["metric"] == metric, ["ts", "value", "unit"]]
        part = _one_metric(rows, grid, freq=freq, agg=agg, fill=fill, fill_limit=fill_limit)
        units = rows["unit"].dropna()
        part.insert(1, "metric", metric)
        part.insert(3, "unit", units.iloc[0] if len(units) else None)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True) if parts else empty_frame(CLEAN_SCHEMA)
    out = in_window(out, window) if window is not None else out
    return out.sort_values(["ts", "metric"], kind="stable").reset_index(drop=True)


@step(inputs=["clean"], output="rolling", schema=ROLLING_SCHEMA)
def rolling_stats(
    clean: pd.DataFrame,
    *,
    span: Duration = "15min",
    min_count: PositiveInt = 5,
    metrics: list[str] | None = None,
    include_filled: bool = False,
    window: Window | None = None,
) -> pd.DataFrame:
    """Trailing time-based mean, std, min, max and median per metric over ``span``.

    Null cells (and, unless ``include_filled``, filled cells) do not count; a statistic over
    fewer than ``min_count`` observed cells is null rather than a guess.
    """
    if clean.empty:
        return empty_frame(ROLLING_SCHEMA)
    parts = []
    for metric in metrics or sorted(clean["metric"].unique()):
        rows = clean.loc[clean["metric"] == metric].sort_values("ts", kind="stable")
        value = rows["value"].astype("float64")
        if not include_filled and "filled" in rows:
            value = value.where(~rows["filled"].astype(bool))
        s = pd.Series(value.to_numpy(), index=pd.DatetimeIndex(rows["ts"]))
        r = s.rolling(span, min_periods=min_count)
        part = pd.DataFrame(
            {"mean": r.mean(), "std": r.std(), "min": r.min(), "max": r.max(), "median": r.median()}
        )
        part["count"] = s.notna().astype("int64").rolling(span).sum().astype("int64")
        part = part.reset_index(names="ts")
        part.insert(1, "metric", metric)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = out["ts"].astype(UTC_US)
    out = in_window(out, window)
    return out.sort_values(["ts", "metric"], kind="stable").reset_index(drop=True)
