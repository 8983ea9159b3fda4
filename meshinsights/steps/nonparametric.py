"""A nonparametric multivariate detector (kNN distance) and a vote over two detectors.

``knn_anomaly`` standardizes each metric on the reference, whitens (rotates onto the
reference's principal axes, each scaled to unit variance — the Mahalanobis metric; without
it a broken correlation between sensors is lost in the distances along the main axes) and
scores a row by its mean Euclidean distance to the ``n_neighbors`` nearest reference rows —
no distributional model, so it suits short references and sensors tied by non-linear
relations. Its
limit is the split-conformal quantile of distances scored out of contiguous reference folds:
an in-control row exceeds it with probability at most ``alpha`` when rows are exchangeable,
and blocking keeps autocorrelated neighbours from making the reference look tighter than
new data will. The average of the neighbours is a similarity-based estimate of the row (as
in MSET); the metric with the largest squared residual from it is ``top_metric``.
``vote_anomaly`` combines ``pca_anomaly`` and ``knn_anomaly`` outputs row by row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from meshinsights.model import Window
from meshinsights.steps._util import UTC_US, empty_frame, in_window
from meshinsights.steps.limits import conformal_limit
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

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["knn_anomaly", "vote_anomaly", "knn_distance", "fit_scaler"]

#: Principal axes with less than this share of the variance are dropped before whitening
#: (a duplicated or constant sensor would otherwise divide by zero).
MIN_AXIS_SHARE = 1e-6


def knn_distance(ref: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean distance of each row of ``x`` to its ``k`` nearest rows of ``ref``, and their rows."""
    from sklearn.neighbors import NearestNeighbors  # lazy: DAG parsing imports this module

    nn = NearestNeighbors(n_neighbors=min(k, len(ref))).fit(ref)
    dist, idx = nn.kneighbors(x)
    return dist.mean(axis=1), idx


def fit_scaler(ref: np.ndarray, *, whiten: bool) -> Pipeline:
    """Standardize on ``ref``; with ``whiten`` also rotate to its axes at unit variance."""
    from sklearn.decomposition import PCA  # lazy: DAG parsing imports this module
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not whiten:
        return make_pipeline(StandardScaler()).fit(ref)
    share = PCA().fit(StandardScaler().fit_transform(ref)).explained_variance_ratio_
    keep = max(1, int(np.sum(share > MIN_AXIS_SHARE)))
    return make_pipeline(StandardScaler(), PCA(n_components=keep, whiten=True)).fit(ref)


def _contributions(scaler: Pipeline, ref: np.ndarray, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Each metric's term of the squared distance from a row to its neighbours' mean.

    On standardized values u = x − mean(neighbours), the whitened squared distance is
    uᵀ Σ⁻¹ u; metric j's term is u_j (Σ⁻¹ u)_j (the terms sum to it). Unwhitened: u_j².
    """
    standard = scaler[0]
    u = standard.transform(np.nan_to_num(x)) - standard.transform(ref)[idx].mean(axis=1)
    if len(scaler) == 1:
        return u**2
    pca = scaler[1]
    inv_u = ((u @ pca.components_.T) / pca.explained_variance_) @ pca.components_
    return u * inv_u


@step(inputs=["clean"], output="anomalies_knn", schema=MV_ANOMALY_SCHEMA)
def knn_anomaly(
    clean: pd.DataFrame,
    *,
    metrics: list[str] | None = None,
    reference_start: str | None = None,
    reference_end: str | None = None,
    reference_rows: Annotated[int, Field(ge=2)] | None = None,
    reference_duration: Duration | None = None,
    require_reference: bool = False,
    n_neighbors: PositiveInt = 5,
    whiten: bool = True,
    alpha: Fraction = 0.01,
    smoothing: Annotated[float, Field(gt=0, le=1)] | None = None,
    persist_k: PositiveInt = 1,
    persist_n: PositiveInt = 1,
    calibration_folds: Annotated[int, Field(ge=2)] = 5,
    min_reference_rows: Annotated[int, Field(ge=2)] = 120,
    window: Window | None = None,
) -> pd.DataFrame:
    """kNN distance to a reference period, flagged over its cross-validated conformal limit.

    Reference, ``smoothing`` (EWMA λ of the distance) and ``persist_k`` of ``persist_n`` work as
    in ``pca_anomaly``; the limit is calibrated on the smoothed out-of-fold distances.
    ``whiten: false`` measures distances on the standardized metrics instead.
    """
    if clean.empty:
        return empty_frame(MV_ANOMALY_SCHEMA)
    wide = observed_wide(clean, metrics)
    ref = select_reference(
        wide,
        window,
        step="knn_anomaly",
        start=reference_start,
        end=reference_end,
        rows=reference_rows,
        duration=reference_duration,
        min_rows=min_reference_rows,
        require=require_reference,
    )
    if len(ref.rows) < max(2, calibration_folds):
        return empty_frame(MV_ANOMALY_SCHEMA)
    rule = AlarmRule(smoothing, persist_k, persist_n)
    scaler = fit_scaler(ref.rows.to_numpy(dtype="float64"), whiten=whiten)
    ref_z = scaler.transform(ref.rows.to_numpy(dtype="float64"))
    oof = []
    for block in contiguous_folds(len(ref_z), calibration_folds):
        d, _ = knn_distance(np.delete(ref_z, block, axis=0), ref_z[block], n_neighbors)
        oof.append(rule.smooth(d))
    limit = max(conformal_limit(np.concatenate(oof), alpha), 1e-9)

    x_all = wide.to_numpy(dtype="float64")
    ok_all = ~np.isnan(x_all).any(axis=1)
    z_all = scaler.transform(np.nan_to_num(x_all))
    dist, idx = knn_distance(ref_z, z_all, n_neighbors)
    dist = np.where(ok_all, dist, np.nan)
    score = rule.smooth(dist) / limit
    breach, flagged = rule.flag(score, ok_all)
    keep = np.asarray(
        in_window(pd.DataFrame({"ts": wide.index, "i": np.arange(len(wide))}), window)["i"],
        dtype=int,
    )
    resid = _contributions(scaler, ref.rows.to_numpy(dtype="float64"), x_all[keep], idx[keep])
    top = np.argmax(resid, axis=1) if len(keep) else np.array([], dtype=int)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.take_along_axis(resid, top[:, None], axis=1)[:, 0] / resid.sum(axis=1)
    return mv_frame(
        wide.index[keep],
        detector="knn",
        reference=ref,
        score=score[keep],
        breach=breach[keep],
        flagged=flagged[keep],
        top_metric=np.asarray(wide.columns, dtype=object)[top],
        top_share=share,
        ok=ok_all[keep],
    )


@step(inputs=["anomalies_mv", "anomalies_knn"], output="anomalies_vote", schema=MV_ANOMALY_SCHEMA)
def vote_anomaly(
    anomalies_mv: pd.DataFrame,
    anomalies_knn: pd.DataFrame,
    *,
    min_votes: Literal[1, 2] = 2,
    window: Window | None = None,
) -> pd.DataFrame:
    """Flag a row when ``min_votes`` of the two detectors flagged it (1: either, 2: both).

    ``score`` is the ``min_votes``-th largest of the two scores (over 1 exactly when that many
    breach); T², Q and their limits come from the PCA input, ``top_metric`` from the detector
    with the larger score. A row missing from one input counts as not flagged there.
    """
    frames = [f for f in (anomalies_mv, anomalies_knn) if not f.empty]
    if not frames:
        return empty_frame(MV_ANOMALY_SCHEMA)
    cols = [n for n in MV_ANOMALY_SCHEMA.names if n != "machine_id"]
    a = anomalies_mv.reindex(columns=cols).set_index("ts")
    b = anomalies_knn.reindex(columns=cols).set_index("ts")
    ts = a.index.union(b.index).sort_values()
    a, b = a.reindex(ts), b.reindex(ts)
    scores = np.column_stack([a["score"].astype("float64"), b["score"].astype("float64")])
    ranked = -np.sort(-np.nan_to_num(scores, nan=-np.inf), axis=1)
    score = ranked[:, min_votes - 1]
    votes = a["flagged"].fillna(False).astype(bool).to_numpy().astype(int) + b["flagged"].fillna(
        False
    ).astype(bool).to_numpy().astype(int)
    breaches = a["breach"].fillna(False).astype(bool).to_numpy().astype(int) + b["breach"].fillna(
        False
    ).astype(bool).to_numpy().astype(int)
    use_b = np.nan_to_num(scores[:, 1], nan=-np.inf) > np.nan_to_num(scores[:, 0], nan=-np.inf)
    sources = sorted({str(s) for s in pd.concat([a["reference"], b["reference"]]).dropna()})
    out = pd.DataFrame(
        {
            "ts": ts,
            "t2": a["t2"].astype("float64").to_numpy(),
            "q": a["q"].astype("float64").to_numpy(),
            "t2_limit": a["t2_limit"].astype("float64").to_numpy(),
            "q_limit": a["q_limit"].astype("float64").to_numpy(),
            "n_components": pd.array(a["n_components"], dtype="Int64"),
            "reference": "+".join(sources) or None,
            "top_metric": np.where(use_b, b["top_metric"], a["top_metric"]),
            "flagged": votes >= min_votes,
            "detector": "vote",
            "score": np.where(np.isfinite(score), score, np.nan),
            "breach": breaches >= min_votes,
            "top_share": np.where(use_b, b["top_share"], a["top_share"]).astype("float64"),
            "in_reference": (
                a["in_reference"].fillna(False).astype(bool).to_numpy()
                | b["in_reference"].fillna(False).astype(bool).to_numpy()
            ),
        }
    )
    out["ts"] = out["ts"].astype(UTC_US)
    return in_window(out, window)
