"""Timestamps as sources write them, each value parsed on its own merits, to UTC.

No format is guessed from the first row: a column may mix ISO 8601 spellings (``T`` or a
space, with or without fractions, offsets on some values only), epoch numbers and
``datetime`` objects, and each value is read as what it is.

- ``format`` given: text must match it exactly (strftime); anything else is unparsable.
- Numbers, and text of digits only, are epoch times in ``unit`` (s, ms, us, ns). Without a
  unit it is chosen from the values' magnitude, and only when that puts them plainly in
  1980–2100 (so ``20240101`` is a compact date, not 1970-08-23); the result says which unit.
- Text with an offset (``Z``, ``+02:00``) keeps it; naive values are local times in
  ``timezone``. Local times that do not exist or are ambiguous at a DST edge are
  unparsable (NaT), never shifted.
- Other text (``13/03/2004 18:00``) is read with dateutil only when it contains a whole date,
  and only when the day/month order is certain: read both ways, the values must agree (or
  ``ts_dayfirst`` decides); ``10/03/2004`` alone stays unparsable.
- Times outside [1900, 2200) are unparsable: no sensor reports there, and near the ends of the
  datetime range pandas cannot localize, convert or format them.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "EpochUnit",
    "EPOCH_UNITS",
    "TimeFormat",
    "ParsedTimes",
    "parse_times",
    "explain_unparsed",
    "EARLIEST",
    "LATEST",
]

EpochUnit = Literal["s", "ms", "us", "ns"]
EPOCH_UNITS: tuple[EpochUnit, ...] = ("s", "ms", "us", "ns")
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}

UTC_US = "datetime64[us, UTC]"
EARLIEST, LATEST = pd.Timestamp("1900-01-01", tz="UTC"), pd.Timestamp("2200-01-01", tz="UTC")
#: Epoch numbers count as "plainly epochs" (a unit chosen for them) only inside this range.
_PLAIN_EPOCH = (pd.Timestamp("1980-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC"))

_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_DIGITS = re.compile(r"[+-]?\d+(?:\.\d*)?")
_YEAR = re.compile(r"^\s*([+-]?\d{1,6})-")
# A whole date in a non-ISO spelling: 10/03/2004, 3.10.2004, 'Mar 10, 2004', '10 March 2004'.
_WHOLE_DATE = re.compile(
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}"
    r"|[A-Za-z]{3,9}\.? \d{1,2},? \d{4}"
    r"|\d{1,2} [A-Za-z]{3,9}\.? \d{4}"
)
_ISO_DATE = re.compile(r"\s*[+-]?\d{4}-\d{2}-\d{2}")
_TIME_ONLY = re.compile(r"\d{1,2}[:.]\d{2}(?:[:.]\d{2}(?:\.\d+)?)?\s*(?:[AaPp][Mm])?")


@dataclass(frozen=True)
class TimeFormat:
    """How a source writes its timestamps (the source config's ``timezone``, ``ts_*`` keys)."""

    timezone: str = "UTC"
    format: str | None = None
    unit: EpochUnit | None = None
    dayfirst: bool | None = None


@dataclass(frozen=True)
class ParsedTimes:
    """UTC timestamps (NaT where a value is unparsable) and the epoch unit used, if any."""

    ts: pd.Series
    epoch_unit: EpochUnit | None = None
    unit_detected: bool = False

    @property
    def note(self) -> str | None:
        """What the run should say about how it read numbers, e.g. ``ms (detected)``."""
        if self.epoch_unit is None:
            return None
        return f"{self.epoch_unit} (detected)" if self.unit_detected else self.epoch_unit


def parse_times(values: pd.Series, spec: TimeFormat | None = None) -> ParsedTimes:
    """Every value of ``values`` as a UTC timestamp (see the module doc for the rules)."""
    spec = spec or TimeFormat()
    out = pd.Series(pd.NaT, index=values.index, dtype=UTC_US)
    if values.empty or pd.api.types.is_bool_dtype(values):
        return ParsedTimes(out)
    if pd.api.types.is_datetime64_any_dtype(values):
        return ParsedTimes(_in_range(_localize(values, spec.timezone)))
    if pd.api.types.is_numeric_dtype(values):
        numbers_ts, numbers_unit, numbers_detected = _epoch(values.astype("float64"), spec.unit)
        return ParsedTimes(numbers_ts, numbers_unit, numbers_detected)
    obj = values.astype(object).where(values.notna(), None)
    unit: EpochUnit | None = None
    detected = False
    kinds = obj.map(_kind)
    stamps = obj[kinds == "datetime"]
    if len(stamps):
        out.loc[stamps.index] = _datetimes(stamps, spec.timezone)
    numbers = obj[kinds == "number"]
    text = obj[kinds == "text"].astype(str).str.strip()
    if spec.format is None:
        digits = text[text.str.fullmatch(_DIGITS.pattern)]
        nums = pd.concat([numbers.astype("float64"), digits.astype("float64")])
        if len(nums):
            ts, unit, detected = _epoch(nums, spec.unit)
            parsed = ts.dropna()
            out.loc[parsed.index] = parsed
            # Digits that are plainly not epochs may still be a compact ISO date (20240101).
            text = text.drop(parsed.index.intersection(text.index))
    elif len(numbers):
        ts, unit, detected = _epoch(numbers.astype("float64"), spec.unit)
        out.loc[ts.index] = ts
    if len(text):
        parsed = _text(text[text != ""], spec)
        out.loc[parsed.index] = parsed
    return ParsedTimes(_in_range(out), unit, detected)


def _kind(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    if isinstance(value, bool):
        return "text"  # a flag is not a time: unparsable as text
    if isinstance(value, datetime | date | np.datetime64):
        return "datetime"
    if isinstance(value, int | float | np.number):
        return "number"
    return "text"


def _localize(ts: pd.Series, tz: str) -> pd.Series:
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return ts.dt.tz_convert("UTC").astype(UTC_US)


def _in_range(ts: pd.Series) -> pd.Series:
    return ts.where((ts >= EARLIEST) & (ts < LATEST)).astype(UTC_US)


def _datetimes(values: pd.Series, tz: str) -> pd.Series:
    """``datetime``/``date`` objects (what SQL drivers return): naive ones are local in ``tz``."""
    aware = values.map(lambda v: isinstance(v, datetime) and v.tzinfo is not None).astype(bool)
    out = pd.Series(pd.NaT, index=values.index, dtype=UTC_US)
    for mask, utc in ((aware, True), (~aware, False)):
        part = values[mask]
        if part.empty:
            continue
        keep = part.map(lambda v: EARLIEST.year <= v.year < LATEST.year).astype(bool)
        ts = pd.to_datetime(part[keep], errors="coerce", utc=utc)
        out.loc[ts.index] = ts if utc else _localize(ts, tz)
    return out


def _epoch(nums: pd.Series, unit: EpochUnit | None) -> tuple[pd.Series, EpochUnit | None, bool]:
    """Epoch numbers in ``unit`` (or the one their magnitude plainly says) as UTC times."""
    finite = nums[np.isfinite(nums.to_numpy(dtype="float64"))]
    detected = unit is None
    if unit is None:
        unit = _detect_unit(finite)
        if unit is None:
            return pd.Series(pd.NaT, index=nums.index, dtype=UTC_US), None, False
    seconds = finite / _PER_SECOND[unit]
    lo, hi = EARLIEST.timestamp(), LATEST.timestamp()
    ok = seconds[(seconds >= lo) & (seconds < hi)]
    out = pd.Series(pd.NaT, index=nums.index, dtype=UTC_US)
    if len(ok):
        out.loc[ok.index] = pd.to_datetime(ok * 1e6, unit="us", utc=True).astype(UTC_US)
    return out, unit, detected


def _detect_unit(nums: pd.Series) -> EpochUnit | None:
    """The unit that puts the median plainly in 1980–2100, if exactly one does."""
    if nums.empty:
        return None
    median = float(np.median(np.abs(nums.to_numpy(dtype="float64"))))
    lo, hi = (t.timestamp() for t in _PLAIN_EPOCH)
    fits = [u for u in EPOCH_UNITS if lo <= median / _PER_SECOND[u] < hi]
    return fits[0] if len(fits) == 1 else None


def _text(text: pd.Series, spec: TimeFormat) -> pd.Series:
    """Text timestamps: the given format, else ISO 8601 per value, else a certain dateutil read."""
    text = text[text.map(_plausible_year).astype(bool)]
    if text.empty:
        return pd.Series([], dtype=UTC_US)
    if spec.format is not None:
        return _with_format(text, spec.format, spec.timezone)
    out = pd.Series(pd.NaT, index=text.index, dtype=UTC_US)
    aware = text.str.contains(_OFFSET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if aware.any():
            out.loc[aware[aware].index] = pd.to_datetime(
                text[aware], format="ISO8601", errors="coerce", utc=True
            )
        if (~aware).any():
            naive = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
            out.loc[naive.index] = _localize(naive, spec.timezone)
    # ISO-shaped values that failed are invalid (31 February, a local time skipped by DST):
    # dateutil must not get a second go at them.
    rest = text[out.isna() & text.str.contains(_WHOLE_DATE) & ~text.str.match(_ISO_DATE)]
    if len(rest):
        out.loc[rest.index] = _flexible(rest, spec)
    return out


def _with_format(text: pd.Series, fmt: str, tz: str) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            ts = pd.to_datetime(text, format=fmt, errors="coerce")
        except ValueError:  # %z with several offsets: one common zone is needed
            return pd.to_datetime(text, format=fmt, errors="coerce", utc=True).astype(UTC_US)
    return _localize(ts, tz)


def _flexible(text: pd.Series, spec: TimeFormat) -> pd.Series:
    """Non-ISO text read by dateutil, refusing to guess the day/month order."""
    unique = pd.Series(text.unique())

    def read(dayfirst: bool) -> pd.Series:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return pd.to_datetime(
                unique, format="mixed", dayfirst=dayfirst, errors="coerce", utc=True
            )

    if spec.dayfirst is None:
        # Read both ways: where the two disagree the order is a guess, and a guess is not a
        # reading — those values stay unparsable (and the run's error says how to decide).
        month_first, day_first = read(False), read(True)
        parsed = month_first.where(
            month_first.isna() | day_first.isna() | (month_first == day_first)
        )
    else:
        parsed = read(spec.dayfirst)
    # Read as UTC above; naive values are local times: re-read their wall clock in the zone.
    naive = ~unique.str.contains(_OFFSET)
    if naive.any() and spec.timezone != "UTC":
        wall = parsed[naive].dt.tz_localize(None)
        parsed[naive] = _localize(wall, spec.timezone)
    positions = pd.Index(unique).get_indexer(text)
    return parsed.astype(UTC_US).iloc[positions].set_axis(text.index)


def _plausible_year(value: str) -> bool:
    year = _YEAR.match(value)
    return year is None or EARLIEST.year <= int(year.group(1)) < LATEST.year


def explain_unparsed(example: Any, spec: TimeFormat, *, column: str) -> str:
    """Why ``example`` (a value of ``column`` that did not parse) failed, and the likely fix."""
    text = str(example).strip()
    where = f"column {column!r}"
    if text == "" or example is None:
        return f"{where} is empty for these rows; point ts_column at the column holding the time"
    if _DIGITS.fullmatch(text):
        value = abs(float(text))
        for unit in EPOCH_UNITS:
            if (
                _PLAIN_EPOCH[0].timestamp()
                <= value / _PER_SECOND[unit]
                < _PLAIN_EPOCH[1].timestamp()
            ):
                fix = f"set ts_unit: {unit}" + (" and remove ts_format" if spec.format else "")
                return f"{where}: {text!r} looks like epoch {_UNIT_NAMES[unit]}: {fix}"
        if len(text) == 8:
            return f"{where}: {text!r} looks like a compact date: set ts_format: '%Y%m%d'"
        unit_hint = f" (ts_unit is {spec.unit})" if spec.unit else ""
        return (
            f"{where}: {text!r} is a number that is no epoch time in 1900-2199 in any unit"
            f"{unit_hint}; point ts_column at the time column or set ts_unit"
        )
    if _WHOLE_DATE.search(text) and spec.format is None and spec.dayfirst is None:
        both = [
            pd.to_datetime(pd.Series([text]), format="mixed", dayfirst=d, errors="coerce").iloc[0]
            for d in (False, True)
        ]
        if pd.notna(both[0]) and pd.notna(both[1]) and both[0] != both[1]:
            return (
                f"{where}: {text!r} reads as {both[0]:%Y-%m-%d} or {both[1]:%Y-%m-%d}: the "
                "day/month order is not certain; set ts_format (e.g. '%d/%m/%Y %H:%M:%S') or "
                "ts_dayfirst: true/false"
            )
    if _TIME_ONLY.fullmatch(text):
        return (
            f"{where}: {text!r} is a time of day without a date: combine it with the date "
            "column, e.g. ts_columns: [Date, Time] (with ts_format for both)"
        )
    iso = pd.to_datetime(pd.Series([text]), format="ISO8601", errors="coerce", utc=True)
    if spec.format and iso.notna().all():
        return (
            f"{where}: {text!r} does not match ts_format {spec.format!r} but is ISO 8601: "
            "remove ts_format (each ISO value is read on its own merits)"
        )
    if spec.format:
        return (
            f"{where}: {text!r} does not match ts_format {spec.format!r}; fix ts_format "
            "(strftime codes, e.g. '%d/%m/%Y %H.%M.%S')"
        )
    return (
        f"{where}: {text!r} is not a timestamp MeshInsights can read without a format; set "
        "ts_format to its strftime format (e.g. '%d/%m/%Y %H:%M:%S')"
    )
