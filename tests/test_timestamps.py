"""Timestamps as users have them: every value parsed on its own merits, nothing guessed."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from meshinsights.normalize.timestamps import TimeFormat, explain_unparsed, parse_times


def _utc(*values: str | None) -> list[pd.Timestamp | None]:
    return [None if v is None else pd.Timestamp(v, tz="UTC") for v in values]


def _parsed(values: list, spec: TimeFormat | None = None) -> list[pd.Timestamp | None]:
    ts = parse_times(pd.Series(values, dtype=object), spec).ts
    return [None if pd.isna(t) else t for t in ts]


CASES = [
    (
        "iso-mixed-spellings",
        [
            "2024-01-01 00:00:00.123",
            "2024-01-01 00:01:00",
            "2024-01-01T00:02:00",
            "2024-01-01 00:03",
        ],
        TimeFormat(),
        _utc("2024-01-01 00:00:00.123", "2024-01-01 00:01", "2024-01-01 00:02", "2024-01-01 00:03"),
    ),
    (
        "first-aware-rest-naive-local",
        ["2024-06-01T10:00:00+02:00", "2024-06-01 10:01:00", "2024-06-01 10:02:00"],
        TimeFormat("Europe/Berlin"),
        _utc("2024-06-01 08:00", "2024-06-01 08:01", "2024-06-01 08:02"),
    ),
    (
        "z-suffix-and-naive",
        ["2024-01-01T00:00:00Z", "2024-01-01 01:00:00"],
        TimeFormat("UTC"),
        _utc("2024-01-01 00:00", "2024-01-01 01:00"),
    ),
    (
        "epoch-ms-text",
        ["1430258421000", "1430258422500"],
        TimeFormat(),
        _utc("2015-04-28 22:00:21", "2015-04-28 22:00:22.5"),
    ),
    (
        "epoch-s-numbers",
        [1430258421, 1430258422],
        TimeFormat(),
        _utc("2015-04-28 22:00:21", "2015-04-28 22:00:22"),
    ),
    ("epoch-us-given", ["1430258421000000"], TimeFormat(unit="us"), _utc("2015-04-28 22:00:21")),
    ("compact-date-is-not-an-epoch", ["20240101"], TimeFormat(), _utc("2024-01-01")),
    (
        "format-with-zone",
        ["10/03/2004 18.00.00"],
        TimeFormat("Europe/Rome", "%d/%m/%Y %H.%M.%S"),
        _utc("2004-03-10 17:00"),
    ),
    ("dayfirst-given", ["10/03/2004 18:00"], TimeFormat(dayfirst=True), _utc("2004-03-10 18:00")),
    (
        "unambiguous-non-iso",
        ["13/03/2004 18:00", "31/12/2004 01:00"],
        TimeFormat(),
        _utc("2004-03-13 18:00", "2004-12-31 01:00"),
    ),
    ("dst-gap-is-unparsable", ["2024-03-31 02:30:00"], TimeFormat("Europe/Berlin"), [None]),
    (
        "garbage-and-out-of-range",
        ["Monday", "5", "9999-01-01T00:00:00+01:00", "", None, True],
        TimeFormat(),
        [None] * 6,
    ),
    (
        "datetime-objects",
        [datetime(2024, 1, 1, 12), datetime(2024, 1, 1, 12, tzinfo=UTC)],
        TimeFormat("Europe/Rome"),
        _utc("2024-01-01 11:00", "2024-01-01 12:00"),
    ),
    (
        "format-is-strict",
        ["2024-01-01T00:00:00", "01/01/2024"],
        TimeFormat(format="%d/%m/%Y"),
        [None, pd.Timestamp("2024-01-01", tz="UTC")],
    ),
]


@pytest.mark.parametrize("values,spec,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_value_is_parsed_on_its_own_merits(
    values: list, spec: TimeFormat, expected: list
) -> None:
    assert _parsed(values, spec) == expected


def test_the_epoch_unit_chosen_is_reported() -> None:
    detected = parse_times(pd.Series(["1430258421000"]))
    assert (detected.epoch_unit, detected.note) == ("ms", "ms (detected)")
    given = parse_times(pd.Series([1430258421]), TimeFormat(unit="s"))
    assert given.note == "s"
    assert parse_times(pd.Series(["2024-01-01"])).note is None


def test_an_uncertain_day_month_order_is_not_guessed_and_the_fix_is_named() -> None:
    assert _parsed(["10/03/2004 18:00", "13/03/2004 18:00"]) == [
        None,
        pd.Timestamp("2004-03-13 18:00", tz="UTC"),
    ]
    message = explain_unparsed("10/03/2004 18:00", TimeFormat(), column="stamp")
    assert "reads as 2004-10-03 or 2004-03-10" in message and "ts_dayfirst" in message


EXPLAIN = [
    (
        "1430258421000",
        TimeFormat(format="%Y-%m-%d"),
        "epoch milliseconds: set ts_unit: ms and remove ts_format",
    ),
    ("1430258421", TimeFormat(), "epoch seconds: set ts_unit: s"),
    ("18.00.00", TimeFormat(), "ts_columns: [Date, Time]"),
    ("2024-01-01T00:00:00", TimeFormat(format="%d/%m/%Y"), "but is ISO 8601: remove ts_format"),
    ("01.02.2024 10:00", TimeFormat(format="%d/%m/%Y"), "does not match ts_format '%d/%m/%Y'"),
]


@pytest.mark.parametrize("example,spec,expected", EXPLAIN, ids=[e[0] for e in EXPLAIN])
def test_unparsed_values_name_the_column_and_the_likely_fix(
    example: str, spec: TimeFormat, expected: str
) -> None:
    message = explain_unparsed(example, spec, column="stamp")
    assert "column 'stamp'" in message and expected in message
