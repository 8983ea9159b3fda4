"""One notion of window: the local runner's windows are the DAG timetable's data intervals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meshinsights import schedules
from meshinsights.airflow.dag_factory import timetable_for
from meshinsights.model import Window

SCHEDULES = ["@hourly", "@daily", "@weekly", "@monthly", "0 6 * * *", "*/15 * * * *"]
#: Aligned to every schedule above: a month of ticks (a year for @monthly; weekly ticks fall
#: on Sundays, so the weekly span starts and ends on one).
SPANS = {"@weekly": Window.parse("2024-03-31", "2024-05-05"),
         "@monthly": Window.parse("2024-01-01", "2025-01-01"),  # a year: 12 intervals
         "0 6 * * *": Window.parse("2024-04-01T06:00", "2024-05-01T06:00")}
MONTH = Window.parse("2024-04-01", "2024-05-01")


def _airflow_intervals(schedule: str, span: Window) -> list[Window]:
    """The data intervals Airflow's scheduler gives the DAG's runs over ``span`` (catchup)."""
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = coerce_to_core_timetable(timetable_for(schedule))
    restriction = TimeRestriction(earliest=pendulum.instance(span.start),
                                  latest=pendulum.instance(span.end), catchup=True)
    out, last = [], None
    while True:
        info = timetable.next_dagrun_info(last_automated_data_interval=last,
                                          restriction=restriction)
        if info is None or info.data_interval.end > span.end:
            return out
        last = info.data_interval
        out.append(Window(last.start, last.end))


@pytest.mark.airflow
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_local_windows_equal_the_dag_timetable(schedule: str) -> None:
    span = SPANS.get(schedule, MONTH)
    expected = _airflow_intervals(schedule, span)
    assert len(expected) >= 5
    assert schedules.windows(schedule, span) == expected
    # Every instant lies in the interval Airflow ran it in (how late rows find their window).
    for w in expected[:: max(1, len(expected) // 7)]:
        assert schedules.window_containing(schedule, w.start) == w
        assert schedules.window_containing(schedule, w.end - (w.end - w.start) / 3) == w


def test_unaligned_spans_are_cut_at_their_edges_and_bad_schedules_are_refused() -> None:
    span = Window.parse("2024-01-15T12:00", "2024-03-02")
    assert schedules.windows("@monthly", span) == [
        Window.parse("2024-01-15T12:00", "2024-02-01"), Window.parse("2024-02-01", "2024-03-01"),
        Window.parse("2024-03-01", "2024-03-02")]
    assert schedules.windows(None, span) == [span]
    for bad in ("@dailyy", "0 0 * *", "61 * * * *", "@once"):
        with pytest.raises(ValueError, match="neither a preset"):
            schedules.check_schedule(bad)
    assert schedules.window_containing("@daily", datetime(2024, 1, 5, 23, 59, 59, 999999,
                                                          tzinfo=UTC)) == Window.day("2024-01-05")
