"""Declarative per-metric validation (range, maximum rate of change); failures → quarantine."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from meshinsights.model import Window
from meshinsights.normalize.common import empty_quarantine, quarantine_frame, rule_value

__all__ = ["apply_rules", "RATE_RESET"]

logger = logging.getLogger(__name__)

#: Consecutive rate-rule rejections after which the new level is accepted as real.
RATE_RESET = 3


def apply_rules(
    df: pd.DataFrame,
    rules: Mapping[str, Any],
    *,
    machine_id: str,
    window: Window,
    original: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-metric range and rate-of-change rules; failing rows move to quarantine."""
    bad_parts: list[pd.DataFrame] = []
    keep = pd.Series(True, index=df.index)

    def _move(idx: pd.Index, rule: str, reason: str) -> None:
        rows = df.loc[idx]
        orig = None
        if original is not None and "_row" in rows.columns:
            orig = original.loc[rows["_row"]].set_axis(rows.index)
        bad_parts.append(
            quarantine_frame(
                rows, rule=rule, reason=reason, machine_id=machine_id, window=window, original=orig
            )
        )
        keep[idx] = False

    for metric, rule in rules.items():
        sel = df["metric"] == metric
        if not sel.any():
            continue
        vals = df.loc[sel, "value"]
        lo, hi = rule_value(rule, "min"), rule_value(rule, "max")
        out = pd.Series(False, index=vals.index)
        if lo is not None:
            out |= vals < lo
        if hi is not None:
            out |= vals > hi
        if out.any():
            _move(out[out].index, f"{metric}.range", f"{metric} outside [{lo}, {hi}]")
        rate = rule_value(rule, "max_rate_per_min")
        if rate is not None:
            sub = df.loc[sel & keep, ["ts", "value"]].sort_values("ts", kind="stable")
            jumps = _rate_violations(sub, float(rate))
            if len(jumps):
                _move(
                    jumps,
                    f"{metric}.rate",
                    f"{metric} changed faster than {rate}/min "
                    "relative to the previous accepted reading",
                )
    bad = pd.concat(bad_parts, ignore_index=True) if bad_parts else empty_quarantine()
    return df[keep], bad


def _rate_violations(sub: pd.DataFrame, rate: float) -> pd.Index:
    """Rows whose change from the previous accepted reading exceeds ``rate`` per minute."""
    if len(sub) < 2:
        return sub.index[:0]
    t = (sub["ts"] - sub["ts"].iloc[0]).dt.total_seconds().to_numpy() / 60.0
    v = sub["value"].to_numpy(dtype="float64")
    dt = np.diff(t)
    step = np.abs(np.diff(v)) > rate * np.where(dt > 0, dt, np.inf)
    candidates = np.flatnonzero(step) + 1
    if not len(candidates):
        return sub.index[:0]
    bad: list[int] = []
    ref, streak, pos = candidates[0] - 1, 0, 0
    i = candidates[0]
    while i < len(v):
        minutes = t[i] - t[ref]
        if minutes > 0 and abs(v[i] - v[ref]) > rate * minutes:
            bad.append(i)
            streak += 1
            if streak >= RATE_RESET:  # a sustained new level is real, not a spike
                ref, streak = i, 0
            i += 1
            continue
        ref, streak = i, 0
        # Between candidates every step is within the rate and the reference is current:
        # nothing can fail there, so jump to the next candidate.
        while pos < len(candidates) and candidates[pos] <= i:
            pos += 1
        if pos == len(candidates):
            break
        nxt = candidates[pos]
        if nxt > i + 1:
            ref, i = nxt - 1, nxt
        else:
            i += 1
    return sub.index[bad]
