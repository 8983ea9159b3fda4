"""Plotly figures for the dashboard: telemetry with overlays, curated series, quality bars.

Pure functions from (already down-sampled) frames to figures, so they are testable without a
browser. Overlays are single traces (anomaly markers, threshold steps, cycle segments) rather
than one shape per item, which keeps a figure light whatever the window's length.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from meshinsights.dashboard.data import MAX_POINTS, series_by

__all__ = [
    "curated_figure",
    "points_plotted",
    "quarantine_figure",
    "severity_color",
    "telemetry_figure",
]

_SEVERITY_COLORS = {
    "critical": "#b91c1c",
    "high": "#dc2626",
    "warning": "#f59e0b",
    "medium": "#f59e0b",
    "low": "#3b82f6",
    "info": "#6b7280",
}


def points_plotted(fig: go.Figure, names: set[str] | None = None) -> int:
    """How many points a figure's traces (or those named ``names``) carry for the browser."""
    return sum(
        len(t.x)
        for t in fig.data
        if getattr(t, "x", None) is not None and (names is None or t.name in names)
    )


def _first(fig: go.Figure, group: str) -> bool:
    """Whether no trace of legend ``group`` is in the figure yet (one legend entry per group)."""
    return not any(t.legendgroup == group for t in fig.data)


def _naive_utc(values: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(values, utc=True)
    return ts.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def _segments(starts: pd.Series, ends: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """x/y arrays drawing each ``[start, end]`` at ``y`` as one trace, broken by NaT/NaN.

    Numpy arrays (not lists) so plotly skips per-element validation: thousands of segments
    cost milliseconds. Times are naive UTC, which is how plotly draws the tz-aware series.
    """
    n = len(starts)
    xs = np.full(3 * n, np.datetime64("NaT"), dtype="datetime64[us]")
    ys = np.full(3 * n, np.nan)
    xs[0::3], xs[1::3] = _naive_utc(starts), _naive_utc(ends)
    values = pd.to_numeric(y, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ys[0::3], ys[1::3] = values, values
    return xs, ys


def telemetry_figure(
    telemetry: pd.DataFrame,
    *,
    anomalies: pd.DataFrame | None = None,
    thresholds: pd.DataFrame | None = None,
    cycles: pd.DataFrame | None = None,
    window_end: Any = None,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """One row per metric (shared time axis) with anomalies, thresholds and cycles overlaid."""
    series = series_by(telemetry, "metric", "value", max_points)
    metrics = list(series) or ["(no data)"]
    units = (
        telemetry.dropna(subset=["unit"]).groupby("metric")["unit"].first().to_dict()
        if {"unit", "metric"} <= set(telemetry.columns)
        else {}
    )
    fig = make_subplots(
        rows=len(metrics),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        subplot_titles=[f"{m} [{units[m]}]" if m in units else m for m in metrics],
    )
    for row, metric in enumerate(metrics, start=1):
        part = series.get(metric)
        if part is not None:
            fig.add_trace(
                go.Scattergl(
                    x=_naive_utc(part["ts"]),
                    y=part["value"],
                    mode="lines",
                    name=metric,
                    line={"width": 1},
                    legendgroup=metric,
                ),
                row=row,
                col=1,
            )
        _overlay_anomalies(fig, anomalies, metric, row, max_points)
        _overlay_thresholds(fig, thresholds, metric, row, window_end)
        _overlay_cycles(fig, cycles, metric, row, max_points)
    fig.update_layout(
        height=max(320, 220 * len(metrics)),
        margin={"l": 40, "r": 10, "t": 40, "b": 30},
        legend={"orientation": "h", "y": -0.08},
        hovermode="x unified",
    )
    return fig


def _overlay_anomalies(
    fig: go.Figure, anomalies: pd.DataFrame | None, metric: str, row: int, max_points: int
) -> None:
    if anomalies is None or anomalies.empty or "flagged" not in anomalies.columns:
        return
    hits = anomalies[(anomalies.get("metric") == metric) & anomalies["flagged"].fillna(False)]
    if hits.empty:
        return
    if len(hits) > max_points and "score" in hits.columns:  # keep the strongest
        hits = hits.reindex(hits["score"].abs().sort_values(ascending=False).index[:max_points])
    fig.add_trace(
        go.Scattergl(
            x=_naive_utc(hits["ts"]),
            y=hits["value"],
            mode="markers",
            name="anomaly",
            marker={"color": "#dc2626", "size": 7, "symbol": "x"},
            legendgroup="anomaly",
            showlegend=_first(fig, "anomaly"),
        ),
        row=row,
        col=1,
    )


def _overlay_thresholds(
    fig: go.Figure, thresholds: pd.DataFrame | None, metric: str, row: int, window_end: Any
) -> None:
    if thresholds is None or thresholds.empty or "metric" not in thresholds.columns:
        return
    rows = thresholds[thresholds["metric"] == metric].sort_values("ts")
    for stage, part in rows.groupby("stage" if "stage" in rows.columns else "metric"):
        ends = (
            part["ts"]
            .shift(-1)
            .fillna(
                pd.Timestamp(window_end)
                if window_end is not None
                else part["ts"].max() + pd.Timedelta(days=1)
            )
        )
        for bound, dash in (("lower", "dash"), ("upper", "dash"), ("center", "dot")):
            if bound not in part.columns:
                continue
            xs, ys = _segments(part["ts"], ends, part[bound])
            fig.add_trace(
                go.Scattergl(
                    x=xs,
                    y=ys,
                    mode="lines",
                    name=f"threshold stage {stage}",
                    line={"color": "#7c3aed", "dash": dash, "width": 1},
                    legendgroup=f"thr{stage}",
                    showlegend=_first(fig, f"thr{stage}"),
                ),
                row=row,
                col=1,
            )


def _overlay_cycles(
    fig: go.Figure, cycles: pd.DataFrame | None, metric: str, row: int, max_points: int
) -> None:
    if cycles is None or cycles.empty or not {"start_ts", "median"} <= set(cycles.columns):
        return
    part = cycles[cycles.get("metric", metric) == metric]
    if part.empty:
        return
    valid = (
        part["valid"].fillna(False).astype(bool)
        if "valid" in part.columns
        else pd.Series(True, index=part.index)
    )
    budget = max(1, max_points // 3)  # three points per segment
    for label, sel, color in (
        ("cycle (valid)", valid, "#059669"),
        ("cycle (rejected)", ~valid, "#9ca3af"),
    ):
        chosen = part[sel]
        if chosen.empty:
            continue
        step = -(-len(chosen) // budget)  # evenly thin a long window's cycles
        if step > 1:
            chosen, label = chosen.iloc[::step], f"{label}, 1 in {step}"
        xs, ys = _segments(chosen["start_ts"], chosen["ts"], chosen["median"])
        fig.add_trace(
            go.Scattergl(
                x=xs,
                y=ys,
                mode="lines",
                name=label,
                line={"color": color, "width": 4},
                opacity=0.7,
                legendgroup=label,
                showlegend=_first(fig, label),
            ),
            row=row,
            col=1,
        )


def curated_figure(
    df: pd.DataFrame,
    columns: list[str],
    group: str | None,
    *,
    title: str = "",
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """Time series of ``columns`` per ``group`` value (e.g. per metric or stage), down-sampled."""
    fig = go.Figure()
    for col in columns:
        for key, part in series_by(df, group, col, max_points).items():
            name = col if not group else f"{key} · {col}"
            mode = "lines" if len(part) > 40 else "lines+markers"
            fig.add_trace(go.Scattergl(x=_naive_utc(part["ts"]), y=part[col], mode=mode, name=name))
    fig.update_layout(
        title=title, height=360, margin={"l": 40, "r": 10, "t": 40, "b": 30}, hovermode="x unified"
    )
    return fig


def quarantine_figure(counts: pd.DataFrame) -> go.Figure:
    """Horizontal bars: quarantined rows per rule (and reason)."""
    label = counts["rule"].astype(str)
    if "reason" in counts.columns:
        label = label + ": " + counts["reason"].astype(str).str.slice(0, 60)
    fig = go.Figure(go.Bar(x=counts["rows"], y=label, orientation="h", marker_color="#f59e0b"))
    fig.update_layout(
        height=max(200, 40 * len(counts) + 80),
        margin={"l": 10, "r": 10, "t": 30, "b": 30},
        yaxis={"autorange": "reversed"},
        title="quarantined rows",
    )
    return fig


def severity_color(severity: str | None) -> str:
    """A color for a severity word (unknown words are grey)."""
    return _SEVERITY_COLORS.get(str(severity or "").lower(), "#6b7280")
