"""Golden tests: power variance classes, baseline alarm thresholds, threshold updates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.steps.power import (
    alarm_thresholds,
    classify_cv,
    power_variance,
    update_thresholds,
)
from tests.steps.builders import at, cycles_frame, win

NAN = np.nan
DAY = win(0, 1440)


def stage_cycles(stage: int, medians: list[float], first_start: float = 0) -> pd.DataFrame:
    return cycles_frame([(first_start + 30 * i, 10, stage, m) for i, m in enumerate(medians)])


@pytest.mark.parametrize(
    ("cv", "expected"),
    [(0.05, "low"), (0.1, "low"), (0.2, "medium"), (0.3, "high"), (0.9, "high"),
     (NAN, "unknown")],
    ids=["low", "at-low-max", "medium", "at-high-min", "high", "nan"],
)
def test_classify_cv(cv: float, expected: str) -> None:
    assert classify_cv(cv, low_max=0.1, high_min=0.3) == expected


def variance_row(cls: str, cvs: dict[int, float], n: int, cycles: pd.DataFrame) -> pd.DataFrame:
    worst = max(cvs, key=cvs.__getitem__) if cvs else None
    on = cycles[cycles["stage"] >= 1]
    return pd.DataFrame({
        "ts": at(0), "variance_class": cls, "cv": [cvs[worst] if cvs else NAN],
        "worst_stage": pd.array([worst], dtype="Int64"), "n_cycles": [n],
        "cv_by_stage": json.dumps({str(k): round(v, 6) for k, v in cvs.items()},
                                  separators=(",", ":")),
        "low_max": 0.1, "high_min": 0.3, "basis_start": [on["start_ts"].min()],
        "basis_end": [on["ts"].max()],
    })


def cv(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / np.mean(values))


STEADY = [3.0, 3.1, 2.9, 3.0, 3.0]
ERRATIC = [2.0, 4.0, 3.0, 1.5, 4.5]
WOBBLY = [3.0, 3.6, 2.4, 3.0, 3.0]

VARIANCE_CASES = [
    pytest.param(pd.concat([stage_cycles(1, STEADY), stage_cycles(2, [6.0, 6.0], 200),
                            stage_cycles(0, [0.3, 9.0, 0.1, 0.3, 0.3], 400)], ignore_index=True),
                 "low", {1: cv(STEADY)}, 7, id="low-stage-with-too-few-cycles-and-off-ignored"),
    pytest.param(stage_cycles(1, ERRATIC), "high", {1: cv(ERRATIC)}, 5, id="high"),
    pytest.param(stage_cycles(1, WOBBLY), "medium", {1: cv(WOBBLY)}, 5, id="medium"),
    pytest.param(stage_cycles(1, STEADY[:3]), "unknown", {}, 3, id="too-few-cycles-unknown"),
    pytest.param(pd.concat([stage_cycles(1, STEADY), stage_cycles(2, [2 * m for m in ERRATIC],
                                                                  200)], ignore_index=True),
                 "high", {1: cv(STEADY), 2: cv(ERRATIC)}, 10, id="most-variable-stage-decides"),
]


@pytest.mark.parametrize(("cycles", "cls", "cvs", "n"), VARIANCE_CASES)
def test_power_variance_golden(cycles: pd.DataFrame, cls: str, cvs: dict, n: int) -> None:
    result = power_variance(cycles, window=DAY)
    assert_frame_equal(result, variance_row(cls, cvs, n, cycles), check_exact=False, rtol=1e-9)


def test_power_variance_ignores_rejected_cycles() -> None:
    rejected = stage_cycles(1, [9.0, 0.5, 9.0]).assign(valid=False, reject_reason="too_short")
    cycles = pd.concat([stage_cycles(1, STEADY, 300), rejected], ignore_index=True)
    assert power_variance(cycles, window=DAY)["variance_class"].tolist() == ["low"]


def threshold_rows(rows: list[tuple[int, str, float, float, float, int]],
                   cycles: pd.DataFrame) -> pd.DataFrame:
    out = []
    for stage, method, center, lo, hi, n in rows:
        c = cycles[cycles["stage"] == stage]
        out.append({"ts": at(0)[0], "metric": "power_kw", "stage": stage, "method": method,
                    "center": center, "lower": lo, "upper": hi, "n_cycles": n,
                    "basis_start": c["start_ts"].min(), "basis_end": c["ts"].max()})
    return pd.DataFrame(out).astype({"ts": "datetime64[us, UTC]"})


BASIS = pd.concat([stage_cycles(1, [3.0, 3.1, 2.9, 3.0, 3.4]), stage_cycles(2, [6.0] * 5, 200),
                   stage_cycles(0, [0.3] * 4, 400)], ignore_index=True)
HALF = 3 * 1.4826 * 0.1

THRESHOLD_CASES = [
    pytest.param({"method": "mad", "k": 3.0}, [(1, "mad", 3.0, 3.0 - HALF, 3.0 + HALF, 5),
                                               (2, "mad", 6.0, 5.7, 6.3, 5)],
                 id="median-k-mad-with-zero-width-floor-and-stage-0-too-few"),
    pytest.param({"method": "percentile", "percentiles": [0, 100]},
                 [(1, "percentile", 3.0, 2.85, 3.4, 5), (2, "percentile", 6.0, 5.7, 6.3, 5)],
                 id="percentiles-with-floor"),
    pytest.param({"method": "mad", "min_cycles": 4, "stages": [0]},
                 [(0, "mad", 0.3, 0.285, 0.315, 4)], id="off-stage-when-asked"),
]


@pytest.mark.parametrize(("params", "rows"), THRESHOLD_CASES)
def test_alarm_thresholds_golden(params: dict, rows: list) -> None:
    result = alarm_thresholds(BASIS, window=DAY, **params)
    assert_frame_equal(result, threshold_rows(rows, BASIS), check_exact=False, rtol=1e-9)


def test_alarm_thresholds_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="'mad' or 'percentile'"):
        alarm_thresholds(BASIS, window=DAY, method="zscore")


@pytest.mark.parametrize(
    ("variance_class", "allowed", "rows"),
    [("low", ["low"], 2), ("high", ["low"], 0), ("medium", ["low", "medium"], 2),
     ("unknown", ["low"], 0)],
    ids=["low-updates", "high-does-not", "medium-when-allowed", "unknown-does-not"],
)
def test_update_thresholds_golden(variance_class: str, allowed: list[str], rows: int) -> None:
    thresholds = alarm_thresholds(BASIS, window=DAY)
    variance = power_variance(BASIS, window=DAY).assign(variance_class=variance_class)
    result = update_thresholds(thresholds, variance, allowed_classes=allowed, window=DAY)
    expected = thresholds[["ts", "metric", "stage", "lower", "upper", "center", "method",
                           "n_cycles"]].head(rows).copy()
    expected["valid_from"] = pd.Series([pd.Timestamp(DAY.end)] * rows,
                                       dtype="datetime64[us, UTC]", index=expected.index)
    expected["variance_class"] = variance_class
    expected["cv"] = float(variance["cv"].iloc[0])
    if rows:
        assert_frame_equal(result, expected)
    else:
        assert result.empty
