"""The multivariate detectors' limits, alarm rule, contributions and reference choice."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from meshinsights.errors import StepError
from meshinsights.steps.anomaly import pca_anomaly
from meshinsights.steps.limits import q_limit, t2_limit
from meshinsights.steps.nonparametric import knn_anomaly, vote_anomaly
from meshinsights.steps.registry import get_step
from tests.steps.builders import at, grid, win


def sensors(n: int, seed: int, *, shift_c: float = 0.0, from_row: int | None = None,
            break_b_from: int | None = None) -> pd.DataFrame:
    """Three sensors, b = 2a + noise, c independent; optional shift of c / break of b."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    b = 2 * a + rng.normal(0, 0.2, n)
    c = rng.normal(5, 1, n)
    if from_row is not None:
        c[from_row:] += shift_c
    if break_b_from is not None:
        b[break_b_from:] = rng.normal(0, 2, n - break_b_from)
    return pd.concat([grid("a", list(a)), grid("b", list(b)), grid("c", list(c))],
                     ignore_index=True)


def wide_of(clean: pd.DataFrame) -> np.ndarray:
    return clean.pivot(index="ts", columns="metric", values="value").to_numpy()


def test_statistical_limits_are_the_f_and_jackson_mudholkar_limits_of_the_reference() -> None:
    clean = sensors(500, seed=1)
    result = pca_anomaly(clean, reference_rows=300, limits="statistical", alpha_t2=0.01,
                         alpha_q=0.05, window=win(0, 500))
    ref = wide_of(clean)[:300]
    z = (ref - ref.mean(axis=0)) / ref.std(axis=0, ddof=1)
    eig = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1]
    k = int(np.searchsorted(np.cumsum(eig) / eig.sum(), 0.9) + 1)
    assert set(result["n_components"]) == {k}
    # T²: k (n-1)(n+1) / (n (n-k)) F(1-a; k, n-k), by hand with scipy's F quantile
    expected_t2 = k * 299 * 301 / (300 * (300 - k)) * stats.f.ppf(0.99, k, 300 - k)
    assert result["t2_limit"].iloc[0] == pytest.approx(expected_t2, rel=1e-10)
    assert result["t2_limit"].iloc[0] == pytest.approx(t2_limit(300, k, 0.01), rel=1e-12)
    assert result["q_limit"].iloc[0] == pytest.approx(q_limit(eig[k:], 0.05), rel=1e-8)
    assert result["reference"].unique().tolist() == ["first_rows"]
    assert result["in_reference"].tolist() == [True] * 300 + [False] * 200
    assert result["detector"].unique().tolist() == ["pca"]
    # in control: few alarms, and each level is its own
    assert result["flagged"].mean() < 0.06


def test_a_shift_is_flagged_with_the_shifted_sensor_as_top_metric() -> None:
    clean = sensors(500, seed=2, shift_c=4.0, from_row=400)
    result = pca_anomaly(clean, reference_rows=300, limits="statistical", window=win(0, 500))
    tail = result.iloc[400:]
    assert tail["flagged"].mean() > 0.8  # a 4 sd shift on one of k = 2 components: T² ≈ 16 > 9.2
    assert (tail.loc[tail["flagged"], "top_metric"] == "c").mean() > 0.9
    assert (tail["top_share"] > 0.5).mean() > 0.9
    assert (result["score"] > 1).eq(result["breach"]).all()


def test_t2_contributions_sum_to_t2() -> None:
    from meshinsights.steps.anomaly import fit_pca, pca_scores, t2_contributions

    x = wide_of(sensors(300, seed=3))
    model = fit_pca(x, 0.9)
    t2, _, _ = pca_scores(model, x[:20] * 1.5)
    np.testing.assert_allclose(t2_contributions(model, x[:20] * 1.5).sum(axis=1), t2,
                               rtol=1e-10)


def test_ewma_and_persistence_ignore_a_single_spike_but_keep_a_sustained_shift() -> None:
    clean = sensors(500, seed=4, shift_c=5.0, from_row=450)
    spike = (clean["metric"] == "c") & (clean["ts"] == at(350)[0])
    clean.loc[spike, "value"] = 10.0  # a 5 sd spike
    raw = pca_anomaly(clean, reference_rows=300, limits="statistical", window=win(0, 500))
    assert bool(raw.loc[350, "flagged"])
    smooth = pca_anomaly(clean, reference_rows=300, limits="statistical", smoothing=0.2,
                         persist_k=3, persist_n=5, window=win(0, 500))
    assert not smooth.loc[345:360, "flagged"].any()
    assert smooth.loc[460:, "flagged"].mean() > 0.95


def test_crossval_limits_are_wider_than_in_sample_quantiles() -> None:
    clean = sensors(500, seed=5)
    insample = pca_anomaly(clean, reference_rows=300, limits="quantile", window=win(0, 500))
    crossval = pca_anomaly(clean, reference_rows=300, limits="crossval", window=win(0, 500))
    assert crossval["q_limit"].iloc[0] > insample["q_limit"].iloc[0]


def test_reference_duration_is_the_head_of_the_window() -> None:
    clean = sensors(300, seed=6)
    result = pca_anomaly(clean, reference_duration="2h", window=win(60, 300))
    assert result["reference"].unique().tolist() == ["first_duration"]
    assert result["in_reference"].sum() == 120
    assert result.loc[result["in_reference"], "ts"].max() == at(179)[0]


def test_no_reference_is_logged_and_can_be_refused(caplog: pytest.LogCaptureFixture) -> None:
    clean = sensors(200, seed=7)
    with caplog.at_level(logging.WARNING, logger="meshinsights.steps.multivariate"):
        result = pca_anomaly(clean, window=win(0, 200))
    assert set(result["reference"]) == {"window"}
    assert "fitting on the scored window itself" in caplog.text
    with pytest.raises(ValueError, match="no reference period given.*reference_rows"):
        pca_anomaly(clean, require_reference=True, window=win(0, 200))
    with pytest.raises(ValueError, match="not several"):
        pca_anomaly(clean, reference_rows=100, reference_duration="1h", window=win(0, 200))
    with pytest.raises(ValueError, match="first 200 rows cover the whole window"):
        knn_anomaly(clean, reference_rows=200, window=win(0, 200))
    with pytest.raises(ValueError, match="first 100 rows of the window has 100 complete rows"):
        knn_anomaly(clean, reference_rows=100, min_reference_rows=150, window=win(0, 200))


def test_bad_params_are_refused_when_the_config_loads() -> None:
    with pytest.raises(StepError, match="limits"):
        get_step("pca_anomaly").bind_params({"limits": "magic"})
    with pytest.raises(StepError, match="alpha_q"):
        get_step("pca_anomaly").bind_params({"alpha_q": 1.5})
    with pytest.raises(StepError, match="reference_duration.*not a duration"):
        get_step("knn_anomaly").bind_params({"reference_duration": "ten minutes"})
    with pytest.raises(ValueError, match="persist_k=4 must be between 1 and persist_n=3"):
        pca_anomaly(sensors(200, seed=1), reference_rows=150, persist_k=4, persist_n=3,
                    window=win(0, 200))


def test_knn_flags_a_correlation_break_and_names_the_broken_pair() -> None:
    clean = sensors(600, seed=8, break_b_from=450)
    result = knn_anomaly(clean, reference_rows=300, smoothing=0.2, persist_k=3, persist_n=5,
                         window=win(0, 600))
    assert result["detector"].unique().tolist() == ["knn"]
    assert result["t2"].isna().all() and result["n_components"].isna().all()
    assert result.loc[300:449, "flagged"].mean() < 0.05
    tail = result.loc[460:]
    assert tail["flagged"].mean() > 0.7
    # a broken a-b relation cannot say which of the two moved; c is not to blame
    assert tail.loc[tail["flagged"], "top_metric"].isin(["a", "b"]).mean() > 0.9


def mv_rows(flagged: list[bool], score: list[float], detector: str) -> pd.DataFrame:
    n = len(flagged)
    return pd.DataFrame({"ts": at(*range(n)), "t2": 1.0, "q": 2.0, "t2_limit": 3.0,
                         "q_limit": 4.0, "n_components": 2, "reference": "first_rows",
                         "top_metric": detector, "flagged": flagged, "detector": detector,
                         "score": score, "breach": [s > 1 for s in score], "top_share": 0.5,
                         "in_reference": False})


@pytest.mark.parametrize(
    ("min_votes", "flagged", "score"),
    [(1, [True, True, True, False], [3.0, 2.0, 1.5, 0.5]),
     (2, [False, False, True, False], [0.5, 0.2, 1.2, 0.1])],
    ids=["either", "both"],
)
def test_vote(min_votes: int, flagged: list[bool], score: list[float]) -> None:
    pca = mv_rows([True, False, True, False], [3.0, 0.2, 1.5, 0.5], "pca")
    knn = mv_rows([False, True, True, False], [0.5, 2.0, 1.2, 0.1], "knn")
    result = vote_anomaly(pca, knn, min_votes=min_votes, window=win(0, 4))
    assert result["flagged"].tolist() == flagged
    np.testing.assert_allclose(result["score"], score)
    assert result["top_metric"].tolist() == ["pca", "knn", "pca", "pca"]
    assert result["detector"].unique().tolist() == ["vote"]
    assert result["t2_limit"].tolist() == [3.0] * 4


def test_knn_whitening_catches_a_small_break_that_plain_distance_misses() -> None:
    clean = sensors(600, seed=9)
    # b = 2a + noise(0.2): moving b by 0.8 is 4 noise sd off the relation, 0.4 sd of b itself
    clean.loc[(clean["metric"] == "b") & (clean["ts"] >= at(450)[0]), "value"] += 0.8
    params = {"reference_rows": 300, "smoothing": 0.2, "persist_k": 3, "persist_n": 5,
              "window": win(0, 600)}
    whitened = knn_anomaly(clean, **params)
    plain = knn_anomaly(clean, whiten=False, **params)
    assert whitened.loc[470:, "flagged"].mean() > 0.8
    assert plain.loc[470:, "flagged"].mean() < 0.3
    assert whitened.loc[300:449, "flagged"].mean() < 0.05


def test_knn_contributions_sum_to_the_whitened_distance() -> None:
    from meshinsights.steps.nonparametric import _contributions, fit_scaler, knn_distance

    x = wide_of(sensors(300, seed=10))
    x = np.column_stack([x, x[:, 0]])  # a duplicated sensor: its null axis is dropped
    scaler = fit_scaler(x[:200], whiten=True)
    assert scaler[1].n_components_ == 3
    _, idx = knn_distance(scaler.transform(x[:200]), scaler.transform(x[200:]), 5)
    terms = _contributions(scaler, x[:200], x[200:], idx)
    centre = scaler.transform(x[:200])[idx].mean(axis=1)
    expected = np.sum((scaler.transform(x[200:]) - centre) ** 2, axis=1)
    np.testing.assert_allclose(terms.sum(axis=1), expected, rtol=1e-8)


@pytest.mark.parametrize(
    ("override", "error"),
    [({"reference_rows": 400, "limits": "crossval", "smoothing": 0.1}, None),
     ({"reference_rows": 400, "limits": "magic"}, "parameter limits = 'magic'")],
    ids=["valid", "bad-limits"],
)
def test_reference_and_limits_are_set_per_machine(tmp_path, override: dict,
                                                  error: str | None) -> None:
    import shutil

    import yaml

    from meshinsights.config import load_configs
    from tests.conftest import CONFIGS

    root = tmp_path / "configs"
    shutil.copytree(CONFIGS, root)
    path = root / "machines" / "rig-1.yaml"
    path.write_text(yaml.safe_dump({"machine_id": "rig-1", "pipeline": "hvac_power",
                                    "overrides": {"anomalies_mv": override}}))
    loaded = load_configs(root)
    if error:
        assert error in loaded.errors[str(path)]
        return
    assert loaded.errors == {}
    step = next(s for s in loaded.pipelines["hvac_power"].steps if s.id == "anomalies_mv")
    params = loaded.machines["rig-1"].params_for(step)
    assert {k: params[k] for k in override} == override
