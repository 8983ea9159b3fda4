"""Anomaly detection: a robust rolling z-score per metric and a multivariate PCA detector.

``robust_zscore`` compares each value with the median and MAD of the *preceding* ``baseline``
period (causal: a value never dilutes its own baseline) and flags |z| > ``z_max``; with
z = 0.6745·(x − median)/MAD this is Iglewicz & Hoaglin's modified z-score, whose customary
cut-off is 3.5. ``pca_anomaly`` fits PCA on a reference period and scores every row with
Hotelling's T² (distance inside the model) and Q (squared prediction error, distance from it),
against limits from their distributions (:mod:`~meshinsights.steps.limits`), from
cross-validation on the reference, or (the historical default) its in-sample quantiles.
Both expect the regular grid of :func:`~meshinsights.steps.resample.resample`.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, empty_frame, in_window, infer_step
from meshinsights.steps.limits import conformal_limit, q_limit, t2_limit
from meshinsights.steps.multivariate import (
    MV_ANOMALY_SCHEMA,
    AlarmRule,
    contiguous_folds,
    mv_frame,
    observed_wide,
    select_reference,
)
from meshinsights.steps.params import Duration, Fraction, PositiveInt
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


def fit_pca(
    ref: np.ndarray, variance_kept: float, n_components: int | None = None
) -> dict[str, np.ndarray]:
    """Standardize ``ref`` and keep the components explaining ``variance_kept`` of variance.

    ``n_components`` fixes the count instead (cross-validation folds use the full model's).
    ``resid_eig`` holds the discarded eigenvalues, which set the Q limit.
    """
    mean = ref.mean(axis=0)
    std = ref.std(axis=0, ddof=1)
    std = np.where(std > 0, std, 1.0)
    z = (ref - mean) / std
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    eig = s**2 / max(len(ref) - 1, 1)
    share = np.cumsum(eig) / eig.sum() if eig.sum() > 0 else np.ones_like(eig)
    k = int(np.searchsorted(share, variance_kept) + 1) if n_components is None else n_components
    k = min(k, len(eig))
    # the covariance has ref.shape[1] eigenvalues; the SVD of a short reference may return fewer
    resid = np.concatenate([eig[k:], np.zeros(max(0, ref.shape[1] - len(eig)))])
    return {
        "mean": mean,
        "std": std,
        "P": vt[:k].T,
        "eig": np.maximum(eig[:k], 1e-12),
        "resid_eig": resid,
    }


def pca_scores(
    model: dict[str, np.ndarray], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hotelling's T², Q (SPE) and the per-feature squared residuals of each row of ``x``."""
    z = (x - model["mean"]) / model["std"]
    t = z @ model["P"]
    t2 = np.sum(t**2 / model["eig"], axis=1)
    resid = z - t @ model["P"].T
    return t2, np.sum(resid**2, axis=1), resid**2


def t2_contributions(model: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Each feature's term of T² (``z_j · Σ_a p_ja t_a / λ_a``); a row's terms sum to its T²."""
    z = (x - model["mean"]) / model["std"]
    t = z @ model["P"]
    return z * ((t / model["eig"]) @ model["P"].T)


def _limits(
    ref: np.ndarray,
    model: dict[str, np.ndarray],
    *,
    method: str,
    alpha_t2: float,
    alpha_q: float,
    q_method: str,
    rule: AlarmRule,
    folds: int,
) -> tuple[float, float]:
    """T² and Q limits for the (smoothed) statistics; see :func:`pca_anomaly`."""
    k = int(model["P"].shape[1])
    if method == "statistical":
        return t2_limit(len(ref), k, alpha_t2), q_limit(
            model["resid_eig"], alpha_q, method=q_method
        )
    if method == "quantile":
        t2, q, _ = pca_scores(model, ref)
        t2, q = rule.smooth(t2), rule.smooth(q)
        return float(np.quantile(t2, 1 - alpha_t2)), float(np.quantile(q, 1 - alpha_q))
    # crossval: each contiguous block scored by a model fitted without it, so the limit sees
    # what new data from the same regime looks like rather than the model's own fit
    oof_t2, oof_q = [], []
    for block in contiguous_folds(len(ref), folds):
        rest = np.delete(ref, block, axis=0)
        t2, q, _ = pca_scores(fit_pca(rest, 1.0, n_components=k), ref[block])
        oof_t2.append(rule.smooth(t2))
        oof_q.append(rule.smooth(q))
    return (
        conformal_limit(np.concatenate(oof_t2), alpha_t2),
        conformal_limit(np.concatenate(oof_q), alpha_q),
    )


@step(inputs=["clean"], output="anomalies_mv", schema=MV_ANOMALY_SCHEMA)
def pca_anomaly(
    clean: pd.DataFrame,
    *,
    metrics: list[str] | None = None,
    reference_start: str | None = None,
    reference_end: str | None = None,
    reference_rows: Annotated[int, Field(ge=2)] | None = None,
    reference_duration: Duration | None = None,
    require_reference: bool = False,
    variance_kept: Annotated[float, Field(gt=0, le=1)] = 0.9,
    alpha: Fraction = 0.01,
    alpha_t2: Fraction | None = None,
    alpha_q: Fraction | None = None,
    limits: Literal["quantile", "statistical", "crossval"] = "quantile",
    q_method: Literal["jackson_mudholkar", "box"] = "jackson_mudholkar",
    smoothing: Annotated[float, Field(gt=0, le=1)] | None = None,
    persist_k: PositiveInt = 1,
    persist_n: PositiveInt = 1,
    calibration_folds: Annotated[int, Field(ge=2)] = 5,
    min_reference_rows: Annotated[int, Field(ge=2)] = 120,
    window: Window | None = None,
) -> pd.DataFrame:
    """PCA fitted on a reference period; every row scored with T² and Q, flagged over limits.

    Reference: see :mod:`~meshinsights.steps.multivariate` (fixed period, first
    ``reference_rows`` / ``reference_duration`` of the window, history before it, or — logged
    and recorded — the window itself). ``limits``: ``statistical`` puts T² on its F-distribution
    limit and Q on Jackson–Mudholkar's (``q_method: box`` for Box's χ²), each at its own level
    (``alpha_t2``, ``alpha_q``, default ``alpha``); ``crossval`` takes the conformal quantile of
    statistics scored out of contiguous reference folds; ``quantile`` (the historical default)
    the reference's own in-sample quantiles. ``smoothing`` is the EWMA weight λ applied to T²
    and Q (the statistical limits are kept: for independent in-control rows an average of the
    statistics exceeds them less often than one does, so they stay conservative); a row is
    flagged when ``persist_k`` of the last ``persist_n`` rows breached. Rows with a missing or
    filled metric are not scored.
    """
    if clean.empty:
        return empty_frame(MV_ANOMALY_SCHEMA)
    wide = observed_wide(clean, metrics)
    ref = select_reference(
        wide,
        window,
        step="pca_anomaly",
        start=reference_start,
        end=reference_end,
        rows=reference_rows,
        duration=reference_duration,
        min_rows=min_reference_rows,
        require=require_reference,
    )
    if len(ref.rows) < 2:
        return empty_frame(MV_ANOMALY_SCHEMA)
    rule = AlarmRule(smoothing, persist_k, persist_n)
    ref_x = ref.rows.to_numpy(dtype="float64")
    model = fit_pca(ref_x, variance_kept)
    lim_t2, lim_q = _limits(
        ref_x,
        model,
        method=limits,
        alpha_t2=alpha_t2 or alpha,
        alpha_q=alpha_q or alpha,
        q_method=q_method,
        rule=rule,
        folds=calibration_folds,
    )
    lim_q = max(lim_q, 1e-9)
    # smoothing runs over all the input (history warms it up), then the window is cut out
    x_all = wide.to_numpy(dtype="float64")
    ok_all = ~np.isnan(x_all).any(axis=1)
    t2_all, q_all, _ = pca_scores(model, np.nan_to_num(x_all))
    t2_all, q_all = np.where(ok_all, t2_all, np.nan), np.where(ok_all, q_all, np.nan)
    ratio = np.fmax(rule.smooth(t2_all) / lim_t2, rule.smooth(q_all) / lim_q)
    breach_all, flagged_all = rule.flag(ratio, ok_all)
    keep = np.asarray(
        in_window(pd.DataFrame({"ts": wide.index, "i": np.arange(len(wide))}), window)["i"],
        dtype=int,
    )
    x, ok = np.nan_to_num(x_all[keep]), ok_all[keep]
    t2, q = t2_all[keep], q_all[keep]
    _, _, q_terms = pca_scores(model, x)
    t2_terms = t2_contributions(model, x)
    by_t2 = np.nan_to_num(t2 / lim_t2) >= np.nan_to_num(q / lim_q)
    terms = np.where(by_t2[:, None], t2_terms, q_terms)
    names = np.asarray(wide.columns, dtype=object)
    top = np.argmax(terms, axis=1) if len(x) else np.array([], dtype=int)
    total = np.where(by_t2, t2, q)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.take_along_axis(terms, top[:, None], axis=1)[:, 0] / total
    return mv_frame(
        wide.index[keep],
        detector="pca",
        reference=ref,
        score=ratio[keep],
        breach=breach_all[keep],
        flagged=flagged_all[keep],
        top_metric=names[top],
        top_share=share,
        ok=ok,
        t2=t2,
        q=q,
        t2_limit=lim_t2,
        q_limit=lim_q,
        n_components=int(model["P"].shape[1]),
    )
