"""Real data: NAB's machine-temperature failure series through resample → robust_zscore.

The step runs with its *default* parameters (a one-day past-only baseline, the Iglewicz-Hoaglin
cut-off 3.5), not tuned on this file. Scores per labelled window (NAB's combined windows):

- recall: share of the window's points flagged, and whether the window was flagged at all;
- precision: the timeline is split at the midpoints between windows, so every flag belongs to
  exactly one window's region; precision = flags inside the window / flags in its region.

Floors: every labelled window is flagged (event recall 1.0, NAB's own notion of detection), and
overall point precision is at least 1.5× chance — chance being the share of all points that lie
inside a window (≈ 0.10), which is what a detector flagging at random would score.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from meshinsights.model import Window
from meshinsights.steps.anomaly import robust_zscore
from meshinsights.steps.resample import resample

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "nab_anomaly"
KEY = "realKnownCause/machine_temperature_system_failure.csv"


def load() -> tuple[pd.DataFrame, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    raw = pd.read_csv(FIXTURE / "machine_temperature_system_failure.csv.gz")
    telemetry = pd.DataFrame({
        "machine_id": "nab-machine", "ts": pd.to_datetime(raw["timestamp"], utc=True),
        "metric": "temperature", "value": raw["value"].astype("float64"), "unit": None,
    })
    windows = json.loads((FIXTURE / "combined_windows.json").read_text())[KEY]
    return telemetry, [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for a, b in windows]


def score(flags: pd.DataFrame, windows: list[tuple[pd.Timestamp, pd.Timestamp]]) -> pd.DataFrame:
    """Per-window recall and precision (regions split at midpoints between windows)."""
    ts, flagged = flags["ts"], flags["flagged"].to_numpy(dtype=bool)
    mids = [a_end + (b_start - a_end) / 2 for (_, a_end), (b_start, _) in
            zip(windows[:-1], windows[1:], strict=True)]
    edges = [ts.min(), *mids, ts.max() + pd.Timedelta(seconds=1)]
    rows = []
    for i, (start, end) in enumerate(windows):
        inside = ((ts >= start) & (ts <= end)).to_numpy()
        region = ((ts >= edges[i]) & (ts < edges[i + 1])).to_numpy()
        hits = flagged & inside
        first = ts[hits].min() if hits.any() else pd.NaT
        rows.append({
            "window": f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}",
            "points": int(inside.sum()), "flagged": int(hits.sum()),
            "recall": hits.sum() / inside.sum(), "detected": bool(hits.any()),
            "first_flag_after_h": (first - start) / pd.Timedelta(hours=1) if hits.any() else np.nan,
            "precision": hits.sum() / max((flagged & region).sum(), 1),
            "false_flags_in_region": int((flagged & region & ~inside).sum()),
        })
    return pd.DataFrame(rows)


def test_nab_machine_temperature_failure_windows_are_flagged() -> None:
    telemetry, windows = load()
    whole = Window(telemetry["ts"].min().floor("1D"), telemetry["ts"].max().ceil("1D"))
    clean = resample(telemetry, freq="5min", fill_limit=2, window=whole)
    anomalies = robust_zscore(clean, window=whole)
    assert len(anomalies) == len(clean)  # every grid row is scored (or null-scored), none lost
    table = score(anomalies, windows)
    flags = anomalies["flagged"].to_numpy(dtype=bool)
    inside_any = np.zeros(len(anomalies), dtype=bool)
    for start, end in windows:
        inside_any |= ((anomalies["ts"] >= start) & (anomalies["ts"] <= end)).to_numpy()
    chance = inside_any[anomalies["value"].notna()].mean()
    precision = (flags & inside_any).sum() / flags.sum()
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print("\nNAB machine_temperature_system_failure — robust_zscore (defaults)\n", table)
    print(f"overall: flagged={int(flags.sum())} precision={precision:.3f} "
          f"(chance {chance:.3f}) event recall={table['detected'].mean():.2f} "
          f"point recall={(flags & inside_any).sum() / inside_any.sum():.3f}")
    assert table["detected"].all(), table
    assert precision >= 1.5 * chance
