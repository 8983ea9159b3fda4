"""Golden tests: event counts per code and severity, time in alarm, alarm floods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.steps.events import alarm_floods, alarm_intervals, event_counts
from tests.steps.builders import at, events_frame, win

NAN = np.nan

EVENTS = events_frame([
    (-10, "alarm", "major", "HP", "high pressure"),  # before the window, active into it
    (60, "alarm", "major", "HP", "high pressure"),
    (65, "alarm", "major", "HP", "high pressure"),
    (80, "event", "info", "HP", "HP alarm cleared"),
    (100, "alarm", "critical", "LP", "low pressure"),
    (110, "log", "info", None, "service visit"),
])


def count_rows(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["kind", "code", "severity", "count", "first", "last",
                                     "alarm_minutes"])
    return pd.DataFrame({
        "ts": at(*[0] * len(df)), "kind": df["kind"], "code": df["code"],
        "severity": df["severity"], "count": df["count"].astype("int64"),
        "first_ts": at(*df["first"]), "last_ts": at(*df["last"]),
        "alarm_minutes": df["alarm_minutes"].astype("float64"),
    })


COUNT_CASES = [
    pytest.param(
        EVENTS, {"hold_minutes": 15}, win(0, 120),
        count_rows([
            ("alarm", "*", "*", 3, 60, 100, 5 + 20 + 15),
            ("alarm", "HP", "major", 2, 60, 65, 5 + 20),
            ("alarm", "LP", "critical", 1, 100, 100, 15),
            ("event", "*", "*", 1, 80, 80, NAN),
            ("event", "HP", "info", 1, 80, 80, NAN),
            ("log", "", "info", 1, 110, 110, NAN),
            ("log", "*", "*", 1, 110, 110, NAN),
        ]),
        id="counts-and-minutes-in-alarm-with-clear-and-hold",
    ),
    pytest.param(
        EVENTS, {"hold_minutes": 60}, win(0, 120),
        count_rows([
            ("alarm", "*", "*", 3, 60, 100, 50 + 20 + 20),
            ("alarm", "HP", "major", 2, 60, 65, 50 + 20),
            ("alarm", "LP", "critical", 1, 100, 100, 20),
            ("event", "*", "*", 1, 80, 80, NAN),
            ("event", "HP", "info", 1, 80, 80, NAN),
            ("log", "", "info", 1, 110, 110, NAN),
            ("log", "*", "*", 1, 110, 110, NAN),
        ]),
        id="longer-hold-clipped-at-window-end-and-clear",
    ),
]


@pytest.mark.parametrize(("events", "params", "window", "expected"), COUNT_CASES)
def test_event_counts_golden(events: pd.DataFrame, params: dict, window, expected) -> None:
    assert_frame_equal(event_counts(events, window=window, **params), expected)


def test_alarm_intervals_merge_overlapping_raises() -> None:
    result = alarm_intervals(EVENTS, hold_minutes=15)
    expected = pd.DataFrame({"code": ["HP", "HP", "LP"], "start": at(-10, 60, 100),
                             "end": at(5, 80, 115)})
    assert_frame_equal(result, expected)


def flood_events() -> pd.DataFrame:
    rows = [(30 + i / 4, "alarm", "critical" if i == 7 else "major", "AB"[i % 2], "trip")
            for i in range(30)]
    rows += [(35, "alarm", "info", "A", "A cleared"), (100, "alarm", "major", "C", "trip")]
    return events_frame(rows)


def flood_rows(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["start", "end", "n", "peak", "codes", "sev"])
    return pd.DataFrame({"ts": at(*df["start"]), "end_ts": at(*df["end"]),
                         "n_alarms": df["n"].astype("int64"), "peak": df["peak"].astype("int64"),
                         "codes": df["codes"], "max_severity": df["sev"]})


FLOOD_CASES = [
    pytest.param(flood_events(), {"max_alarms": 20, "minutes": 10}, win(0, 120),
                 flood_rows([(30, 30 + 29 / 4, 30, 30, "A,B", "critical")]),
                 id="thirty-alarms-in-ten-minutes"),
    pytest.param(flood_events(), {"max_alarms": 30, "minutes": 10}, win(0, 120),
                 flood_rows([]), id="not-more-than-the-limit"),
    pytest.param(flood_events(), {"max_alarms": 20, "minutes": 10}, win(31, 120),
                 flood_rows([]), id="a-flood-belongs-to-the-window-it-starts-in"),
    pytest.param(flood_events(), {"max_alarms": 5, "minutes": 2}, win(0, 120),
                 flood_rows([(30, 30 + 29 / 4, 30, 8, "A,B", "critical")]),
                 id="sliding-spans-merge-into-one-flood"),
]


@pytest.mark.parametrize(("events", "params", "window", "expected"), FLOOD_CASES)
def test_alarm_floods_golden(events: pd.DataFrame, params: dict, window, expected) -> None:
    result = alarm_floods(events, window=window, **params)
    if expected.empty:
        assert result.empty
    else:
        assert_frame_equal(result, expected)


def test_no_events_gives_empty_tables() -> None:
    empty = pd.DataFrame(columns=["machine_id", "ts"])
    assert event_counts(empty, window=win(0, 10)).empty
    assert alarm_floods(empty, window=win(0, 10)).empty
