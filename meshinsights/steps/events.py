"""Events and alarms: counts per code and severity, time in alarm, and alarm floods.

Input is the canonical ``events`` table (``kind`` event | alarm | log). An alarm is active
from its time until a *clear* of the same code (an event or alarm whose severity or message
matches ``clear_pattern``) or, failing that, ``hold_minutes`` after it was last raised. Give
the steps a ``lookback`` so alarms raised before the window still count while active in it.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, empty_frame, in_window, window_bounds
from meshinsights.steps.params import Count, NonNegative, Positive
from meshinsights.steps.registry import step

__all__ = [
    "event_counts",
    "alarm_floods",
    "alarm_intervals",
    "EVENT_COUNTS_SCHEMA",
    "ALARM_FLOODS_SCHEMA",
]

logger = logging.getLogger(__name__)

CLEAR_PATTERN = r"(?i)\b(?:clear|cleared|reset|resolved|back to normal|returned to normal)\b"

EVENT_COUNTS_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # window start
        ("kind", pa.string()),
        ("code", pa.string()),  # '*' on the per-kind total row
        ("severity", pa.string()),  # '*' on the per-kind total row
        ("count", pa.int64()),
        ("first_ts", TS),
        ("last_ts", TS),
        ("alarm_minutes", pa.float64()),  # alarms only: minutes of the window in alarm
    ]
)

ALARM_FLOODS_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # first alarm of the flood
        ("end_ts", TS),  # last alarm of the flood
        ("n_alarms", pa.int64()),
        ("peak", pa.int64()),  # most alarms in any `minutes`-long span of the flood
        ("codes", pa.string()),  # comma-separated distinct codes
        ("max_severity", pa.string()),
    ]
)

SEVERITY_ORDER = (
    "debug",
    "info",
    "notice",
    "low",
    "warning",
    "minor",
    "medium",
    "major",
    "high",
    "error",
    "critical",
    "alarm",
    "emergency",
)


def _is_clear(events: pd.DataFrame, pattern: str) -> pd.Series:
    text = (
        events["severity"].fillna("").astype(str) + " " + events["message"].fillna("").astype(str)
    )
    return text.str.contains(pattern, flags=re.IGNORECASE, regex=True)


def alarm_intervals(
    events: pd.DataFrame, *, clear_pattern: str = CLEAR_PATTERN, hold_minutes: float = 15.0
) -> pd.DataFrame:
    """Active periods per alarm code: ``code, start, end`` (overlapping raises merged)."""
    if events.empty:
        return pd.DataFrame(columns=["code", "start", "end"])
    ev = events.sort_values("ts", kind="stable")
    clear = _is_clear(ev, clear_pattern)
    raised = ev[(ev["kind"] == "alarm") & ~clear]
    clears = ev[clear]
    hold = pd.Timedelta(minutes=hold_minutes)
    rows = []
    for code, group in raised.groupby("code", sort=True, dropna=False):
        cts = pd.DatetimeIndex(clears.loc[clears["code"] == code, "ts"]).sort_values()
        start = end = None
        for ts in group["ts"]:
            nxt = int(cts.searchsorted(ts, side="right"))
            until = min(ts + hold, cts[nxt]) if nxt < len(cts) else ts + hold
            if start is not None and ts <= end:
                end = max(end, until)
                continue
            if start is not None:
                rows.append({"code": code, "start": start, "end": end})
            start, end = ts, until
        rows.append({"code": code, "start": start, "end": end})
    return pd.DataFrame(rows, columns=["code", "start", "end"])


def _minutes_in(intervals: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp) -> float:
    """Minutes of ``[lo, hi)`` covered by the union of the intervals."""
    if intervals.empty:
        return 0.0
    spans = sorted(
        (max(s, lo), min(e, hi))
        for s, e in zip(intervals["start"], intervals["end"], strict=True)
        if e > lo and s < hi
    )
    total, cur_s, cur_e = pd.Timedelta(0), None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total / pd.Timedelta(minutes=1)


@step(inputs=["events"], output="event_counts", schema=EVENT_COUNTS_SCHEMA, optional=["events"])
def event_counts(
    events: pd.DataFrame,
    *,
    clear_pattern: str = CLEAR_PATTERN,
    hold_minutes: NonNegative = 15.0,
    window: Window | None = None,
) -> pd.DataFrame:
    """Counts per kind, code and severity in the window, with minutes in alarm per alarm code.

    One extra row per kind (code and severity ``*``) totals it; for alarms its
    ``alarm_minutes`` is the time *any* alarm was active.
    """
    if events.empty:
        return empty_frame(EVENT_COUNTS_SCHEMA)
    lo, hi = window_bounds(window, events["ts"])
    now = in_window(events, window)
    intervals = alarm_intervals(events, clear_pattern=clear_pattern, hold_minutes=hold_minutes)
    if now.empty and intervals.empty:
        return empty_frame(EVENT_COUNTS_SCHEMA)
    keys = ["kind", "code", "severity"]
    filled = now.assign(**{k: now[k].fillna("") for k in keys})
    counts = (
        filled.groupby(keys, sort=True)["ts"]
        .agg(count="size", first_ts="min", last_ts="max")
        .reset_index()
    )
    totals = (
        filled.groupby("kind", sort=True)["ts"]
        .agg(count="size", first_ts="min", last_ts="max")
        .reset_index()
    )
    totals["code"], totals["severity"] = "*", "*"
    out = pd.concat([counts, totals[counts.columns]], ignore_index=True)
    per_code = {c: _minutes_in(g, lo, hi) for c, g in intervals.groupby("code")}
    is_alarm = out["kind"] == "alarm"
    out["alarm_minutes"] = np.where(is_alarm, out["code"].map(per_code), np.nan)
    out.loc[is_alarm & (out["code"] == "*"), "alarm_minutes"] = _minutes_in(intervals, lo, hi)
    out.insert(0, "ts", lo)
    for col in ("ts", "first_ts", "last_ts"):
        out[col] = pd.to_datetime(out[col], utc=True).astype(UTC_US)
    out["count"] = out["count"].astype("int64")
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _max_severity(values: pd.Series) -> str:
    present = values.dropna().astype(str)
    known = [v for v in present.str.lower() if v in SEVERITY_ORDER]
    if known:
        return max(known, key=SEVERITY_ORDER.index)
    return str(present.iloc[0]) if len(present) else ""


@step(inputs=["events"], output="alarm_floods", schema=ALARM_FLOODS_SCHEMA, optional=["events"])
def alarm_floods(
    events: pd.DataFrame,
    *,
    max_alarms: Count = 20,
    minutes: Positive = 10.0,
    clear_pattern: str = CLEAR_PATTERN,
    window: Window | None = None,
) -> pd.DataFrame:
    """Periods with more than ``max_alarms`` alarms within ``minutes`` (overlapping spans merged).

    A flood belongs to the window in which its first alarm falls.
    """
    if events.empty:
        return empty_frame(ALARM_FLOODS_SCHEMA)
    ev = events[(events["kind"] == "alarm") & ~_is_clear(events, clear_pattern)]
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)
    ts = pd.DatetimeIndex(ev["ts"])
    ends = ts.searchsorted(ts + pd.Timedelta(minutes=minutes), side="left")  # [t, t + minutes)
    counts = ends - np.arange(len(ts))
    floods, cur = [], None
    for i in np.flatnonzero(counts > max_alarms):
        j = int(ends[i]) - 1
        if cur is not None and i <= cur[1]:
            cur = (cur[0], max(cur[1], j), max(cur[2], int(counts[i])))
        else:
            if cur is not None:
                floods.append(cur)
            cur = (int(i), j, int(counts[i]))
    if cur is not None:
        floods.append(cur)
    rows = [
        {
            "ts": ev["ts"].iloc[a],
            "end_ts": ev["ts"].iloc[b],
            "n_alarms": b - a + 1,
            "peak": peak,
            "codes": ",".join(sorted(set(ev["code"].iloc[a : b + 1].dropna().astype(str)))),
            "max_severity": _max_severity(ev["severity"].iloc[a : b + 1]),
        }
        for a, b, peak in floods
    ]
    if not rows:
        return empty_frame(ALARM_FLOODS_SCHEMA)
    out = pd.DataFrame(rows)
    for col in ("ts", "end_ts"):
        out[col] = out[col].astype(UTC_US)
    return in_window(out, window)
