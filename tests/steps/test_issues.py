"""Golden tests: well-known issue checks, one ``issues`` row per finding with evidence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.steps.issues import detect_issues, theil_sen_slope
from tests.steps.builders import T0, at, cycles_frame, grid, win

NO_QUARANTINE = pd.DataFrame(columns=["machine_id", "ts"])
NO_CYCLES = pd.DataFrame(columns=["machine_id", "ts"])


def issue(check: str, metric: str, severity: str, value: float, limit: float, first: float,
          last: float, message: str, **evidence) -> dict:
    return {"check": check, "metric": metric, "severity": severity, "value": float(value),
            "limit": float(limit), "first_ts": at(first)[0], "last_ts": at(last)[0],
            "message": message,
            "evidence": json.dumps(evidence, sort_keys=True, separators=(",", ":"))}


def issue_rows(window_start_min: float, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, "ts", at(*[window_start_min] * len(rows)))
    return df


def short_cycles(n: int, on: float, off: float) -> pd.DataFrame:
    rows = []
    for i in range(n):
        start = i * (on + off)
        rows += [(start, on, 1, 3.0), (start + on, off, 0, 0.3)]
    return cycles_frame(rows)


def flat_temperature() -> pd.DataFrame:
    values = list(20 + np.arange(300) * 0.01)
    values[100:250] = [21.5] * 150
    return grid("temperature", values)


def drifting(per_day: float, days: int = 5) -> pd.DataFrame:
    hours = np.arange(days * 24)
    values = 20 + per_day * (hours // 24) + 0.3 * np.sin(2 * np.pi * hours / 24)
    return grid("temperature", list(values), step_min=60)


def stuck_on_day_3() -> pd.DataFrame:
    hours = np.arange(3 * 24)
    values = 20 + 0.3 * np.sin(2 * np.pi * hours / 24)
    values[48:62] = 15.0
    return grid("temperature", list(values), step_min=60)


def gappy() -> pd.DataFrame:
    values: list[float | None] = list(20 + np.arange(100) * 0.01)
    values[10:17] = [None] * 7
    filled = [False] * 100
    filled[50:53] = [True] * 3
    return grid("temperature", values, filled=filled)


CASES = [
    pytest.param(
        NO_QUARANTINE, short_cycles(10, on=3, off=3), pd.DataFrame(), {"checks": ["short_cycling"]},
        win(0, 60),
        [issue("short_cycling", "power_kw", "critical", 1.0, 0.5, 0, 57,
               "10 of 10 compressor on-periods lasted under 5 min", median_on_minutes=3.0,
               n_on_periods=10, n_short=10)],
        id="short-cycling",
    ),
    pytest.param(
        NO_QUARANTINE, pd.concat([
            cycles_frame([(i * 20, 3, 1, 3.0), (i * 20 + 3, 4, 2, 6.0), (i * 20 + 7, 13, 0, 0.3)])
            for i in range(10)], ignore_index=True),
        pd.DataFrame(), {"checks": ["short_cycling"]}, win(0, 200), [],
        id="stage-1-then-2-is-one-7-min-on-period-not-short",
    ),
    pytest.param(
        NO_QUARANTINE, NO_CYCLES, flat_temperature(), {"checks": ["flatline"]}, win(0, 300),
        [issue("flatline", "temperature", "warning", 150, 120, 100, 249,
               "temperature stuck at 21.5 for 150 min", runs_over_limit=1, stuck_value=21.5)],
        id="flatline",
    ),
    pytest.param(
        NO_QUARANTINE, NO_CYCLES,
        grid("temperature", [20.0] + [20.5] * 200, filled=[False] + [True] * 200),
        {"checks": ["flatline"]}, win(0, 201), [], id="a-long-fill-is-not-a-stuck-sensor",
    ),
    pytest.param(
        NO_QUARANTINE, NO_CYCLES, drifting(1.0), {"checks": ["drift"]}, win(4 * 1440, 5 * 1440),
        [issue("drift", "temperature", "critical", 1.0, 0.5, 0, 4 * 1440,
               "temperature daily median trends +1 per day over 5 days",
               daily_medians=[20.0, 21.0, 22.0, 23.0, 24.0])],
        id="drift-over-the-lookback",
    ),
    pytest.param(
        NO_QUARANTINE, NO_CYCLES, drifting(0.1), {"checks": ["drift"]}, win(4 * 1440, 5 * 1440),
        [], id="slow-trend-below-limit",
    ),
    pytest.param(
        NO_QUARANTINE, NO_CYCLES, stuck_on_day_3(), {"checks": ["drift", "flatline"]},
        win(2 * 1440, 3 * 1440),
        [issue("flatline", "temperature", "critical", 840, 120, 2880, 2880 + 13 * 60,
               "temperature stuck at 15 for 840 min", runs_over_limit=1, stuck_value=15.0)],
        id="stuck-readings-are-no-drift",
    ),
    pytest.param(
        pd.DataFrame({"machine_id": "m1", "ts": at(5, 7), "source_table": "telemetry",
                      "rule": ["temperature.rate", "humidity.range"], "reason": "x",
                      "original": "{}"}),
        NO_CYCLES, grid("temperature", [20, 40, 21]),
        {"checks": ["out_of_range"], "ranges": {"temperature": [5, 35]}}, win(0, 10),
        [issue("out_of_range", "humidity", "critical", 1, 0, 7, 7,
               "humidity: 1 rejected at ingest by range/rate rules", extreme=None,
               outside_range=0, quarantined=1, quarantine_rules=["humidity.range"]),
         issue("out_of_range", "temperature", "critical", 2, 0, 1, 5,
               "temperature: 1 reading(s) outside [5, 35], 1 rejected at ingest by range/rate "
               "rules", extreme=40.0, outside_range=1, quarantined=1,
               quarantine_rules=["temperature.rate"])],
        id="out-of-range-and-quarantined",
    ),
    pytest.param(
        NO_QUARANTINE, NO_CYCLES, gappy(), {"checks": ["missing_data"]}, win(0, 100),
        [issue("missing_data", "temperature", "warning", 0.1, 0.05, 10, 52,
               "temperature: 10.0% of the window has no data (longest gap 7 min)",
               cells=100, longest_gap_min=7.0, missing_cells=10)],
        id="missing-data-counts-filled-cells",
    ),
]


@pytest.mark.parametrize(("quarantine", "cycles", "clean", "params", "window", "rows"), CASES)
def test_detect_issues_golden(quarantine, cycles, clean, params, window, rows) -> None:
    result = detect_issues(clean, cycles, quarantine, window=window, **params)
    if not rows:
        assert result.empty, result.to_dict("records")
        return
    start = (pd.Timestamp(window.start) - T0) / pd.Timedelta(minutes=1)
    assert_frame_equal(result, issue_rows(start, rows))


def test_detect_issues_runs_every_check_and_finds_nothing_on_healthy_data() -> None:
    clean = grid("temperature", list(20 + np.sin(np.arange(300) / 20)))
    cycles = short_cycles(5, on=15, off=15)
    assert detect_issues(clean, cycles, NO_QUARANTINE, window=win(0, 300)).empty


def test_detect_issues_rejects_unknown_check() -> None:
    with pytest.raises(ValueError, match="unknown check"):
        detect_issues(grid("t", [1.0]), NO_CYCLES, NO_QUARANTINE, checks=["vibes"],
                      window=win(0, 1))


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [([0, 1, 2, 3], [0, 2, 4, 6], 2.0), ([0, 1, 2, 3, 4], [0, 1, 2, 30, 4], 1.0)],
    ids=["line", "robust-to-one-outlier"],
)
def test_theil_sen_slope(x, y, expected) -> None:
    assert theil_sen_slope(np.array(x, float), np.array(y, float)) == pytest.approx(expected)
