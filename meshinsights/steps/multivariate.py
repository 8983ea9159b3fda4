"""What the multivariate detectors share: the wide frame, the reference period, the alarm rule
and the output table.

The reference is chosen, in order, from: a fixed ``[reference_start, reference_end)``; the first
``reference_rows`` rows or first ``reference_duration`` of the scored window (the protocol of
benchmarks that fit on the start of each run); the input before the window (the step's
``lookback``); and only then the scored window itself. That last fallback is never silent: it
is logged as a warning and recorded as ``reference = 'window'`` on every row, and
``require_reference: true`` turns it into an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, in_window
from meshinsights.steps.limits import ewma, persistence

__all__ = [
    "MV_ANOMALY_SCHEMA",
    "Reference",
    "AlarmRule",
    "observed_wide",
    "select_reference",
    "contiguous_folds",
    "mv_frame",
]

logger = logging.getLogger(__name__)

MV_ANOMALY_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("t2", pa.float64()),  # null for detectors without a PCA model
        ("q", pa.float64()),
        ("t2_limit", pa.float64()),
        ("q_limit", pa.float64()),
        ("n_components", pa.int64()),
        # fixed | first_rows | first_duration | history | window (the scored window itself)
        ("reference", pa.string()),
        ("top_metric", pa.string()),  # metric contributing most to the statistic that breached
        ("flagged", pa.bool_()),
        ("detector", pa.string()),  # pca | knn | vote
        ("score", pa.float64()),  # smoothed statistic / its limit: above 1 is a breach
        ("breach", pa.bool_()),  # score > 1, before the persistence rule
        ("top_share", pa.float64()),  # top_metric's share of that statistic
        ("in_reference", pa.bool_()),  # the row was part of the fitted reference
    ]
)


@dataclass(frozen=True)
class Reference:
    """The rows a detector is fitted on and where they came from."""

    rows: pd.DataFrame
    source: str


@dataclass(frozen=True)
class AlarmRule:
    """Smoothing of the statistic and the "k of the last n" persistence rule."""

    smoothing: float | None = None
    persist_k: int = 1
    persist_n: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.persist_k <= self.persist_n:
            raise ValueError(
                f"persist_k={self.persist_k} must be between 1 and persist_n={self.persist_n}"
            )

    def smooth(self, x: np.ndarray) -> np.ndarray:
        return ewma(x, self.smoothing)

    def flag(self, score: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``breach`` (score over 1) and ``flagged`` (persistent breach on a scored row)."""
        breach = ok & (np.nan_to_num(score, nan=0.0) > 1.0)
        return breach, ok & persistence(breach, self.persist_k, self.persist_n)


def observed_wide(clean: pd.DataFrame, metrics: list[str] | None) -> pd.DataFrame:
    """One column per metric, filled cells null (they are estimates, not observations)."""
    rows = clean if metrics is None else clean[clean["metric"].isin(metrics)]
    value = rows["value"].where(~rows["filled"].astype(bool)) if "filled" in rows else rows["value"]
    wide = (
        rows.assign(value=value)
        .pivot_table(index="ts", columns="metric", values="value", aggfunc="mean", dropna=False)
        .sort_index()
    )
    return wide.reindex(columns=metrics) if metrics else wide


def _utc(value: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts


def select_reference(
    wide: pd.DataFrame,
    window: Window | None,
    *,
    step: str,
    start: str | None = None,
    end: str | None = None,
    rows: int | None = None,
    duration: str | None = None,
    min_rows: int = 120,
    require: bool = False,
) -> Reference:
    """The reference rows (complete rows only); see the module docstring for the order."""
    complete = wide.dropna()
    if sum(x is not None for x in ((start or end), rows, duration)) > 1:
        raise ValueError(
            f"{step}: give one of reference_start/reference_end, reference_rows or "
            "reference_duration, not several"
        )
    if start or end:
        lo = _utc(start or complete.index.min())
        hi = _utc(end) if end else complete.index.max() + pd.Timedelta(microseconds=1)
        return _enough(
            complete[(complete.index >= lo) & (complete.index < hi)],
            "fixed",
            f"reference period [{lo}, {hi})",
            min_rows,
        )
    if rows is not None or duration is not None:
        scored = in_window(wide.reset_index(), window).set_index("ts")
        if rows is not None:
            head, what, source = scored.iloc[:rows], f"the first {rows} rows", "first_rows"
        else:
            first = scored.index.min() if len(scored) else pd.Timestamp(0, tz="UTC")
            head = scored[scored.index < first + pd.Timedelta(duration)]
            what, source = f"the first {duration}", "first_duration"
        if len(head) == len(scored):
            raise ValueError(
                f"{step}: {what} cover the whole window ({len(scored)} rows), so nothing would "
                "be scored out of sample; shorten the reference or widen the window"
            )
        return _enough(head.dropna(), source, f"{what} of the window", min_rows)
    if window is not None:
        history = complete[complete.index < pd.Timestamp(window.start)]
        if len(history) >= min_rows:
            return Reference(history, "history")
    else:
        history = complete.iloc[:0]
    message = (
        f"{step}: no reference period given and {len(history)} complete rows before the window "
        f"(min_reference_rows={min_rows}); set reference_rows, reference_duration, "
        "reference_start/end or a longer lookback"
    )
    if require:
        raise ValueError(message)
    logger.warning(
        "%s — fitting on the scored window itself (recorded as reference='window')", message
    )
    return Reference(complete, "window")


def _enough(ref: pd.DataFrame, source: str, what: str, min_rows: int) -> Reference:
    if len(ref) < min_rows:
        raise ValueError(
            f"{what} has {len(ref)} complete rows, fewer than min_reference_rows={min_rows}; "
            "widen it or lower the minimum"
        )
    return Reference(ref, source)


def contiguous_folds(n: int, folds: int) -> list[np.ndarray]:
    """Indices 0..n-1 cut into ``folds`` contiguous blocks (autocorrelation stays inside)."""
    if folds < 2:
        raise ValueError(f"calibration_folds={folds} must be at least 2")
    return [b for b in np.array_split(np.arange(n), folds) if len(b)]


def mv_frame(
    index: pd.Index,
    *,
    detector: str,
    reference: Reference,
    score: np.ndarray,
    breach: np.ndarray,
    flagged: np.ndarray,
    top_metric: np.ndarray,
    top_share: np.ndarray,
    ok: np.ndarray,
    t2: np.ndarray | None = None,
    q: np.ndarray | None = None,
    t2_limit: float | None = None,
    q_limit: float | None = None,
    n_components: int | None = None,
) -> pd.DataFrame:
    """The output rows in :data:`MV_ANOMALY_SCHEMA` order (``machine_id`` is the runner's)."""
    n = len(index)
    nan = np.full(n, np.nan)
    out = pd.DataFrame(
        {
            "ts": index,
            "t2": nan if t2 is None else t2,
            "q": nan if q is None else q,
            "t2_limit": np.nan if t2_limit is None else t2_limit,
            "q_limit": np.nan if q_limit is None else q_limit,
            "n_components": pd.array([n_components] * n, dtype="Int64"),
            "reference": reference.source,
            "top_metric": pd.Series(top_metric, dtype=object).where(ok, None).to_numpy(),
            "flagged": flagged.astype(bool),
            "detector": detector,
            "score": score,
            "breach": breach.astype(bool),
            "top_share": np.where(ok, top_share, np.nan),
            "in_reference": np.asarray(index.isin(reference.rows.index), dtype=bool),
        }
    )
    out["ts"] = out["ts"].astype(UTC_US)
    return out.reset_index(drop=True)
