"""Builders for small step inputs: long telemetry, resampled grids, cycles and events."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from meshinsights.model import Window

T0 = pd.Timestamp("2024-01-01", tz="UTC")
UTC_US = "datetime64[us, UTC]"


def at(*minutes: float) -> pd.Series:
    """Timestamps ``T0 + minutes`` as the store returns them (us, UTC)."""
    return pd.Series([T0 + pd.Timedelta(minutes=m) for m in minutes]).astype(UTC_US)


def win(start_min: float, end_min: float) -> Window:
    """A window from ``T0 + start_min`` to ``T0 + end_min`` minutes."""
    return Window(T0 + pd.Timedelta(minutes=start_min), T0 + pd.Timedelta(minutes=end_min))


def telemetry(metric: str, minutes: Sequence[float], values: Sequence[float | None],
              unit: str | None = None) -> pd.DataFrame:
    """Long telemetry rows of one metric."""
    return pd.DataFrame({"machine_id": "m1", "ts": at(*minutes), "metric": metric,
                         "value": pd.array(values, dtype="float64"), "unit": unit,
                         "ingested_at": at(*minutes)})


def grid(metric: str, values: Sequence[float | None], *, start_min: float = 0, step_min: float = 1,
         filled: Sequence[bool] | None = None, unit: str | None = None) -> pd.DataFrame:
    """A resampled (clean) grid of one metric starting at ``T0 + start_min``."""
    n = len(values)
    v = np.array([np.nan if x is None else x for x in values], dtype="float64")
    minutes = [start_min + i * step_min for i in range(n)]
    fill = np.array(filled if filled is not None else [False] * n, dtype=bool)
    return pd.DataFrame({"ts": at(*minutes), "metric": metric, "value": v, "unit": unit,
                         "n_obs": np.where(np.isnan(v) | fill, 0, 1).astype("int64"),
                         "filled": fill})


def cycles_frame(rows: Sequence[tuple[float, float, int, float]], *, valid: bool = True,
                 metric: str = "power_kw") -> pd.DataFrame:
    """Cycles table rows from ``(start_min, duration_min, stage, median)`` tuples."""
    out = []
    for start, dur, stage, med in rows:
        out.append({"ts": T0 + pd.Timedelta(minutes=start + dur),
                    "start_ts": T0 + pd.Timedelta(minutes=start), "metric": metric,
                    "stage": stage, "duration_min": float(dur), "n_samples": int(dur),
                    "median": med, "mean": med, "min": med, "max": med, "complete": True,
                    "valid": valid, "reject_reason": None})
    df = pd.DataFrame(out)
    for col in ("ts", "start_ts"):
        df[col] = df[col].astype(UTC_US)
    return df


def events_frame(rows: Sequence[tuple[float, str, str | None, str | None, str | None]]
                 ) -> pd.DataFrame:
    """Events rows from ``(minute, kind, severity, code, message)`` tuples."""
    df = pd.DataFrame(rows, columns=["minute", "kind", "severity", "code", "message"])
    df.insert(0, "ts", at(*df.pop("minute")))
    df.insert(0, "machine_id", "m1")
    df["ingested_at"] = df["ts"]
    return df


def hvac_frame() -> pd.DataFrame:
    """Two days of one HVAC unit at 1 min: 2-stage compressor cycles, temperature, humidity."""
    rng = np.random.default_rng(11)
    n = 2 * 1440
    minute = np.arange(n)
    phase = minute % 30
    power = np.where(phase < 8, 3.0, np.where(phase < 12, 6.0, 0.3)) + rng.normal(0, 0.05, n)
    daily = np.sin(2 * np.pi * minute / 1440)
    temp = 20 + 2 * daily + rng.normal(0, 0.1, n)
    hum = 45 + 3 * daily + rng.normal(0, 0.3, n)
    frames = [telemetry(m, minute, v.round(3), u) for m, v, u in (
        ("power_kw", power, "kW"), ("temperature", temp, "degC"), ("humidity", hum, "%"))]
    return pd.concat(frames, ignore_index=True)
