"""Golden tests for the control limits: worked examples by hand and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from meshinsights.steps.limits import conformal_limit, ewma, persistence, q_limit, t2_limit


def test_t2_limit_matches_the_worked_example_from_an_f_table() -> None:
    # n = 20 reference rows, k = 2, alpha = 0.05: F(0.95; 2, 18) = 3.5546 (printed F table)
    expected = 2 * 19 * 21 / (20 * 18) * 3.5546
    assert t2_limit(20, 2, 0.05) == pytest.approx(expected, rel=1e-4)


def test_t2_limit_tends_to_chi2_for_a_long_reference() -> None:
    assert t2_limit(10**7, 3, 0.01) == pytest.approx(stats.chi2.ppf(0.99, 3), rel=1e-4)


def test_t2_limit_holds_its_level_for_a_new_observation_by_simulation() -> None:
    """Phase II: mean and covariance estimated from n rows, a new row exceeds w.p. alpha."""
    rng = np.random.default_rng(7)
    n, p, alpha, sims = 25, 3, 0.05, 4000
    limit = t2_limit(n, p, alpha)
    ref = rng.normal(size=(sims, n, p))
    new = rng.normal(size=(sims, p))
    mean = ref.mean(axis=1)
    dev = ref - mean[:, None, :]
    cov = np.einsum("sni,snj->sij", dev, dev) / (n - 1)
    d = new - mean
    t2 = np.einsum("si,sij,sj->s", d, np.linalg.inv(cov), d)
    rate = float(np.mean(t2 > limit))
    assert abs(rate - alpha) < 3 * math.sqrt(alpha * (1 - alpha) / sims)


def jackson_mudholkar_by_hand(lam: list[float], alpha: float) -> float:
    t1, t2, t3 = (sum(v**i for v in lam) for i in (1, 2, 3))
    h0 = 1 - 2 * t1 * t3 / (3 * t2**2)
    c = stats.norm.ppf(1 - alpha)
    return t1 * (c * math.sqrt(2 * t2 * h0**2) / t1 + 1 + t2 * h0 * (h0 - 1) / t1**2) ** (1 / h0)


def test_q_limit_matches_the_worked_example() -> None:
    # lambda = (0.5, 0.3, 0.2): theta = (1.0, 0.38, 0.16), h0 = 0.26131, c = 1.64485 -> 2.7401
    result = q_limit(np.array([0.5, 0.3, 0.2]), 0.05)
    assert result == pytest.approx(jackson_mudholkar_by_hand([0.5, 0.3, 0.2], 0.05), rel=1e-12)
    assert result == pytest.approx(2.7401, abs=5e-4)


@pytest.mark.parametrize("method", ["jackson_mudholkar", "box"])
def test_q_limit_holds_its_level_on_the_exact_distribution(method: str) -> None:
    """Q of a Gaussian row is Σ λ_j χ²₁ over the discarded components: simulate it."""
    lam = np.array([0.5, 0.3, 0.2, 0.05])
    alpha = 0.01
    q = (np.random.default_rng(3).normal(size=(400_000, 4)) ** 2) @ lam
    rate = float(np.mean(q > q_limit(lam, alpha, method=method)))
    # both are approximations (J-M is within ~16 % here at alpha = 1 %): a quarter is the bar
    assert abs(rate - alpha) < 0.25 * alpha, rate


def test_q_limit_box_formula_and_no_residual_is_zero() -> None:
    lam = np.array([0.5, 0.3, 0.2])
    assert q_limit(lam, 0.05, method="box") == pytest.approx(
        0.38 * stats.chi2.ppf(0.95, 1 / 0.38), rel=1e-12
    )
    assert q_limit(np.array([]), 0.05) == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda: t2_limit(3, 3, 0.01), "more reference rows"),
     (lambda: t2_limit(30, 3, 0.0), "alpha"),
     (lambda: q_limit(np.ones(3), 0.01, method="nope"), "jackson_mudholkar")],
    ids=["n-not-above-k", "alpha-zero", "unknown-method"],
)
def test_limits_reject_bad_input_clearly(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("scores", "alpha", "expected"),
    [(np.arange(1.0, 20.0), 0.1, 18.0), (np.arange(1.0, 6.0), 0.01, 5.0),
     (np.array([3.0, np.nan, 1.0, 2.0]), 0.5, 2.0)],
    ids=["rank-ceil-n-plus-1", "beyond-n-takes-the-max", "nan-ignored"],
)
def test_conformal_limit(scores: np.ndarray, alpha: float, expected: float) -> None:
    assert conformal_limit(scores, alpha) == expected


def test_ewma_skips_missing_values_and_keeps_them_missing() -> None:
    result = ewma(np.array([1.0, 3.0, np.nan, 5.0]), 0.5)
    np.testing.assert_allclose(result, [1.0, 2.0, np.nan, 3.5])
    np.testing.assert_array_equal(ewma(np.array([1.0, 9.0]), None), [1.0, 9.0])


def test_persistence_k_of_n() -> None:
    breach = np.array([1, 0, 1, 1, 0, 0, 1], dtype=bool)
    result = persistence(breach, 2, 3)
    assert result.tolist() == [False, False, True, True, True, False, False]
    assert persistence(breach, 1, 1).tolist() == breach.tolist()
    with pytest.raises(ValueError, match="1 <= k <= n"):
        persistence(breach, 4, 3)
