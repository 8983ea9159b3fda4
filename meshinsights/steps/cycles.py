"""Compressor cycle detection from power: stage segments, their filtering and per-stage medians.

A *cycle* here is a maximal run of grid samples at one stage (0 = off, 1, 2, ... by
``stage_edges``). A cycle is recorded when it ends — its ``ts`` is the end time and
``start_ts`` the start — so a cycle crossing a window boundary is reported once, complete, by
the window it ends in (give the step a ``lookback`` longer than the longest cycle). A cycle
next to a gap or at the start of the data has an unknown length: ``complete`` is false.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, empty_frame, in_window, infer_step, runs
from meshinsights.steps.params import NonNegative, Positive
from meshinsights.steps.registry import step

__all__ = [
    "detect_cycles",
    "cycle_medians",
    "stage_of",
    "filter_cycles",
    "CYCLES_SCHEMA",
    "CYCLE_STATS_SCHEMA",
]

logger = logging.getLogger(__name__)

CYCLES_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # end of the cycle (exclusive): when it was known to be over
        ("start_ts", TS),
        ("metric", pa.string()),
        ("stage", pa.int64()),
        ("duration_min", pa.float64()),
        ("n_samples", pa.int64()),
        ("median", pa.float64()),
        ("mean", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("complete", pa.bool_()),
        ("valid", pa.bool_()),
        ("reject_reason", pa.string()),
    ]
)

CYCLE_STATS_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # window start
        ("stage", pa.int64()),
        ("n_cycles", pa.int64()),
        ("n_rejected", pa.int64()),
        ("median", pa.float64()),
        ("mad", pa.float64()),
        ("cv", pa.float64()),
        ("median_duration_min", pa.float64()),
        ("total_minutes", pa.float64()),
        ("cycles_per_hour", pa.float64()),
    ]
)


def stage_of(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Stage per sample: the number of edges at or below the value; -1 where it is null."""
    v = np.asarray(values, dtype="float64")
    stage = np.searchsorted(np.asarray(sorted(edges), dtype="float64"), v, side="right")
    return np.where(np.isnan(v), -1, stage).astype("int64")


def _segments(s: pd.Series, edges: list[float], step: pd.Timedelta) -> pd.DataFrame:
    """One row per run of equal stage that ends before the data does (loop-free).

    Per-run statistics come from one groupby over run numbers and the completeness flags from
    array comparisons: 9.5x faster than the former Python loop over runs (bench: engine).
    """
    values = s.to_numpy(dtype="float64")
    ts = s.index
    stage = stage_of(values, edges)
    starts, lengths = runs(stage)
    after = starts + lengths
    stats = (
        pd.Series(values)
        .groupby(np.repeat(np.arange(len(starts)), lengths))
        .agg(["median", "mean", "min", "max"])
    )
    # Unknown stage (gap/NaN) is no cycle; a run still going at the end of the data is
    # reported by the next window.
    keep = (stage[starts] >= 0) & (after < len(values))
    starts, lengths, after = starts[keep], lengths[keep], after[keep]
    stats = stats[keep].reset_index(drop=True)
    prev = np.maximum(starts - 1, 0)
    known_before = (starts > 0) & (ts[starts] - ts[prev] <= step) & (stage[prev] >= 0)
    known_after = (stage[after] >= 0) & (ts[after] - ts[after - 1] <= step)
    out = pd.DataFrame(
        {
            "ts": ts[after - 1] + step,
            "start_ts": ts[starts],
            "stage": stage[starts].astype("int64"),
            "duration_min": lengths * (step / pd.Timedelta(minutes=1)),
            "n_samples": lengths.astype("int64"),
        }
    )
    out[["median", "mean", "min", "max"]] = stats.to_numpy(dtype="float64")
    out["complete"] = np.asarray(known_before & known_after, dtype=bool)
    return out


def filter_cycles(cycles: pd.DataFrame, *, min_minutes: float, max_minutes: float) -> pd.DataFrame:
    """Mark cycles valid or give the reason: incomplete, too_short, or too_long (on-stages only)."""
    out = cycles.copy()
    reason = pd.Series(None, index=out.index, dtype=object)
    reason = reason.mask(out["duration_min"] < min_minutes, "too_short")
    reason = reason.mask((out["stage"] > 0) & (out["duration_min"] > max_minutes), "too_long")
    reason = reason.mask(~out["complete"].astype(bool), "incomplete")
    out["valid"] = reason.isna()
    out["reject_reason"] = reason
    return out


@step(inputs=["clean"], output="cycles", schema=CYCLES_SCHEMA)
def detect_cycles(
    clean: pd.DataFrame,
    *,
    metric: str = "power_kw",
    stage_edges: tuple[float, ...] | list[float] = (1.5, 4.5),
    min_minutes: NonNegative = 3.0,
    max_minutes: Positive = 240.0,
    window: Window | None = None,
) -> pd.DataFrame:
    """One row per stage segment of ``metric`` that ended in the window, flagged valid or not."""
    rows = clean[clean["metric"] == metric] if not clean.empty else clean
    if rows.empty:
        return empty_frame(CYCLES_SCHEMA)
    rows = rows.sort_values("ts", kind="stable")
    s = pd.Series(
        rows["value"].to_numpy(dtype="float64", na_value=np.nan), index=pd.DatetimeIndex(rows["ts"])
    )
    seg = _segments(s, list(stage_edges), infer_step(rows["ts"]))
    if seg.empty:
        return empty_frame(CYCLES_SCHEMA)
    seg.insert(2, "metric", metric)
    seg = filter_cycles(seg, min_minutes=min_minutes, max_minutes=max_minutes)
    for col in ("ts", "start_ts"):
        seg[col] = seg[col].astype(UTC_US)
    return in_window(seg, window)


@step(inputs=["cycles"], output="cycle_stats", schema=CYCLE_STATS_SCHEMA)
def cycle_medians(cycles: pd.DataFrame, *, window: Window) -> pd.DataFrame:
    """Per stage: valid-cycle count, median of cycle medians, MAD, CV, durations, cycle rate."""
    if cycles.empty:
        return empty_frame(CYCLE_STATS_SCHEMA)
    hours = (window.end - window.start).total_seconds() / 3600.0
    out = []
    for stage, group in cycles.groupby("stage", sort=True):
        valid = group[group["valid"].astype(bool)]
        med = valid["median"].astype("float64")
        center = float(med.median()) if len(med) else np.nan
        mean = float(med.mean()) if len(med) else np.nan
        out.append(
            {
                "ts": pd.Timestamp(window.start),
                "stage": int(stage),
                "n_cycles": len(valid),
                "n_rejected": int(len(group) - len(valid)),
                "median": center,
                "mad": float((med - center).abs().median()) if len(med) else np.nan,
                "cv": float(med.std(ddof=1) / mean) if len(med) > 1 and mean else np.nan,
                "median_duration_min": float(valid["duration_min"].median())
                if len(valid)
                else np.nan,
                "total_minutes": float(group["duration_min"].sum()),
                "cycles_per_hour": float(group["complete"].astype(bool).sum() / hours),
            }
        )
    frame = pd.DataFrame(out)
    frame["ts"] = frame["ts"].astype(UTC_US)
    return frame
