"""Golden tests: robust rolling z-score and the PCA T²/Q detector (checked independently)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.steps.anomaly import pca_anomaly, robust_zscore, rolling_median_mad
from tests.steps.builders import at, grid, win

NAN = np.nan
K = 0.6745


def z_rows(metric: str, minutes: list[float], value: list[float], baseline: list[float],
           mad: list[float], score: list[float], flagged: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"ts": at(*minutes), "metric": metric, "value": value,
                         "baseline": baseline, "mad": mad, "score": score, "flagged": flagged})


Z_CASES = [
    pytest.param(
        grid("t", [1, 2, 3, 4, 10, 5, None]), {"baseline": "4min", "min_fraction": 0.5},
        win(0, 7),
        z_rows("t", list(range(7)), [1, 2, 3, 4, 10, 5, NAN],
               [NAN, NAN, 1.5, 2, 2.5, 3.5, 4.5], [NAN, NAN, 0.5, 1, 1, 1, 1],
               [NAN, NAN, K * 1.5 / 0.5, K * 2, K * 7.5, K * 1.5, NAN],
               [False, False, False, False, True, False, False]),
        id="past-only-baseline-flags-the-jump-not-its-neighbours",
    ),
    pytest.param(
        grid("t", [1, 2, 3, 100, 4], filled=[False, False, False, True, False]),
        {"baseline": "4min", "min_fraction": 0.5}, win(0, 5),
        z_rows("t", list(range(5)), [1.0, 2, 3, 100, 4], [NAN, NAN, 1.5, 2, 2],
               [NAN, NAN, 0.5, 1, 1], [NAN, NAN, K * 3, NAN, K * 2],
               [False, False, False, False, False]),
        id="filled-cells-neither-baseline-nor-scored",
    ),
    pytest.param(
        grid("t", [5, 5, 5, 5, 5.01]), {"baseline": "4min", "min_fraction": 1.0}, win(4, 5),
        z_rows("t", [4], [5.01], [5.0], [0.0], [K * 0.01 / 1e-3], [True]),
        id="flat-baseline-uses-min-mad",
    ),
    pytest.param(
        grid("t", [5, 5, 5, 5, 5.01]), {"baseline": "4min", "min_fraction": 1.0, "min_mad": 0.1},
        win(4, 5),
        z_rows("t", [4], [5.01], [5.0], [0.0], [K * 0.01 / 0.1], [False]),
        id="larger-min-mad-tolerates-tiny-steps",
    ),
]


@pytest.mark.parametrize(("clean", "params", "window", "expected"), Z_CASES)
def test_robust_zscore_golden(clean: pd.DataFrame, params: dict, window, expected) -> None:
    result = robust_zscore(clean, window=window, hops=0, **params)
    assert_frame_equal(result, expected, check_exact=False, rtol=1e-12)


def test_rolling_median_mad_hop_holds_a_past_only_baseline() -> None:
    x = np.arange(10, dtype=float)
    med, mad = rolling_median_mad(x, 4, min_count=1, hop=3)
    # recomputed at 0 (no past), 3, 6, 9 from the 4 values before each, held for 3 positions
    assert np.isnan(med[:3]).all()
    assert med[3:].tolist() == [1.0, 1.0, 1.0, 3.5, 3.5, 3.5, 6.5]
    assert mad[3:].tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def correlated(n: int, start_min: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    b = 2 * a + rng.normal(0, 0.1, n)
    c = rng.normal(5, 1, n)
    return pd.concat([grid("a", list(a), start_min=start_min), grid("b", list(b),
                      start_min=start_min), grid("c", list(c), start_min=start_min)],
                     ignore_index=True)


def reference_scores(ref: np.ndarray, x: np.ndarray, keep: float) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """T² and Q computed independently: eigen-decomposition of the reference covariance."""
    mean, std = ref.mean(axis=0), ref.std(axis=0, ddof=1)
    eigval, eigvec = np.linalg.eigh(np.cov((ref - mean) / std, rowvar=False))
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    k = int(np.searchsorted(np.cumsum(eigval) / eigval.sum(), keep) + 1)
    z = (x - mean) / std
    t = z @ eigvec[:, :k]
    t2 = np.sum(t**2 / eigval[:k], axis=1)
    q = np.sum((z - t @ eigvec[:, :k].T) ** 2, axis=1)
    return t2, q


def test_pca_anomaly_scores_match_an_independent_computation_and_flag_both_breaks() -> None:
    history = correlated(500, -500, seed=1)
    today = pd.concat([grid("a", [0.5, 0.1, 6.0]), grid("b", [1.0, -0.5, 12.0]),
                       grid("c", [5.0, 5.5, 5.0])], ignore_index=True)
    # row 0 follows the correlation, row 1 breaks it (Q), row 2 follows it far out (T²)
    result = pca_anomaly(pd.concat([history, today], ignore_index=True), window=win(0, 3))
    wide = history.pivot(index="ts", columns="metric", values="value").to_numpy()
    x = np.array([[0.5, 1.0, 5.0], [0.1, -0.5, 5.5], [6.0, 12.0, 5.0]])
    t2, q = reference_scores(wide, x, 0.9)
    ref_t2, ref_q = reference_scores(wide, wide, 0.9)
    expected = pd.DataFrame({
        "ts": at(0, 1, 2), "t2": t2, "q": q, "t2_limit": np.quantile(ref_t2, 0.99),
        "q_limit": np.quantile(ref_q, 0.99), "n_components": 2, "reference": "history",
        "top_metric": ["a", "b", "c"], "flagged": [False, True, True],
    })
    # the columns the step had before issue 24 (it has added some since)
    assert_frame_equal(result[expected.columns].drop(columns="top_metric"),
                       expected.drop(columns="top_metric"),
                       check_exact=False, rtol=1e-8, check_dtype=False)
    assert result.loc[1, "q"] > result.loc[1, "q_limit"]  # correlation break: off the model
    assert result.loc[2, "t2"] > result.loc[2, "t2_limit"]  # extreme but on the model


@pytest.mark.parametrize(
    ("params", "window", "reference"),
    [({}, win(0, 200), "window"),
     ({"reference_start": "2024-01-01T00:00:00", "reference_end": "2024-01-01T02:00:00"},
      win(120, 200), "fixed"),
     ({"min_reference_rows": 50}, win(100, 200), "history")],
    ids=["no-history-falls-back-to-window", "fixed-period", "history-before-window"],
)
def test_pca_anomaly_reference_period(params: dict, window, reference: str) -> None:
    result = pca_anomaly(correlated(200, 0, seed=2), window=window, **params)
    assert set(result["reference"]) == {reference}
    assert len(result) == (window.end - window.start).total_seconds() / 60
    assert result["flagged"].mean() < 0.05


def test_pca_anomaly_rows_with_a_missing_metric_are_not_scored() -> None:
    clean = correlated(200, 0, seed=3)
    clean.loc[(clean["metric"] == "b") & (clean["ts"] == at(150)[0]), "value"] = NAN
    result = pca_anomaly(clean, window=win(100, 200), min_reference_rows=50)
    row = result[result["ts"] == at(150)[0]].iloc[0]
    assert np.isnan(row["t2"]) and np.isnan(row["q"]) and not row["flagged"]
    assert result["t2"].notna().sum() == 99


def test_pca_anomaly_too_small_fixed_reference_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="min_reference_rows"):
        pca_anomaly(correlated(50, 0, seed=4), reference_start="2024-01-01T00:00:00",
                    reference_end="2024-01-01T00:10:00", window=win(0, 50))
