"""Checks for well-known issues, each finding one row of the ``issues`` table with evidence.

Checks: ``short_cycling`` (compressor on-periods too short), ``flatline`` (a sensor repeating
exactly the same value), ``drift`` (a steady trend of daily medians), ``out_of_range``
(observed values outside the operating range, plus rows ingest quarantined for range/rate
rules) and ``missing_data`` (share of grid cells with no observation). Only findings are
written: a window without issues has no rows. Drift looks at the whole input (give the step a
``lookback``); every other check looks at the run window only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, dumps, empty_frame, in_window, infer_step, runs
from meshinsights.steps.params import Positive, PositiveInt, Share
from meshinsights.steps.registry import step

__all__ = ["detect_issues", "ISSUES_SCHEMA", "CHECKS", "theil_sen_slope"]

logger = logging.getLogger(__name__)

ISSUES_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # window start
        ("check", pa.string()),
        ("metric", pa.string()),
        ("severity", pa.string()),  # warning | critical
        ("value", pa.float64()),  # the measured quantity (see message)
        ("limit", pa.float64()),  # the threshold it crossed
        ("first_ts", TS),
        ("last_ts", TS),
        ("message", pa.string()),
        ("evidence", pa.string()),  # JSON
    ]
)

CHECKS = ("short_cycling", "flatline", "drift", "out_of_range", "missing_data")

DEFAULT_RANGES: dict[str, list[float]] = {
    "temperature": [5.0, 35.0],
    "return_temperature": [5.0, 40.0],
    "humidity": [5.0, 95.0],
    "power_kw": [0.0, 10.0],
}


def _issue(
    check: str,
    metric: str,
    severity: str,
    value: float,
    limit: float,
    first: Any,
    last: Any,
    message: str,
    **evidence: Any,
) -> dict[str, Any]:
    return {
        "check": check,
        "metric": metric,
        "severity": severity,
        "value": float(value),
        "limit": float(limit),
        "first_ts": first,
        "last_ts": last,
        "message": message,
        "evidence": dumps(evidence),
    }


def _observed(clean: pd.DataFrame) -> pd.DataFrame:
    """Rows with a real observation (filled cells are the resampler's guess, not data)."""
    ok = clean["value"].notna()
    if "filled" in clean:
        ok &= ~clean["filled"].astype(bool)
    return clean[ok]


def on_periods(cycles: pd.DataFrame) -> pd.DataFrame:
    """Merge back-to-back on-stage cycles (stage ≥ 1) into compressor on-periods."""
    c = cycles.sort_values("start_ts", kind="stable")
    on = c[c["stage"] >= 1]
    if on.empty:
        return pd.DataFrame(columns=["start_ts", "end_ts", "minutes", "complete"])
    new = on["start_ts"].ne(on["ts"].shift())
    group = new.cumsum()
    periods = on.groupby(group).agg(
        start_ts=("start_ts", "first"),
        end_ts=("ts", "last"),
        minutes=("duration_min", "sum"),
        complete=("complete", "all"),
    )
    return periods.reset_index(drop=True)


def check_short_cycling(
    cycles: pd.DataFrame, *, short_minutes: float, min_count: int, ratio: float
) -> list[dict[str, Any]]:
    """Many compressor on-periods shorter than ``short_minutes``."""
    if cycles.empty:
        return []
    periods = on_periods(cycles)
    periods = periods[periods["complete"].astype(bool)]
    short = periods[periods["minutes"] < short_minutes]
    if len(periods) == 0 or len(short) < min_count or len(short) / len(periods) < ratio:
        return []
    share = len(short) / len(periods)
    severity = "critical" if share >= 0.8 else "warning"
    return [
        _issue(
            "short_cycling",
            str(cycles["metric"].iloc[0]),
            severity,
            share,
            ratio,
            short["start_ts"].min(),
            short["end_ts"].max(),
            f"{len(short)} of {len(periods)} compressor on-periods lasted under "
            f"{short_minutes:g} min",
            n_short=len(short),
            n_on_periods=len(periods),
            median_on_minutes=round(float(periods["minutes"].median()), 3),
        )
    ]


def _flat_runs(
    rows: pd.DataFrame, minutes: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed values, run starts, run lengths and which runs stay flat for ``minutes``+."""
    step = infer_step(rows["ts"])
    value = rows["value"].where(~rows["filled"].astype(bool)) if "filled" in rows else rows["value"]
    v = value.to_numpy(dtype="float64", na_value=np.nan)
    starts, lengths = runs(v)
    long = ~np.isnan(v[starts]) & (lengths * (step / pd.Timedelta(minutes=1)) >= minutes)
    return v, starts, lengths, long


def drop_flatlines(clean: pd.DataFrame, minutes: float) -> pd.DataFrame:
    """``clean`` without the readings of flat runs: a stuck sensor's value is no measurement."""
    keep = pd.Series(True, index=clean.index)
    for _, rows in clean.groupby("metric", sort=False):
        rows = rows.sort_values("ts", kind="stable")
        _, _, lengths, long = _flat_runs(rows, minutes)
        keep[rows.index[np.repeat(long, lengths)]] = False
    return clean[keep]


def check_flatline(
    clean: pd.DataFrame, *, minutes: float, metrics: list[str] | None
) -> list[dict[str, Any]]:
    """A metric repeating exactly the same observed value for at least ``minutes``."""
    out = []
    for metric in metrics or sorted(clean["metric"].unique()):
        rows = clean[clean["metric"] == metric].sort_values("ts", kind="stable")
        if rows.empty:
            continue
        v, starts, lengths, long = _flat_runs(rows, minutes)
        if not long.any():
            continue
        i = int(np.argmax(np.where(long, lengths, -1)))
        s, n = int(starts[i]), int(lengths[i])
        ts = rows["ts"].to_numpy()
        duration = (ts[s + n - 1] - ts[s]) / pd.Timedelta(minutes=1) + infer_step(
            rows["ts"]
        ) / pd.Timedelta(minutes=1)
        severity = "critical" if duration >= 4 * minutes else "warning"
        out.append(
            _issue(
                "flatline",
                metric,
                severity,
                duration,
                minutes,
                ts[s],
                ts[s + n - 1],
                f"{metric} stuck at {v[s]:g} for {duration:g} min",
                stuck_value=float(v[s]),
                runs_over_limit=int(long.sum()),
            )
        )
    return out


def theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Median of pairwise slopes: a trend estimate robust to a few odd points."""
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    ok = dx != 0
    return float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else np.nan


def check_drift(
    clean: pd.DataFrame, *, per_day: float, metrics: list[str], min_days: int, min_coverage: float
) -> list[dict[str, Any]]:
    """A steady trend of daily medians steeper than ``per_day`` (units per day)."""
    out = []
    obs = _observed(clean)
    for metric in metrics:
        rows = obs[obs["metric"] == metric]
        if rows.empty:
            continue
        step = infer_step(rows["ts"])
        per_day_cells = pd.Timedelta(days=1) / step
        day = rows["ts"].dt.floor("1D")
        daily = rows.groupby(day)["value"].agg(["median", "count"])
        daily = daily[daily["count"] >= min_coverage * per_day_cells]
        if len(daily) < min_days:
            continue
        x = ((daily.index - daily.index[0]) / pd.Timedelta(days=1)).to_numpy(dtype="float64")
        slope = theil_sen_slope(x, daily["median"].to_numpy(dtype="float64"))
        if np.isnan(slope) or abs(slope) < per_day:
            continue
        severity = "critical" if abs(slope) >= 2 * per_day else "warning"
        out.append(
            _issue(
                "drift",
                metric,
                severity,
                slope,
                per_day,
                daily.index[0],
                daily.index[-1],
                f"{metric} daily median trends {slope:+.3g} per day over {len(daily)} days",
                daily_medians=[round(float(m), 4) for m in daily["median"]],
            )
        )
    return out


def check_out_of_range(
    clean: pd.DataFrame, quarantine: pd.DataFrame, *, ranges: dict[str, list[float]]
) -> list[dict[str, Any]]:
    """Observed values outside ``ranges``, plus rows ingest quarantined by range/rate rules."""
    out = []
    obs = _observed(clean)
    q = (
        quarantine
        if not quarantine.empty and "rule" in quarantine
        else pd.DataFrame(columns=["ts", "rule"])
    )
    q_metric = q["rule"].astype(str).str.extract(r"^(.+)\.(?:range|rate)$")[0]
    for metric in sorted(set(ranges) | set(q_metric.dropna())):
        lo, hi = ranges.get(metric, [-np.inf, np.inf])
        rows = obs[obs["metric"] == metric]
        bad = rows[(rows["value"] < lo) | (rows["value"] > hi)]
        qrows = q[q_metric == metric]
        n = len(bad) + len(qrows)
        if n == 0:
            continue
        times = pd.concat([bad["ts"], qrows["ts"]])
        share = n / max(len(rows) + len(qrows), 1)
        severity = "critical" if share >= 0.01 else "warning"
        outside = f"{len(bad)} reading(s) outside [{lo:g}, {hi:g}], " if metric in ranges else ""
        out.append(
            _issue(
                "out_of_range",
                metric,
                severity,
                n,
                0,
                times.min(),
                times.max(),
                f"{metric}: {outside}{len(qrows)} rejected at ingest by range/rate rules",
                outside_range=len(bad),
                quarantined=len(qrows),
                extreme=None if bad.empty else float(bad["value"].abs().max()),
                quarantine_rules=sorted(set(qrows["rule"].astype(str))),
            )
        )
    return out


def check_missing(
    clean: pd.DataFrame, *, warn: float, critical: float, metrics: list[str] | None
) -> list[dict[str, Any]]:
    """Share of grid cells without an observation (filled cells count as missing)."""
    out = []
    for metric in metrics or sorted(clean["metric"].unique()):
        rows = clean[clean["metric"] == metric].sort_values("ts", kind="stable")
        if rows.empty:
            continue
        observed = rows["n_obs"] > 0 if "n_obs" in rows else rows["value"].notna()
        ratio = 1.0 - float(observed.mean())
        if ratio < warn:
            continue
        starts, lengths = runs(observed.to_numpy())
        gaps = ~observed.to_numpy()[starts]
        step = infer_step(rows["ts"])
        minutes = step / pd.Timedelta(minutes=1)
        longest = float(lengths[gaps].max() * minutes) if gaps.any() else 0.0
        missing_ts = rows.loc[~observed, "ts"]
        out.append(
            _issue(
                "missing_data",
                metric,
                "critical" if ratio >= critical else "warning",
                ratio,
                warn,
                missing_ts.min(),
                missing_ts.max(),
                f"{metric}: {ratio:.1%} of the window has no data (longest gap {longest:g} min)",
                missing_cells=int((~observed).sum()),
                cells=len(rows),
                longest_gap_min=longest,
            )
        )
    return out


@step(
    inputs=["clean", "cycles", "quarantine"],
    output="issues",
    schema=ISSUES_SCHEMA,
    optional=["cycles", "quarantine"],
)
def detect_issues(
    clean: pd.DataFrame,
    cycles: pd.DataFrame,
    quarantine: pd.DataFrame,
    *,
    checks: list[str] | tuple[str, ...] = CHECKS,
    short_cycle_minutes: Positive = 5.0,
    short_cycle_min_count: PositiveInt = 5,
    short_cycle_ratio: Share = 0.5,
    flatline_minutes: Positive = 120.0,
    flatline_metrics: list[str] | None = None,
    drift_per_day: Positive = 0.5,
    drift_metrics: list[str] | tuple[str, ...] = ("temperature",),
    drift_min_days: PositiveInt = 3,
    drift_min_coverage: Share = 0.5,
    ranges: dict[str, list[float]] | None = None,
    missing_warn: Share = 0.05,
    missing_critical: Share = 0.25,
    missing_metrics: list[str] | None = None,
    window: Window | None = None,
) -> pd.DataFrame:
    """Run the well-known issue checks; one row per finding, with severity and JSON evidence."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known checks: {list(CHECKS)}")
    now = in_window(clean, window) if not clean.empty else clean
    runners: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "short_cycling": lambda: check_short_cycling(
            in_window(cycles, window),
            short_minutes=short_cycle_minutes,
            min_count=short_cycle_min_count,
            ratio=short_cycle_ratio,
        ),
        "flatline": lambda: check_flatline(now, minutes=flatline_minutes, metrics=flatline_metrics),
        "drift": lambda: check_drift(
            drop_flatlines(clean, flatline_minutes),
            per_day=drift_per_day,
            metrics=list(drift_metrics),
            min_days=drift_min_days,
            min_coverage=drift_min_coverage,
        ),
        "out_of_range": lambda: check_out_of_range(
            now, in_window(quarantine, window), ranges=DEFAULT_RANGES if ranges is None else ranges
        ),
        "missing_data": lambda: check_missing(
            now, warn=missing_warn, critical=missing_critical, metrics=missing_metrics
        ),
    }
    found: list[dict[str, Any]] = []
    for name in CHECKS:
        if name in checks and (name == "short_cycling" or not clean.empty):
            found.extend(runners[name]())
    if not found:
        return empty_frame(ISSUES_SCHEMA)
    out = pd.DataFrame(found)
    start = (
        window.start
        if window is not None
        else min(f["ts"].min() for f in (clean, cycles) if not f.empty)
    )
    out.insert(0, "ts", pd.Timestamp(start))
    for col in ("ts", "first_ts", "last_ts"):
        out[col] = pd.to_datetime(out[col], utc=True).astype(UTC_US)
    return out
