"""Derivatives and norms: rate of change, acceleration and distance travelled, null-aware.

A step across a gap (a null on either side, or more than ``max_step`` between samples) has
an unknown rate — null, never zero — and adds nothing to the distance; the distance column is
null on such rows too, so a reader can tell "did not move" from "do not know".
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, empty_frame, in_window
from meshinsights.steps.params import Duration
from meshinsights.steps.registry import step

__all__ = ["derivatives", "FEATURES_SCHEMA"]

logger = logging.getLogger(__name__)

FEATURES_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("rate", pa.float64()),
        ("accel", pa.float64()),
        ("distance", pa.float64()),
    ]
)


def _wide(clean: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    rows = clean[clean["metric"].isin(metrics)]
    wide = rows.pivot_table(
        index="ts", columns="metric", values="value", aggfunc="mean", dropna=False
    )
    return wide.reindex(columns=metrics).sort_index()


def _rates(
    wide: pd.DataFrame, per: pd.Timedelta, max_step: pd.Timedelta
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    dt = wide.index.to_series().diff()
    ok = (dt > pd.Timedelta(0)) & (dt <= max_step)
    units = (dt / per).where(ok).to_numpy()
    delta = wide.diff()
    rate = delta.div(units, axis=0)
    accel = rate.diff().div(units, axis=0)
    return delta.where(ok, axis=0), rate, accel.where(ok, axis=0)


def _features(
    wide: pd.DataFrame,
    delta: pd.DataFrame,
    rate: pd.DataFrame,
    accel: pd.DataFrame,
    inside: np.ndarray,
) -> pd.DataFrame:
    parts = []
    for metric in wide.columns:
        step_len = delta[metric].abs().where(inside)
        parts.append(
            _frame(wide.index, metric, wide[metric], rate[metric], accel[metric], step_len)
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _frame(
    index: pd.Index,
    metric: str,
    value: pd.Series,
    rate: pd.Series,
    accel: pd.Series,
    step_len: pd.Series,
) -> pd.DataFrame:
    # Cumulative over known steps; null where this row's own step is unknown.
    distance = step_len.fillna(0.0).cumsum().where(step_len.notna())
    return pd.DataFrame(
        {
            "ts": index,
            "metric": metric,
            "value": value.to_numpy(),
            "rate": rate.to_numpy(),
            "accel": accel.to_numpy(),
            "distance": distance.to_numpy(),
        }
    )


@step(inputs=["clean"], output="features", schema=FEATURES_SCHEMA)
def derivatives(
    clean: pd.DataFrame,
    *,
    metrics: list[str] | None = None,
    per: Duration = "1min",
    max_step: Duration = "5min",
    norm_of: list[str] | None = None,
    norm_name: str = "norm",
    window: Window | None = None,
) -> pd.DataFrame:
    """Per metric: value, rate (per ``per``), acceleration and distance travelled in the window.

    ``norm_of`` adds a row per time for the Euclidean norm of those metrics (value = magnitude,
    rate = speed, distance = path length); it is null if any component is.
    """
    if clean.empty:
        return empty_frame(FEATURES_SCHEMA)
    names = metrics or sorted(clean["metric"].unique())
    wide = _wide(clean, sorted(set(names) | set(norm_of or [])))
    delta, rate, accel = _rates(wide, pd.Timedelta(per), pd.Timedelta(max_step))
    # Distance counts steps whose *end* lies in the run window, so windows add up exactly.
    idx = wide.index
    inside = (
        np.ones(len(idx), dtype=bool)
        if window is None
        else ((idx >= pd.Timestamp(window.start)) & (idx < pd.Timestamp(window.end)))
    )
    keep = [m for m in names if m in wide.columns]
    out = _features(wide[keep], delta[keep], rate[keep], accel[keep], inside)
    if norm_of:
        comps = list(norm_of)

        def norm(df: pd.DataFrame) -> pd.Series:
            return np.sqrt((df[comps] ** 2).sum(axis=1, min_count=len(comps)))

        step_len = norm(delta).where(inside)
        out = pd.concat(
            [out, _frame(idx, norm_name, norm(wide), norm(rate), norm(accel), step_len)],
            ignore_index=True,
        )
    out["ts"] = out["ts"].astype(UTC_US)
    out = in_window(out, window)
    return out.sort_values(["ts", "metric"], kind="stable").reset_index(drop=True)
