"""Golden tests: rate, acceleration, distance travelled and norms — a gap is never a zero."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.steps.derivatives import derivatives
from tests.steps.builders import at, grid, win

NAN = np.nan


def feature_rows(rows: list[tuple[float, str, float, float, float, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["minute", "metric", "value", "rate", "accel", "distance"])
    df.insert(0, "ts", at(*df.pop("minute")))
    return df.astype({c: "float64" for c in ("value", "rate", "accel", "distance")})


CASES = [
    pytest.param(
        grid("x", [0, 1, 3, None, 4, 6]), {}, win(0, 6),
        feature_rows([(0, "x", 0, NAN, NAN, NAN), (1, "x", 1, 1, NAN, 1),
                      (2, "x", 3, 2, 1, 3), (3, "x", NAN, NAN, NAN, NAN),
                      (4, "x", 4, NAN, NAN, NAN), (5, "x", 6, 2, NAN, 5)]),
        id="gap-gives-null-rate-and-distance-not-zero",
    ),
    pytest.param(
        grid("x", [0, 4, 8], step_min=2), {"per": "1min"}, win(0, 6),
        feature_rows([(0, "x", 0, NAN, NAN, NAN), (2, "x", 4, 2, NAN, 4),
                      (4, "x", 8, 2, 0, 8)]),
        id="rate-per-minute-on-a-2min-grid",
    ),
    pytest.param(
        grid("x", [1, 2], step_min=10), {"max_step": "5min"}, win(0, 20),
        feature_rows([(0, "x", 1, NAN, NAN, NAN), (10, "x", 2, NAN, NAN, NAN)]),
        id="step-longer-than-max-step-is-unknown",
    ),
    pytest.param(
        pd.concat([grid("x", [0, 3]), grid("y", [0, 4])], ignore_index=True),
        {"norm_of": ["x", "y"], "norm_name": "speed"}, win(0, 2),
        feature_rows([(0, "speed", 0, NAN, NAN, NAN), (0, "x", 0, NAN, NAN, NAN),
                      (0, "y", 0, NAN, NAN, NAN), (1, "speed", 5, 5, NAN, 5),
                      (1, "x", 3, 3, NAN, 3), (1, "y", 4, 4, NAN, 4)]),
        id="euclidean-norm-of-two-metrics",
    ),
    pytest.param(
        pd.concat([grid("x", [0, 3]), grid("y", [0, None])], ignore_index=True),
        {"norm_of": ["x", "y"], "metrics": ["x"]}, win(0, 2),
        feature_rows([(0, "norm", 0, NAN, NAN, NAN), (0, "x", 0, NAN, NAN, NAN),
                      (1, "norm", NAN, NAN, NAN, NAN), (1, "x", 3, 3, NAN, 3)]),
        id="norm-is-null-when-a-component-is",
    ),
    pytest.param(
        grid("x", [0, 1, 3], start_min=-1), {}, win(0, 2),
        feature_rows([(0, "x", 1, 1, NAN, 1), (1, "x", 3, 2, 1, 3)]),
        id="lookback-row-defines-first-rate-distance-starts-at-window",
    ),
]


@pytest.mark.parametrize(("clean", "params", "window", "expected"), CASES)
def test_derivatives_golden(clean: pd.DataFrame, params: dict, window, expected) -> None:
    assert_frame_equal(derivatives(clean, window=window, **params), expected)


def test_distance_adds_up_across_windows() -> None:
    clean = grid("x", [0, 2, 1, 5, 4, 4, 7])
    whole = derivatives(clean, window=win(0, 7))
    first = derivatives(clean, window=win(0, 3))
    second = derivatives(clean, window=win(3, 7))
    total = whole["distance"].iloc[-1]
    assert total == pytest.approx(first["distance"].iloc[-1] + second["distance"].iloc[-1])
    assert total == pytest.approx(2 + 1 + 4 + 1 + 0 + 3)
