"""Control limits and alarm rules for multivariate detectors (pure numerics, no registration).

- :func:`t2_limit` — Hotelling's T² for a *new* observation scored against a mean and
  covariance estimated from ``n`` reference rows (phase II):
  ``k (n − 1)(n + 1) / (n (n − k)) · F₁₋α(k, n − k)`` (Tracy, Young & Mason 1992).
- :func:`q_limit` — the squared prediction error (Q, SPE) limit of Jackson & Mudholkar (1979)
  from the residual eigenvalues, or Box's (1954) χ² approximation ``g·χ²₁₋α(h)``.
- :func:`conformal_limit` — the split-conformal quantile of calibration scores: a new in-control
  score exceeds it with probability at most ``alpha`` when scores are exchangeable.
- :func:`ewma` and :func:`persistence` — smoothing of a statistic and a "k of the last n"
  rule applied before a point is flagged.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["t2_limit", "q_limit", "conformal_limit", "ewma", "persistence"]


def t2_limit(n: int, k: int, alpha: float) -> float:
    """Upper (1 − ``alpha``) limit of T² for a new row, model fitted on ``n`` rows, ``k`` PCs."""
    from scipy import stats  # lazy: DAG parsing imports this module

    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must lie in (0, 1)")
    if n <= k:
        raise ValueError(
            f"T² limit needs more reference rows than components (n={n}, k={k}); "
            "give a longer reference or keep fewer components"
        )
    f = stats.f.ppf(1 - alpha, k, n - k)
    return float(k * (n - 1) * (n + 1) / (n * (n - k)) * f)


def q_limit(residual_eig: np.ndarray, alpha: float, *, method: str = "jackson_mudholkar") -> float:
    """Upper (1 − ``alpha``) limit of Q from the eigenvalues of the discarded components.

    Jackson–Mudholkar needs ``h0 > 0``; when the residual spectrum is so skewed that it is
    not, Box's approximation is used (it has no such restriction). No residual variance
    (every component kept) gives a limit of 0.
    """
    from scipy import stats  # lazy: DAG parsing imports this module

    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must lie in (0, 1)")
    lam = np.asarray(residual_eig, dtype="float64")
    lam = lam[lam > 0]
    if lam.size == 0:
        return 0.0
    theta1, theta2, theta3 = (float(np.sum(lam**i)) for i in (1, 2, 3))
    h0 = 1 - 2 * theta1 * theta3 / (3 * theta2**2)
    if method == "jackson_mudholkar" and h0 > 0:
        c = stats.norm.ppf(1 - alpha)
        inner = c * math.sqrt(2 * theta2 * h0**2) / theta1 + 1 + theta2 * h0 * (h0 - 1) / theta1**2
        return float(theta1 * inner ** (1 / h0))
    if method not in ("jackson_mudholkar", "box"):
        raise ValueError(f"q limit method {method!r}: use 'jackson_mudholkar' or 'box'")
    g, h = theta2 / theta1, theta1**2 / theta2
    return float(g * stats.chi2.ppf(1 - alpha, h))


def conformal_limit(scores: np.ndarray, alpha: float) -> float:
    """The ⌈(n + 1)(1 − α)⌉-th smallest calibration score (the largest if that exceeds n)."""
    s = np.sort(np.asarray(scores, dtype="float64")[~np.isnan(scores)])
    if s.size == 0:
        raise ValueError("no calibration scores: the reference has no complete rows")
    rank = math.ceil((s.size + 1) * (1 - alpha))
    return float(s[min(rank, s.size) - 1])


def ewma(x: np.ndarray, smoothing: float | None) -> np.ndarray:
    """Exponentially weighted moving average ``s_t = λ x_t + (1 − λ) s_{t−1}`` (causal).

    ``smoothing`` is λ in (0, 1]; None or 1 returns ``x`` unchanged. Missing values are
    skipped (the average carries over them) and stay missing in the output.
    """
    if smoothing is None or smoothing >= 1:
        return np.asarray(x, dtype="float64")
    s = pd.Series(x, dtype="float64").ewm(alpha=smoothing, adjust=False, ignore_na=True).mean()
    out = s.to_numpy(copy=True)
    out[np.isnan(np.asarray(x, dtype="float64"))] = np.nan
    return out


def persistence(breach: np.ndarray, k: int, n: int) -> np.ndarray:
    """True where at least ``k`` of the last ``n`` points (this one included) breached."""
    if not 1 <= k <= n:
        raise ValueError(f"persistence needs 1 <= k <= n (k={k}, n={n})")
    b = pd.Series(np.asarray(breach, dtype="float64"))
    return (b.rolling(n, min_periods=1).sum() >= k).to_numpy()
