"""Per-run robot analytics: positions on one time base, kinematics, and run statistics.

Meant for pipelines windowed by run (``window: run``): the runner calls a step once per run
with that run's rows (long form: ``ts, metric, value``) and adds ``machine_id`` and ``run_id``
to the output. Nothing is invented across a gap:

- **Time base**: the union of the times at which any position metric was read. Sensors that
  sample at slightly different instants are aligned by linear interpolation *in time*, and
  only between two readings of that sensor at most ``max_gap`` apart; anything else stays
  null. Repeated readings of one sensor at one instant are averaged.
- **Segments**: consecutive time-base rows that both have every position and are at most
  ``max_gap`` apart. Distance, covered time and velocities are computed over segments only —
  a gap counts neither as zero distance nor as a straight jump across it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS
from meshinsights.steps.params import Duration
from meshinsights.steps.registry import step

__all__ = [
    "run_kinematics",
    "run_stats",
    "positions_on_time_base",
    "KINEMATICS_SCHEMA",
    "RUN_STATS_SCHEMA",
]

AXES = ("x", "y", "z")

KINEMATICS_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),
        ("x", pa.float64()),  # the position metrics, in the order of position_metrics
        ("y", pa.float64()),
        ("z", pa.float64()),
        ("vx", pa.float64()),  # per second, over the segment ending here (null after a gap)
        ("vy", pa.float64()),
        ("vz", pa.float64()),
        ("speed", pa.float64()),
        ("accel", pa.float64()),  # change of speed per second between consecutive segments
        ("interpolated", pa.bool_()),  # a position in this row was interpolated
    ]
)

RUN_STATS_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # the run's first reading
        ("run_start", TS),
        ("run_end", TS),
        ("duration_s", pa.float64()),
        ("rows", pa.int64()),
        ("metrics", pa.int64()),
        ("distance_m", pa.float64()),  # path length over segments only
        ("covered_s", pa.float64()),  # time covered by segments
        ("coverage", pa.float64()),  # covered_s / duration_s (null for a zero-length run)
        ("n_gaps", pa.int64()),  # position gaps longer than max_gap
        ("max_speed", pa.float64()),
    ]
)


def _interpolate(obs_t: np.ndarray, obs_v: np.ndarray, at: np.ndarray, gap: float) -> np.ndarray:
    """Values at ``at``: exact where read, linear between readings ≤ ``gap`` apart, else NaN."""
    out = np.full(len(at), np.nan)
    if not len(obs_t):
        return out
    right = np.searchsorted(obs_t, at, side="left")
    exact = (right < len(obs_t)) & (obs_t[np.minimum(right, len(obs_t) - 1)] == at)
    out[exact] = obs_v[right[exact]]
    inner = ~exact & (right > 0) & (right < len(obs_t))
    lo, hi = right[inner] - 1, right[inner]
    t0, t1 = obs_t[lo], obs_t[hi]
    ok = (t1 - t0) <= gap
    frac = (at[inner] - t0) / np.where(t1 > t0, t1 - t0, 1.0)
    vals = obs_v[lo] + frac * (obs_v[hi] - obs_v[lo])
    out[np.flatnonzero(inner)[ok]] = vals[ok]
    return out


def positions_on_time_base(
    telemetry: pd.DataFrame, position_metrics: list[str], max_gap: str
) -> pd.DataFrame:
    """``ts, x, y, z, interpolated`` on the union of the position sensors' times (sorted)."""
    gap = pd.Timedelta(max_gap).total_seconds()
    rows = telemetry[telemetry["metric"].isin(position_metrics)].dropna(subset=["value"])
    if rows.empty:
        return pd.DataFrame(
            {
                "ts": pd.Series(dtype="datetime64[us, UTC]"),
                **{a: pd.Series(dtype=float) for a in AXES},
                "interpolated": pd.Series(dtype=bool),
            }
        )
    means = rows.groupby(["metric", "ts"], sort=True)["value"].mean()
    rows = rows.assign(ts=pd.to_datetime(rows["ts"], utc=True))
    base = pd.DatetimeIndex(rows["ts"].drop_duplicates()).sort_values()
    origin = base[0]
    seconds = (base - origin).total_seconds().to_numpy()
    out = pd.DataFrame({"ts": base})
    interpolated = np.zeros(len(base), dtype=bool)
    for axis, metric in zip(AXES, position_metrics, strict=True):
        series = means.xs(metric) if metric in means.index.get_level_values(0) else pd.Series()
        obs_t = (pd.to_datetime(series.index, utc=True) - origin).total_seconds().to_numpy()
        values = _interpolate(obs_t, series.to_numpy(dtype=float), seconds, gap)
        read = np.isin(seconds, obs_t)
        interpolated |= ~read & ~np.isnan(values)
        out[axis] = values
    out["interpolated"] = interpolated
    return out


def _segments(base: pd.DataFrame, max_gap: str) -> pd.DataFrame:
    """Rows with every position, plus ``dt`` and ``step`` (distance) of the segment ending
    at each, and ``valid``: that segment is at most ``max_gap`` long."""
    full = base.dropna(subset=list(AXES)).reset_index(drop=True)
    dt = full["ts"].diff().dt.total_seconds()
    step = np.sqrt(sum(full[a].diff() ** 2 for a in AXES))
    full["dt"], full["step"] = dt, step
    full["valid"] = dt.notna() & (dt > 0) & (dt <= pd.Timedelta(max_gap).total_seconds())
    return full


def _check(position_metrics: list[str]) -> None:
    if len(position_metrics) != 3 or len(set(position_metrics)) != 3:
        raise ValueError(
            f"position_metrics must name 3 distinct metrics (x, y, z), got {position_metrics}"
        )


@step(inputs=["telemetry"], output="run_kinematics", schema=KINEMATICS_SCHEMA)
def run_kinematics(
    telemetry: pd.DataFrame,
    *,
    position_metrics: list[str] = ["x", "y", "z"],  # noqa: B006 (never mutated)
    max_gap: Duration = "2s",
) -> pd.DataFrame:
    """The run's positions on one time base, with velocity, speed and acceleration.

    Velocity is the displacement over the segment ending at a row divided by its duration;
    after a gap (or at the first row) it is null, and so are rows missing a position.
    ``accel`` is the change of speed between two consecutive segments per second.
    """
    _check(position_metrics)
    columns = [c for c in KINEMATICS_SCHEMA.names if c != "machine_id"]
    base = positions_on_time_base(telemetry, position_metrics, max_gap)
    seg = _segments(base, max_gap)
    if seg.empty:
        return base.reindex(columns=columns)
    for a in AXES:
        seg[f"v{a}"] = (seg[a].diff() / seg["dt"]).where(seg["valid"])
    seg["speed"] = (seg["step"] / seg["dt"]).where(seg["valid"])
    both = seg["valid"] & seg["valid"].shift(1, fill_value=False)
    seg["accel"] = (seg["speed"].diff() / seg["dt"]).where(both)
    # Rows missing a position stay, with null kinematics: the gap is visible, never filled.
    derived = ["vx", "vy", "vz", "speed", "accel"]
    out = base.merge(seg[["ts", *derived]], on="ts", how="left")
    return out[columns]


@step(inputs=["telemetry"], output="run_stats", schema=RUN_STATS_SCHEMA)
def run_stats(
    telemetry: pd.DataFrame,
    *,
    position_metrics: list[str] = ["x", "y", "z"],  # noqa: B006 (never mutated)
    max_gap: Duration = "2s",
) -> pd.DataFrame:
    """One row per run: duration, rows, distance travelled, how much of the run it covers.

    ``duration_s`` is last − first reading of any metric; ``distance_m`` sums the segments'
    lengths and ``covered_s`` their durations, so ``coverage`` says how much of the run the
    distance is measured over; ``n_gaps`` counts position gaps longer than ``max_gap``.
    """
    _check(position_metrics)
    if telemetry.empty:
        return pd.DataFrame(columns=[c for c in RUN_STATS_SCHEMA.names if c != "machine_id"])
    seg = _segments(positions_on_time_base(telemetry, position_metrics, max_gap), max_gap)
    first, last = telemetry["ts"].min(), telemetry["ts"].max()
    duration = (last - first).total_seconds()
    valid = seg[seg["valid"]] if len(seg) else seg
    covered = float(valid["dt"].sum()) if len(valid) else 0.0
    gaps = int((seg["dt"] > pd.Timedelta(max_gap).total_seconds()).sum()) if len(seg) else 0
    speeds = valid["step"] / valid["dt"] if len(valid) else pd.Series(dtype=float)
    row = {
        "ts": first,
        "run_start": first,
        "run_end": last,
        "duration_s": duration,
        "rows": len(telemetry),
        "metrics": telemetry["metric"].nunique(),
        "distance_m": float(valid["step"].sum()) if len(valid) else 0.0,
        "covered_s": covered,
        "coverage": covered / duration if duration > 0 else None,
        "n_gaps": gaps,
        "max_speed": float(speeds.max()) if len(speeds) else None,
    }
    return pd.DataFrame([row])
