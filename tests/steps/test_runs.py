"""run_kinematics and run_stats: values checked against direct numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshinsights.steps.runs import run_kinematics, run_stats

T0 = pd.Timestamp("2024-03-04T23:59:00Z")  # runs here cross midnight UTC


def long(readings: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """``{metric: [(seconds after T0, value), ...]}`` as long telemetry rows."""
    rows = [(T0 + pd.Timedelta(seconds=s), m, v) for m, pts in readings.items() for s, v in pts]
    frame = pd.DataFrame(rows, columns=["ts", "metric", "value"])
    frame["ts"] = frame["ts"].astype("datetime64[us, UTC]")
    return frame.assign(machine_id="robot", unit=None, run_id="r")


def line(seconds: list[float], speed: float) -> dict[str, list[tuple[float, float]]]:
    """A straight move along x at ``speed`` m/s (y, z fixed), read at ``seconds``."""
    return {"x": [(s, speed * s) for s in seconds], "y": [(s, 1.0) for s in seconds],
            "z": [(s, 0.5) for s in seconds]}


def test_a_straight_move_has_exact_speed_and_distance() -> None:
    seconds = [float(s) for s in range(0, 121)]  # 2 minutes at 1 Hz, across midnight
    frame = long(line(seconds, 0.25))
    kin = run_kinematics(frame)
    assert len(kin) == 121 and not kin["interpolated"].any()
    assert kin["speed"].iloc[1:].tolist() == pytest.approx([0.25] * 120)
    assert kin["vx"].iloc[1:].tolist() == pytest.approx([0.25] * 120)
    assert kin["accel"].iloc[2:].tolist() == pytest.approx([0.0] * 119, abs=1e-12)
    assert math.isnan(kin["speed"].iloc[0])  # no segment ends at the first reading
    stats = run_stats(frame).iloc[0]
    assert stats["distance_m"] == pytest.approx(0.25 * 120)
    assert stats["duration_s"] == 120.0 and stats["covered_s"] == 120.0
    assert stats["coverage"] == 1.0 and stats["n_gaps"] == 0
    assert stats["rows"] == 363 and stats["metrics"] == 3
    assert stats["run_start"] == T0 and stats["ts"] == T0


def test_a_gap_is_neither_zero_distance_nor_a_jump() -> None:
    seconds = [float(s) for s in range(0, 61)] + [float(s) for s in range(100, 161)]
    frame = long(line(seconds, 0.5))
    stats = run_stats(frame, max_gap="2s").iloc[0]
    # Segments of 60 s each side of the 40 s gap: 2 × 60 s at 0.5 m/s; the jump is not counted.
    assert stats["distance_m"] == pytest.approx(60.0)
    assert stats["covered_s"] == 120.0 and stats["duration_s"] == 160.0
    assert stats["coverage"] == pytest.approx(0.75) and stats["n_gaps"] == 1
    kin = run_kinematics(frame, max_gap="2s")
    after = kin[kin["ts"] == T0 + pd.Timedelta(seconds=100)].iloc[0]
    assert math.isnan(after["speed"])  # the first reading after the gap starts afresh
    # No value is interpolated into the gap: no row exists inside it at all.
    inside = kin[(kin["ts"] > T0 + pd.Timedelta(seconds=60))
                 & (kin["ts"] < T0 + pd.Timedelta(seconds=100))]
    assert inside.empty


def test_misaligned_sensors_are_interpolated_within_max_gap_only() -> None:
    # x and y at whole seconds, z (another sensor) half a second later, and z silent 20-30 s.
    xs = [float(s) for s in range(0, 41)]
    zs = [s + 0.5 for s in xs if not 20 <= s < 30]
    frame = long({"x": [(s, 0.1 * s) for s in xs], "y": [(s, 0.0) for s in xs],
                  "z": [(s, 0.02 * s) for s in zs]})
    kin = run_kinematics(frame, max_gap="2s").set_index("ts")
    at = kin.loc[T0 + pd.Timedelta(seconds=10)]
    assert at["interpolated"] and at["z"] == pytest.approx(0.02 * 10)  # z between 9.5 and 10.5
    half = kin.loc[T0 + pd.Timedelta(seconds=10.5)]
    assert half["x"] == pytest.approx(1.05) and half["interpolated"]
    # 19.5 → 30.5 is 11 s apart: z stays null in between, and those rows have no speed.
    hole = kin.loc[T0 + pd.Timedelta(seconds=25)]
    assert math.isnan(hole["z"]) and math.isnan(hole["speed"])
    silent = kin["z"].loc[T0 + pd.Timedelta(seconds=20):T0 + pd.Timedelta(seconds=30)]
    assert not silent.notna().any()


def test_repeated_readings_are_averaged_and_empty_runs_give_empty_frames() -> None:
    frame = long({"x": [(0, 0.0), (0, 2.0), (1, 1.0)], "y": [(0, 0.0), (1, 0.0)],
                  "z": [(0, 0.0), (1, 0.0)]})
    kin = run_kinematics(frame)
    assert kin["x"].tolist() == [1.0, 1.0] and kin["speed"].iloc[1] == 0.0
    empty = frame.iloc[:0]
    assert run_kinematics(empty).empty and "speed" in run_kinematics(empty).columns
    assert run_stats(empty).empty and "distance_m" in run_stats(empty).columns
    with pytest.raises(ValueError, match="3 distinct metrics"):
        run_stats(frame, position_metrics=["x", "x", "z"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 300), st.floats(-5, 5), st.floats(-5, 5)),
                min_size=0, max_size=40),
       st.sampled_from(["1s", "5s", "30s"]))
def test_distance_is_bounded_by_every_displacement(points, max_gap) -> None:
    pts = sorted({round(t, 3): (x, y) for t, x, y in points}.items())
    frame = long({"x": [(t, x) for t, (x, _) in pts], "y": [(t, y) for t, (_, y) in pts],
                  "z": [(t, 0.0) for t, _ in pts]})
    stats = run_stats(frame, max_gap=max_gap)
    if not pts:
        assert stats.empty
        return
    row = stats.iloc[0]
    xy = np.array([p for _, p in pts])
    total = float(np.sqrt((np.diff(xy, axis=0) ** 2).sum(axis=1)).sum()) if len(xy) > 1 else 0.0
    assert 0.0 <= row["distance_m"] <= total + 1e-9
    if row["coverage"] is not None and not pd.isna(row["coverage"]):
        assert 0.0 <= row["coverage"] <= 1.0 + 1e-12
