"""A robot-run sample shaped like a robot fleet's telemetry (long format, runs overlapping).

``robot_runs_frame`` is deterministic given ``seed`` and ``start``: 2 robots × 3 runs of
10 minutes. Positions are read every 2 s: x and y by the arm's encoder, z by a lift sensor
1 s later (misaligned, as real sensors are: the time base interpolates between them); torque
and temperature every 10 s, 0.3 s and 0.7 s after the positions. Runs 1 and 2 of a robot
start at the same instant on two cells (they share timestamps and are still separate runs),
run 3 crosses midnight UTC, and run 2 of robot-01 loses its positions for 30 s. Rows come
shuffled, as a fleet's arrive.
``late_rows`` gives a few more readings of one run, to append later as late data.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["robot_runs_frame", "late_rows", "write_robot_runs", "ROBOTS", "RUN_SECONDS"]

ROBOTS = ("robot-01", "robot-02")
RUN_SECONDS = 600
POSITION_EVERY = 2
#: (run number, offset from start): runs 1 and 2 together; run 3 two minutes before midnight.
_RUNS = ((1, timedelta(hours=0)), (2, timedelta(hours=0)), (3, timedelta(hours=1, minutes=58)))
#: robot-01's run 2 has no positions for these seconds.
GAP = (200, 230)
DEFAULT_START = datetime(2024, 3, 4, 22, 0, tzinfo=UTC)


def run_uuid(robot: str, number: int, seed: int) -> str:
    """A uuid-shaped id, stable for (robot, run, seed)."""
    h = hashlib.sha256(f"{robot}/{number}/{seed}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _iso(ts: pd.DatetimeIndex) -> list[str]:
    return [t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z" for t in ts]


def _one_run(robot: str, number: int, t0: pd.Timestamp, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, ROBOTS.index(robot), number])
    secs = np.arange(0, RUN_SECONDS, POSITION_EVERY, dtype=float)
    if robot == ROBOTS[0] and number == 2:
        secs = secs[(secs < GAP[0]) | (secs >= GAP[1])]
    radius, omega = 0.5 + 0.1 * number, 2 * np.pi / (120 + 20 * number)
    pos = {
        "x": radius * np.cos(omega * secs) + rng.normal(0, 0.002, len(secs)),
        "y": radius * np.sin(omega * secs) + rng.normal(0, 0.002, len(secs)),
    }
    uuid, cell = run_uuid(robot, number, seed), f"cell-{number % 2 + 1}"
    lift = secs + 1.0  # the lift sensor reads z 1 s after the encoder reads x and y
    z = 0.3 + 0.05 * np.sin(omega * lift / 2)
    readings = [(*pair, secs, "position") for pair in pos.items()] + [("z", z, lift, "lift")]
    parts = [
        pd.DataFrame(
            {
                "time": _iso(t0 + pd.to_timedelta(at, "s")),
                "value": v.round(4),
                "field": axis,
                "sensor_type": sensor,
            }
        )
        for axis, v, at, sensor in readings
    ]
    slow = np.arange(0, RUN_SECONDS, 10, dtype=float)
    for field, sensor, lag, values in (
        ("torque", "torque", 0.3, 5 + rng.normal(0, 0.5, len(slow))),
        ("temperature", "thermal", 0.7, 35 + 0.01 * slow + rng.normal(0, 0.1, len(slow))),
    ):
        when = t0 + pd.to_timedelta(slow + lag, "s")
        parts.append(
            pd.DataFrame(
                {
                    "time": _iso(when),
                    "value": values.round(3),
                    "field": field,
                    "sensor_type": sensor,
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    return frame.assign(cell_id=cell, robot_id=robot, run_uuid=uuid)


def robot_runs_frame(seed: int = 7, start: datetime = DEFAULT_START) -> pd.DataFrame:
    """The sample: ``time, value, field, cell_id, robot_id, run_uuid, sensor_type`` rows."""
    runs = [
        _one_run(robot, number, pd.Timestamp(start) + offset, seed)
        for robot in ROBOTS
        for number, offset in _RUNS
    ]
    frame = pd.concat(runs, ignore_index=True)
    columns = ["time", "value", "field", "cell_id", "robot_id", "run_uuid", "sensor_type"]
    return frame[columns].sample(frac=1.0, random_state=seed).reset_index(drop=True)


def late_rows(frame: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """Readings of robot-02's run 1 at times it has none yet (a sensor's buffered upload)."""
    run = frame[
        (frame["robot_id"] == ROBOTS[1]) & (frame["run_uuid"] == run_uuid(ROBOTS[1], 1, seed))
    ]
    t0 = pd.Timestamp(min(run["time"]))
    when = t0 + pd.to_timedelta(np.arange(301.0, 311.0, 2.0), "s")  # odd seconds: new times
    return pd.DataFrame(
        {
            "time": _iso(pd.DatetimeIndex(when)),
            "value": np.full(len(when), 36.5),
            "field": "temperature",
            "cell_id": run["cell_id"].iloc[0],
            "robot_id": ROBOTS[1],
            "run_uuid": run["run_uuid"].iloc[0],
            "sensor_type": "thermal",
        }
    )


def write_robot_runs(folder: Path, seed: int = 7) -> Path:
    """Write ``robot_runs.csv`` into ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "robot_runs.csv"
    robot_runs_frame(seed).to_csv(path, index=False)
    return path
