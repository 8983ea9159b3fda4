"""Golden tests: resampling to a fixed grid with explicit gaps, and rolling statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from meshinsights.steps.resample import fill_short_gaps, resample, rolling_stats
from tests.steps.builders import at, grid, telemetry, win

NAN = np.nan


def clean_rows(metric: str, minutes: list[float], values: list[float], n_obs: list[int],
               filled: list[bool], unit: str | None) -> pd.DataFrame:
    return pd.DataFrame({"ts": at(*minutes), "metric": metric, "value": values, "unit": unit,
                         "n_obs": pd.array(n_obs, dtype="int64"), "filled": filled})


GAPS = telemetry("temperature", [0, 1, 3, 4, 10, 11], [1, 2, 4, 5, 11, 12], "degC")

RESAMPLE_CASES = [
    pytest.param(
        GAPS, dict(fill="ffill", fill_limit=2), win(0, 12),
        clean_rows("temperature", list(range(12)),
                   [1, 2, 2, 4, 5, NAN, NAN, NAN, NAN, NAN, 11, 12],
                   [1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1],
                   [False, False, True] + [False] * 9, "degC"),
        id="ffill-short-gap-filled-long-gap-left-null",
    ),
    pytest.param(
        GAPS, dict(fill="linear", fill_limit=2), win(0, 12),
        clean_rows("temperature", list(range(12)),
                   [1, 2, 3, 4, 5, NAN, NAN, NAN, NAN, NAN, 11, 12],
                   [1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1],
                   [False, False, True] + [False] * 9, "degC"),
        id="linear-fill",
    ),
    pytest.param(
        GAPS, dict(fill="none", fill_limit=2), win(0, 12),
        clean_rows("temperature", list(range(12)),
                   [1, 2, NAN, 4, 5, NAN, NAN, NAN, NAN, NAN, 11, 12],
                   [1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1], [False] * 12, "degC"),
        id="no-fill",
    ),
    pytest.param(
        telemetry("temperature", [2, 3], [5, 6], "degC"), dict(fill="ffill", fill_limit=5),
        win(0, 6),
        clean_rows("temperature", list(range(6)), [NAN, NAN, 5, 6, NAN, NAN],
                   [0, 0, 1, 1, 0, 0], [False] * 6, "degC"),
        id="gaps-at-either-end-never-filled",
    ),
    pytest.param(
        telemetry("power_kw", [0, 0.5, 1], [1, 3, 4], "kW"), dict(agg="mean"), win(0, 2),
        clean_rows("power_kw", [0, 1], [2.0, 4.0], [2, 1], [False, False], "kW"),
        id="mean-of-samples-in-a-cell",
    ),
    pytest.param(
        telemetry("power_kw", [0, 0.5, 1], [1, 3, 4], "kW"), dict(agg="last"), win(0, 2),
        clean_rows("power_kw", [0, 1], [3.0, 4.0], [2, 1], [False, False], "kW"),
        id="last-sample-in-a-cell",
    ),
    pytest.param(
        telemetry("temperature", [-2, 1], [5, 7], "degC"), dict(fill="ffill", fill_limit=2),
        win(0, 2),
        clean_rows("temperature", [0, 1], [5.0, 7.0], [0, 1], [True, False], "degC"),
        id="lookback-rows-fill-a-gap-at-window-start-output-trimmed",
    ),
]


@pytest.mark.parametrize(("telemetry_in", "params", "window", "expected"), RESAMPLE_CASES)
def test_resample_golden(telemetry_in: pd.DataFrame, params: dict, window, expected) -> None:
    result = resample(telemetry_in, window=window, **params)
    assert_frame_equal(result, expected)


def test_resample_absent_metric_gets_an_all_null_grid() -> None:
    result = resample(telemetry("temperature", [0, 1], [1, 2], "degC"),
                      metrics=["humidity", "temperature"], window=win(0, 2))
    expected = pd.concat([
        clean_rows("humidity", [0], [NAN], [0], [False], None),
        clean_rows("temperature", [0], [1.0], [1], [False], "degC"),
        clean_rows("humidity", [1], [NAN], [0], [False], None),
        clean_rows("temperature", [1], [2.0], [1], [False], "degC"),
    ], ignore_index=True)
    assert_frame_equal(result, expected, check_dtype=False)
    assert result["value"].dtype == "float64"


@pytest.mark.parametrize(
    ("values", "limit", "method", "expected"),
    [
        ([1, NAN, 3], 1, "ffill", [1, 1, 3]),
        ([1, NAN, NAN, 4], 1, "ffill", [1, NAN, NAN, 4]),
        ([1, NAN, NAN, 4], 2, "linear", [1, 2, 3, 4]),
        ([NAN, 2, NAN], 5, "ffill", [NAN, 2, NAN]),
        ([1, NAN, 3], 0, "ffill", [1, NAN, 3]),
        ([1, NAN, 3], 3, "none", [1, NAN, 3]),
    ],
    ids=["fill-1", "gap-longer-than-limit-untouched", "linear", "ends-untouched",
         "limit-0", "method-none"],
)
def test_fill_short_gaps(values, limit, method, expected) -> None:
    result = fill_short_gaps(pd.Series(values, dtype="float64"), limit=limit, method=method)
    assert_series_equal(result, pd.Series(expected, dtype="float64"))


def rolling_rows(metric: str, minutes: list[float], mean: list[float], std: list[float],
                 mn: list[float], mx: list[float], med: list[float], count: list[int]
                 ) -> pd.DataFrame:
    return pd.DataFrame({"ts": at(*minutes), "metric": metric, "mean": mean, "std": std,
                         "min": mn, "max": mx, "median": med,
                         "count": pd.array(count, dtype="int64")})


ROLLING_CASES = [
    pytest.param(
        grid("t", [1, 2, 3, 5]), dict(span="3min", min_count=2), win(0, 4),
        rolling_rows("t", [0, 1, 2, 3], [NAN, 1.5, 2, 10 / 3],
                     [NAN, np.std([1, 2], ddof=1), 1.0, np.std([2, 3, 5], ddof=1)],
                     [NAN, 1, 1, 2], [NAN, 2, 3, 5], [NAN, 1.5, 2, 3], [1, 2, 3, 3]),
        id="trailing-3min",
    ),
    pytest.param(
        grid("t", [1, 9, 3, None], filled=[False, True, False, False]),
        dict(span="3min", min_count=2), win(0, 4),
        rolling_rows("t", [0, 1, 2, 3], [NAN, NAN, 2, NAN], [NAN, NAN, np.sqrt(2), NAN],
                     [NAN, NAN, 1, NAN], [NAN, NAN, 3, NAN], [NAN, NAN, 2, NAN], [1, 1, 2, 1]),
        id="filled-and-null-cells-do-not-count",
    ),
    pytest.param(
        grid("t", [1, 2, 3, 5], start_min=-2), dict(span="3min", min_count=2), win(0, 2),
        rolling_rows("t", [0, 1], [2, 10 / 3], [1.0, np.std([2, 3, 5], ddof=1)], [1.0, 2.0],
                     [3.0, 5.0], [2.0, 3.0], [3, 3]),
        id="lookback-warms-up-window-start",
    ),
]


@pytest.mark.parametrize(("clean", "params", "window", "expected"), ROLLING_CASES)
def test_rolling_stats_golden(clean: pd.DataFrame, params: dict, window, expected) -> None:
    assert_frame_equal(rolling_stats(clean, window=window, **params), expected)
