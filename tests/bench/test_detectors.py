"""The detector evaluation harness: pooled metrics, CSV folders, the testbed and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.detectors import (
    DETECTORS,
    REFERENCE_ROWS,
    main,
    nab_experiments,
    pooled,
    read_experiment,
    read_folder,
)
from bench.detectors import evaluate as run_eval
from bench.testbed import FAULTS, write_testbed

NAB = Path("/work/shared/data/nab")


def test_pooled_metrics_by_hand() -> None:
    result = pooled(tp=60, fp=10, fn=20, tn=110)
    assert result["f1"] == pytest.approx(60 / (60 + 15))
    assert result["far"] == pytest.approx(10 / 120)
    assert result["mar"] == pytest.approx(20 / 80)


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short experiment of every fault type."""
    folder = tmp_path_factory.mktemp("testbed")
    write_testbed(folder, per_fault=1, n=900)
    return folder


def test_testbed_has_every_fault_after_the_reference(testbed: Path) -> None:
    experiments, skipped = read_folder(testbed)
    assert skipped == []
    assert sorted(e.name for e in experiments) == sorted(f"{f}_0" for f in FAULTS)
    for exp in experiments:
        assert exp.labels[:REFERENCE_ROWS + 100].sum() == 0  # faults start after row 500
        assert exp.labels.sum() >= 250
        assert exp.clean["metric"].nunique() == 8
        assert len(exp.clean) == 8 * len(exp.labels)


def test_evaluate_counts_every_scored_row_and_flag_everything_is_exact(testbed: Path) -> None:
    experiments, _ = read_folder(testbed)
    names = ["flag everything", "PCA quantile (old step)", "PCA crossval + EWMA + 3 of 5"]
    result = run_eval(experiments, {n: DETECTORS[n] for n in names})
    scored = sum(len(e.labels) - REFERENCE_ROWS for e in experiments)
    positives = sum(int(e.labels[REFERENCE_ROWS:].sum()) for e in experiments)
    for r in result.values():
        assert r["tp"] + r["fp"] + r["fn"] + r["tn"] == scored
        assert r["tp"] + r["fn"] == positives
        assert r["unscored"] == 0
    p = positives / scored
    everything = result["flag everything"]
    assert everything["f1"] == pytest.approx(2 * p / (1 + p))
    assert (everything["far"], everything["mar"]) == (1.0, 0.0)
    assert result["PCA crossval + EWMA + 3 of 5"]["far"] < 0.5


def test_any_csv_folder_comma_or_semicolon_with_duplicate_stamps(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 450
    frame = pd.DataFrame({"timestamp": ["2024-01-01 00:00:00"] * n,  # stamps are not used
                          "x": rng.normal(size=n), "y": rng.normal(size=n),
                          "changepoint": 0, "fault": [0] * 440 + [1] * 10})
    frame.to_csv(tmp_path / "run.csv", index=False)
    exp = read_experiment(tmp_path / "run.csv", label="fault")
    assert sorted(exp.clean["metric"].unique()) == ["x", "y"]
    assert len(exp.clean) == 2 * n and exp.labels.sum() == 10
    np.testing.assert_allclose(exp.clean.loc[exp.clean["metric"] == "x", "value"], frame["x"])


@pytest.mark.parametrize(
    ("content", "message"),
    [("a,b\n1,2\n", "no usable labelled CSV"), ("a,anomaly\n1,2\n", "only 0 and 1"),
     ("name,anomaly\nx,0\n", "no numeric sensor columns")],
    ids=["no-label", "label-not-binary", "no-sensors"],
)
def test_bad_csv_is_one_clear_error(tmp_path: Path, content: str, message: str,
                                    capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_folder(tmp_path)
    assert main([str(tmp_path)]) == 2
    assert message in capsys.readouterr().out


def test_unlabelled_and_short_files_are_skipped_visibly(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    pd.DataFrame({"x": range(REFERENCE_ROWS), "anomaly": 0}).to_csv(tmp_path / "short.csv",
                                                                    index=False)
    pd.DataFrame({"x": range(500)}).to_csv(tmp_path / "anomaly-free.csv", index=False)
    with pytest.raises(ValueError, match="no usable labelled CSV"):
        read_folder(tmp_path)
    pd.DataFrame({"x": np.arange(500.0), "y": np.sin(np.arange(500.0)),
                  "anomaly": [0] * 450 + [1] * 50}).to_csv(tmp_path / "run.csv", index=False)
    experiments, skipped = read_folder(tmp_path)
    assert [e.name for e in experiments] == ["run"]
    assert skipped == ["anomaly-free.csv: no label column 'anomaly'",
                       "short.csv: 400 rows, not more than 400"]
    assert main([str(tmp_path), "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "skipped anomaly-free.csv" in out and "| flag everything |" in out
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["experiments"] == 1 and len(report["skipped"]) == 2
    assert report["results"]["flag everything"]["tp"] == 50


@pytest.mark.skipif(not (NAB / "combined_windows.json").exists(), reason="NAB files absent")
def test_nab_labels_follow_the_combined_windows() -> None:
    machine, ambient = nab_experiments(NAB)
    assert len(machine.labels) == 22695 and len(ambient.labels) == 7267
    assert machine.clean["metric"].unique().tolist() == ["value"]
    assert 0.05 < machine.labels.mean() < 0.15  # NAB's windows cover ~10 % of each file
    assert machine.labels[:REFERENCE_ROWS].sum() == 0


def test_rows_with_a_missing_sensor_are_counted_unscored(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=600)
    frame = pd.DataFrame({"a": a, "b": 2 * a + rng.normal(0, 0.1, 600), "anomaly": 0})
    frame.loc[[450, 451, 452], "b"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    experiments, _ = read_folder(tmp_path)
    result = run_eval(experiments, {"pca": DETECTORS["PCA crossval + EWMA + 3 of 5"],
                                    "all": DETECTORS["flag everything"]})
    assert result["pca"]["unscored"] == 3 and result["all"]["unscored"] == 0
    assert result["pca"]["tn"] + result["pca"]["fp"] == 200
