"""Anomaly detection: a robust rolling z-score per metric and a multivariate PCA detector.

``robust_zscore`` compares each value with the median and MAD of the *preceding* ``baseline``
period (causal: a value never dilutes its own baseline) and flags |z| > ``z_max``; with
z = 0.6745·(x − median)/MAD this is Iglewicz & Hoaglin's modified z-score, whose customary
cut-off is 3.5. ``pca_anomaly`` fits PCA on a reference period and scores every row with
Hotelling's T² (distance inside the model) and Q (squared prediction error, distance from it).
Both expect the regular grid of :func:`~meshinsights.steps.resample.resample`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, empty_frame, in_window, infer_step
from meshinsights.steps.registry import step

__all__ = [
    "robust_zscore",
    "pca_anomaly",
    "rolling_median_mad",
    "fit_pca",
    "ANOMALY_SCHEMA",
    "MV_ANOMALY_SCHEMA",
]

logger = logging.getLogger(__name__)

#: 0.6745 = Φ⁻¹(0.75): makes MAD-based z comparable with a standard z for normal data.
MAD_Z = 0.6745

ANOMALY_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("baseline", pa.float64()),  # median of the preceding baseline period
        ("mad", pa.float64()),
        ("score", pa.float64()),  # modified z-score; null when it cannot be computed
        ("flagged", pa.bool_()),
    ]
)

MV_ANOMALY_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("t2", pa.float64()),
        ("q", pa.float64()),
        ("t2_limit", pa.float64()),
        ("q_limit", pa.float64()),
        ("n_components", pa.int64()),
        ("reference", pa.string()),  # history | window | fixed
        ("top_metric", pa.string()),  # largest contribution to Q
        ("flagged", pa.bool_()),
    ]
)


def rolling_median_mad(
    x: np.ndarray, n: int, *, min_count: int, hop: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of the ``n`` values strictly before each position (nulls ignored).

    With ``hop`` > 1 the baseline is recomputed every ``hop`` positions and held in between
    (still strictly past data), which makes long baselines linear in cost.
    """
    size = len(x)
    med = np.full(size, np.nan)
    mad = np.full(size, np.nan)
    hop = max(1, int(hop))
    for i in range(0, size, hop):
        past = x[max(0, i - n) : i]
        past = past[~np.isnan(past)]
        if len(past) < min_count:
            continue
        m = np.median(past)
        med[i : i + hop] = m
        mad[i : i + hop] = np.median(np.abs(past - m))
    return med, mad


def _zscore_metric(
    rows: pd.DataFrame,
    *,
    baseline: str,
    z_max: float,
    min_fraction: float,
    min_mad: float,
    hops: int,
) -> pd.DataFrame:
    rows = rows.sort_values("ts", kind="stable")
    step = infer_step(rows["ts"])
    n = max(1, int(pd.Timedelta(baseline) / step))
    value = rows["value"].to_numpy(dtype="float64", na_value=np.nan)
    # Filled cells are the resampler's estimate: neither baseline nor scored.
    usable = value.copy()
    if "filled" in rows:
        usable[rows["filled"].to_numpy(dtype=bool)] = np.nan
    med, mad = rolling_median_mad(
        usable, n, min_count=max(1, int(min_fraction * n)), hop=max(1, n // hops) if hops else 1
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        score = MAD_Z * (usable - med) / np.maximum(mad, min_mad)
    return pd.DataFrame(
        {
            "ts": rows["ts"].to_numpy(),
            "value": value,
            "baseline": med,
            "mad": mad,
            "score": score,
            "flagged": np.nan_to_num(np.abs(score), nan=0.0) > z_max,
        }
    )


@step(inputs=["clean"], output="anomalies", schema=ANOMALY_SCHEMA)
def robust_zscore(
    clean: pd.DataFrame,
    *,
    metrics: list[str] | None = None,
    baseline: str = "1D",
    z_max: float = 3.5,
    min_fraction: float = 0.25,
    min_mad: float = 1e-3,
    hops: int = 48,
    window: Window | None = None,
) -> pd.DataFrame:
    """Score every row against the median/MAD of the preceding ``baseline``; flag |z| > z_max.

    A row with too little baseline (under ``min_fraction`` of it observed) or no value gets a
    null score and is not flagged. ``min_mad`` stops a flat baseline from making any change
    infinitely surprising. The baseline is refreshed ``hops`` times per baseline length.
    """
    if clean.empty:
        return empty_frame(ANOMALY_SCHEMA)
    parts = []
    for metric in metrics or sorted(clean["metric"].unique()):
        rows = clean[clean["metric"] == metric]
        if rows.empty:
            continue
        part = _zscore_metric(
            rows,
            baseline=baseline,
            z_max=z_max,
            min_fraction=min_fraction,
            min_mad=min_mad,
            hops=hops,
        )
        part.insert(1, "metric", metric)
        parts.append(part)
    if not parts:
        return empty_frame(ANOMALY_SCHEMA)
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = out["ts"].astype(UTC_US)
    out = in_window(out, window)
    return out.sort_values(["ts", "metric"], kind="stable").reset_index(drop=True)


def fit_pca(ref: np.ndarray, variance_kept: float) -> dict[str, np.ndarray]:
    """Standardize ``ref`` and keep the components explaining ``variance_kept`` of variance."""
    mean = ref.mean(axis=0)
    std = ref.std(axis=0, ddof=1)
    std = np.where(std > 0, std, 1.0)
    z = (ref - mean) / std
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    eig = s**2 / max(len(ref) - 1, 1)
    share = np.cumsum(eig) / eig.sum() if eig.sum() > 0 else np.ones_like(eig)
    k = int(np.searchsorted(share, variance_kept) + 1)
    k = min(k, len(eig))
    return {"mean": mean, "std": std, "P": vt[:k].T, "eig": np.maximum(eig[:k], 1e-12)}


def pca_scores(
    model: dict[str, np.ndarray], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hotelling's T², Q (SPE) and the per-feature squared residuals of each row of ``x``."""
    z = (x - model["mean"]) / model["std"]
    t = z @ model["P"]
    t2 = np.sum(t**2 / model["eig"], axis=1)
    resid = z - t @ model["P"].T
    return t2, np.sum(resid**2, axis=1), resid**2


def _reference(
    wide: pd.DataFrame, window: Window | None, start: str | None, end: str | None, min_rows: int
) -> tuple[pd.DataFrame, str]:
    complete = wide.dropna()
    if start or end:
        lo = pd.Timestamp(start or complete.index.min())
        hi = pd.Timestamp(end or complete.index.max() + pd.Timedelta(microseconds=1))
        lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo
        hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi
        ref = complete[(complete.index >= lo) & (complete.index < hi)]
        if len(ref) < min_rows:
            raise ValueError(
                f"reference period [{lo}, {hi}) has {len(ref)} complete rows, "
                f"fewer than min_reference_rows={min_rows}; widen it or lower the "
                "minimum"
            )
        return ref, "fixed"
    if window is not None:
        history = complete[complete.index < pd.Timestamp(window.start)]
        if len(history) >= min_rows:
            return history, "history"
    return complete, "window"


def _observed_wide(clean: pd.DataFrame, metrics: list[str] | None) -> pd.DataFrame:
    """One column per metric, filled cells null (they are estimates, not observations)."""
    rows = clean if metrics is None else clean[clean["metric"].isin(metrics)]
    value = rows["value"].where(~rows["filled"].astype(bool)) if "filled" in rows else rows["value"]
    wide = (
        rows.assign(value=value)
        .pivot_table(index="ts", columns="metric", values="value", aggfunc="mean", dropna=False)
        .sort_index()
    )
    return wide.reindex(columns=metrics) if metrics else wide


@step(inputs=["clean"], output="anomalies_mv", schema=MV_ANOMALY_SCHEMA)
def pca_anomaly(
    clean: pd.DataFrame,
    *,
    metrics: list[str] | None = None,
    reference_start: str | None = None,
    reference_end: str | None = None,
    variance_kept: float = 0.9,
    alpha: float = 0.01,
    min_reference_rows: int = 120,
    window: Window | None = None,
) -> pd.DataFrame:
    """PCA fitted on a reference period; every row scored with T² and Q, flagged over limits.

    The reference is ``[reference_start, reference_end)`` if given, else the input before the
    run window (the step's ``lookback``), else — with too little history — the window itself.
    Limits are the reference's own (1 − ``alpha``) quantiles. Rows with a missing or filled
    metric are not scored (null T²/Q, not flagged).
    """
    if clean.empty:
        return empty_frame(MV_ANOMALY_SCHEMA)
    wide = _observed_wide(clean, metrics)
    ref, source = _reference(wide, window, reference_start, reference_end, min_reference_rows)
    if len(ref) < 2:
        return empty_frame(MV_ANOMALY_SCHEMA)
    model = fit_pca(ref.to_numpy(dtype="float64"), variance_kept)
    ref_t2, ref_q, _ = pca_scores(model, ref.to_numpy(dtype="float64"))
    t2_limit = float(np.quantile(ref_t2, 1 - alpha))
    q_limit = max(float(np.quantile(ref_q, 1 - alpha)), 1e-9)
    scored = in_window(wide.reset_index(), window).set_index("ts")
    x = scored.to_numpy(dtype="float64")
    t2, q, contrib = pca_scores(model, np.nan_to_num(x))
    ok = ~np.isnan(x).any(axis=1)
    t2, q = np.where(ok, t2, np.nan), np.where(ok, q, np.nan)
    top: np.ndarray = (
        np.asarray(scored.columns, dtype=object)[np.argmax(contrib, axis=1)]
        if len(x)
        else np.array([], dtype=object)
    )
    out = pd.DataFrame(
        {
            "ts": scored.index,
            "t2": t2,
            "q": q,
            "t2_limit": t2_limit,
            "q_limit": q_limit,
            "n_components": int(model["P"].shape[1]),
            "reference": source,
            "top_metric": pd.Series(top, dtype=object).where(ok, None).to_numpy(),
            "flagged": ok & ((np.nan_to_num(t2) > t2_limit) | (np.nan_to_num(q) > q_limit)),
        }
    )
    out["ts"] = out["ts"].astype(UTC_US)
    return out.reset_index(drop=True)
