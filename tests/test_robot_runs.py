"""The robot-run example (examples/robot_runs) end to end on its shipped sample: every row
accounted, per-run statistics equal to a direct computation over the CSV, late rows of one
run reprocessing that run only."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meshinsights.config import load_configs
from meshinsights.demo_runs import ROBOTS, late_rows, robot_runs_frame, run_uuid
from meshinsights.engine.runner import run_pipeline
from meshinsights.model import Window
from meshinsights.store import DeltaStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "robot_runs"
RANGE = Window.parse("2024-03-04", "2024-03-06")
NS = "robot_runs"


def test_the_shipped_sample_is_the_generator_s_output() -> None:
    shipped = pd.read_csv(EXAMPLE / "data" / "robot_runs.csv")
    fresh = robot_runs_frame()
    pd.testing.assert_frame_equal(shipped, fresh, check_dtype=False)
    assert robot_runs_frame(seed=7).equals(fresh)
    assert fresh.groupby("robot_id")["run_uuid"].nunique().to_dict() == dict.fromkeys(ROBOTS, 3)
    t = pd.to_datetime(fresh["time"])
    one = fresh[fresh["robot_id"] == ROBOTS[0]]
    r1, r2, r3 = (run_uuid(ROBOTS[0], n, 7) for n in (1, 2, 3))
    times = {r: set(one.loc[one["run_uuid"] == r, "time"]) for r in (r1, r2)}
    shared = times[r1] & times[r2]
    assert len(shared) > 100  # two runs of one robot at the same instants
    crossing = t[fresh["run_uuid"] == r3]
    assert crossing.min().date() != crossing.max().date()  # run 3 crosses midnight
    x2 = pd.to_datetime(one.loc[(one["run_uuid"] == r2) & (one["field"] == "x"), "time"])
    assert x2.sort_values().diff().max() == pd.Timedelta(seconds=32)  # the 30 s gap
    late = late_rows(fresh)
    assert set(late["run_uuid"]) == {run_uuid(ROBOTS[1], 1, 7)}
    keys = set(zip(fresh["time"], fresh["field"], fresh["run_uuid"], strict=True))
    assert not keys & set(zip(late["time"], late["field"], late["run_uuid"], strict=True))


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The example's configs and sample in a folder of their own (the tests append to it)."""
    shutil.copytree(EXAMPLE, tmp_path / "robot_runs")
    return tmp_path / "robot_runs" / "configs"


def _distance(run: pd.DataFrame, max_gap: float) -> tuple[float, float]:
    """Path length and covered seconds, computed directly: each axis interpolated onto the
    union of the position times with np.interp, masked where its readings are > max_gap apart."""
    pos = run[run["field"].isin(["x", "y", "z"])].assign(t=lambda f: pd.to_datetime(f["time"]))
    origin = pos["t"].min()
    pos = pos.assign(s=(pos["t"] - origin).dt.total_seconds())
    base = np.sort(pos["s"].unique())
    axes = []
    for axis in "xyz":
        a = pos[pos["field"] == axis].groupby("s")["value"].mean()
        v = np.interp(base, a.index, a.to_numpy(), left=np.nan, right=np.nan)
        nxt = np.searchsorted(a.index.to_numpy(), base)
        for i, s in enumerate(base):
            if s in a.index:
                continue
            lo, hi = a.index[nxt[i] - 1], a.index[min(nxt[i], len(a) - 1)]
            if nxt[i] == 0 or nxt[i] == len(a) or hi - lo > max_gap:
                v[i] = np.nan
        axes.append(v)
    xyz = np.column_stack(axes)
    keep = ~np.isnan(xyz).any(axis=1)
    s, xyz = base[keep], xyz[keep]
    dist = covered = 0.0
    for i in range(1, len(s)):
        if s[i] - s[i - 1] <= max_gap:
            dist += float(np.linalg.norm(xyz[i] - xyz[i - 1]))
            covered += s[i] - s[i - 1]
    return dist, covered


def test_the_example_runs_and_its_statistics_match_a_direct_computation(
        example: Path, tmp_path: Path) -> None:
    store = DeltaStore(str(tmp_path / "artifacts"))
    configs = load_configs(example)
    source = pd.read_csv(example.parent / "data" / "robot_runs.csv")
    for robot in ROBOTS:
        summaries = run_pipeline(configs, robot, RANGE, store)
        ingests = [s for s in summaries if s["step"] == "ingest"]
        rows = int((source["robot_id"] == robot).sum())
        assert sum(s["rows_in"] for s in ingests) == rows
        assert sum(s["rows_out"] for s in ingests) == rows  # nothing quarantined, no duplicate
    stats = store.read_all(NS, "run_stats").set_index("run_id")
    assert len(stats) == 6
    for run_id, run in source.groupby("run_uuid"):
        got = stats.loc[run_id]
        t = pd.to_datetime(run["time"])
        assert got["duration_s"] == pytest.approx((t.max() - t.min()).total_seconds())
        assert got["rows"] == len(run) and got["metrics"] == 5
        dist, covered = _distance(run, max_gap=5.0)
        assert got["distance_m"] == pytest.approx(dist, rel=1e-9)
        assert got["covered_s"] == pytest.approx(covered)
    gapped = stats.loc[run_uuid(ROBOTS[0], 2, 7)]
    assert gapped["n_gaps"] == 1 and gapped["coverage"] < 0.95
    assert (stats.drop(index=run_uuid(ROBOTS[0], 2, 7))["n_gaps"] == 0).all()
    kin = store.read_all(NS, "run_kinematics")
    assert kin["interpolated"].mean() > 0.9  # z is read 1 s after x and y: aligned by time
    # Late rows of one run: that run, and no other, is recomputed.
    late = late_rows(source)
    pd.concat([source, late]).to_csv(example.parent / "data" / "robot_runs.csv", index=False)
    again = run_pipeline(configs, ROBOTS[1], RANGE, store)
    assert {s["window"]["run"] for s in again if s["step"] != "ingest"} == {
        run_uuid(ROBOTS[1], 1, 7)}
    after = store.read_all(NS, "run_stats").set_index("run_id")
    assert after.loc[run_uuid(ROBOTS[1], 1, 7), "rows"] == stats.loc[
        run_uuid(ROBOTS[1], 1, 7), "rows"] + len(late)
