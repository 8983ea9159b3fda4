"""Golden tests: moving-average and lag-regression forecasts with their stored backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.steps.forecast import forecast, forecast_errors
from tests.steps.builders import at, grid, win

NAN = np.nan


def forecast_rows(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["origin", "target", "method", "horizon", "yhat", "actual"])
    return pd.DataFrame({
        "ts": at(*df["origin"]), "target_ts": at(*df["target"]), "metric": "temperature",
        "method": df["method"], "horizon": df["horizon"].astype("int64"),
        "yhat": df["yhat"].astype("float64"), "actual": df["actual"].astype("float64"),
        "error": (df["yhat"] - df["actual"]).astype("float64"),
    })


MA = "moving_average"
MA_CASES = [
    pytest.param(
        grid("temperature", list(range(10))), {"history": 3, "horizon": 2}, win(0, 10),
        forecast_rows([(5, 6, MA, 1, 4.0, 6.0), (5, 7, MA, 2, 4.0, 7.0),
                       (9, 10, MA, 1, 8.0, NAN), (9, 11, MA, 2, 8.0, NAN)]),
        id="origins-every-5min-plus-last-target-beyond-window-has-no-actual",
    ),
    pytest.param(
        grid("temperature", [0, 1, 2, 3, None, 5, 6, 7, 8, 9]), {"history": 3, "horizon": 2},
        win(0, 10), forecast_rows([(9, 10, MA, 1, 8.0, NAN), (9, 11, MA, 2, 8.0, NAN)]),
        id="origin-with-a-gap-in-its-history-is-skipped",
    ),
    pytest.param(
        grid("temperature", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
             filled=[False] * 6 + [True] + [False] * 3), {"history": 3, "horizon": 2},
        win(0, 10), forecast_rows([(5, 6, MA, 1, 4.0, NAN), (5, 7, MA, 2, 4.0, 7.0),
                                   (9, 10, MA, 1, 8.0, NAN), (9, 11, MA, 2, 8.0, NAN)]),
        id="filled-cell-is-not-an-actual",
    ),
    pytest.param(
        grid("temperature", list(range(-5, 10)), start_min=-5), {"history": 3, "horizon": 2},
        win(0, 10),
        forecast_rows([(0, 1, MA, 1, -1.0, 1.0), (0, 2, MA, 2, -1.0, 2.0),
                       (5, 6, MA, 1, 4.0, 6.0), (5, 7, MA, 2, 4.0, 7.0),
                       (9, 10, MA, 1, 8.0, NAN), (9, 11, MA, 2, 8.0, NAN)]),
        id="lookback-history-allows-an-origin-at-window-start",
    ),
]


@pytest.mark.parametrize(("clean", "params", "window", "expected"), MA_CASES)
def test_moving_average_forecast_golden(clean, params, window, expected) -> None:
    result = forecast(clean, window=window, methods=[MA], origin_every="5min", **params)
    assert_frame_equal(result, expected)


def test_lag_regression_extrapolates_a_trend_the_moving_average_cannot() -> None:
    clean = grid("temperature", list(1 + 0.5 * np.arange(600)), start_min=-300)
    result = forecast(clean, window=win(0, 300), origin_every="1h", ridge=1e-6)
    lr = result[result["method"] == "lag_regression"].dropna(subset=["actual"])
    ma = result[result["method"] == MA].dropna(subset=["actual"])
    # origins 0, 60, ..., 240 (the last one's targets are after the window: no actuals); at 0
    # the 300 min of lookback give fewer than min_train=240 complete examples
    assert (len(ma), len(lr)) == (5 * 15, 4 * 15)
    assert lr["error"].abs().max() < 1e-3
    assert ma["error"].abs().min() > 15  # lags 30 min behind a 0.5/min trend, at least


def test_lag_regression_beats_moving_average_on_a_periodic_signal() -> None:
    minutes = np.arange(-3 * 1440, 1440)
    rng = np.random.default_rng(5)
    values = 20 + 2 * np.sin(2 * np.pi * minutes / 90) + rng.normal(0, 0.05, len(minutes))
    clean = grid("temperature", list(values), start_min=-3 * 1440)
    errors = forecast_errors(forecast(clean, window=win(0, 1440)), window=win(0, 1440))
    overall = errors[errors["horizon"].isna()].set_index("method")["mae"]
    assert overall["lag_regression"] < 0.2 * overall[MA]


def test_lag_regression_never_trains_on_the_future() -> None:
    base = list(np.sin(np.arange(800) / 7.0))
    changed = base[:500] + [b + 5 for b in base[500:]]
    params = dict(window=win(400, 401), methods=["lag_regression"], min_train=100)
    before = forecast(grid("temperature", base), **params)
    after = forecast(grid("temperature", changed), **params)
    # the origin at minute 400 sees data up to 400; changing minutes >= 500 must not matter
    assert_frame_equal(before[["ts", "horizon", "yhat"]], after[["ts", "horizon", "yhat"]])


def test_lag_regression_needs_enough_training_examples() -> None:
    clean = grid("temperature", list(np.arange(100.0)))
    result = forecast(clean, window=win(0, 100), min_train=1000)
    assert set(result["method"]) == {MA}


def test_unknown_method_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown forecast method"):
        forecast(grid("temperature", [1.0]), methods=["prophet"], window=win(0, 1))


def test_forecast_errors_golden() -> None:
    fc = forecast_rows([(0, 1, MA, 1, 2.0, 1.0), (5, 6, MA, 1, 1.0, 4.0),
                        (0, 2, MA, 2, 3.0, 1.0), (5, 7, MA, 2, 1.0, NAN),
                        (0, 1, "lag_regression", 1, 1.5, 1.0)])
    result = forecast_errors(fc, window=win(0, 10))
    expected = pd.DataFrame({
        "ts": at(*[0] * 5), "metric": "temperature",
        "method": ["lag_regression", "lag_regression", MA, MA, MA],
        "horizon": pd.array([1, None, 1, 2, None], dtype="Int64"),
        "n": pd.array([1, 1, 2, 1, 3], dtype="int64"),
        "mae": [0.5, 0.5, 2.0, 2.0, 2.0],
        "rmse": [0.5, 0.5, np.sqrt(5), 2.0, np.sqrt(14 / 3)],
        "bias": [0.5, 0.5, -1.0, 2.0, 0.0],
    })
    assert_frame_equal(result, expected, check_exact=False, rtol=1e-12)
