"""Crash safety (kill -9 mid-overwrite) and concurrent writers (spawned processes)."""

from __future__ import annotations

import multiprocessing as mp
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.store import DeltaStore

from tests.conftest import REPO
from tests.reliability.writer import DAY, ROWS, write

TRIALS = 20


def window_state(root: str, machine: str = "m") -> tuple[int, set[float]]:
    df = DeltaStore(root).read("rel", "t", machine, DAY)
    return len(df), set(df["value"].unique())


def test_kill_9_during_overwrite_never_leaves_a_half_window(tmp_path: Path):
    root = str(tmp_path / "store")
    write(root, "m", 0)
    write(root, "other", 99)
    rng = random.Random(1234)
    outcomes = {"killed": 0, "finished": 0}
    seen_generations: set[float] = set()
    for trial in range(TRIALS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.writer", root, "m", str(1000 * (trial + 1)),
             "50"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Python start-up takes ~1 s here; kill anywhere from start-up to mid-loop.
        time.sleep(rng.uniform(0.5, 3.0))
        outcomes["killed" if proc.poll() is None else "finished"] += 1
        proc.kill()
        proc.wait()
        n, values = window_state(root)  # the table always opens
        assert n == ROWS, f"trial {trial}: {n} rows, a half-written window"
        assert len(values) == 1, f"trial {trial}: mixed generations {values}"
        seen_generations |= values
        assert window_state(root, "other") == (ROWS, {99.0})
    assert outcomes["killed"] >= TRIALS // 2, outcomes
    assert len(seen_generations) > 5  # kills landed at many different points
    write(root, "m", 7)  # a rerun converges to the identical content
    df = DeltaStore(root).read("rel", "t", "m", DAY)
    assert len(df) == ROWS and set(df["value"]) == {7.0}


def _spawned_write(args: tuple[str, str, int]) -> int:
    return write(*args)


def test_sixteen_spawned_writers_lose_no_commit(tmp_path: Path):
    root = str(tmp_path / "store")
    write(root, "seed", 0)
    machines = [f"m{i:02d}" for i in range(16)]
    ctx = mp.get_context("spawn")  # deltalake's runtime is not fork-safe
    with ctx.Pool(8) as pool:
        versions = pool.map(_spawned_write, [(root, m, i + 1) for i, m in enumerate(machines)])
    assert len(set(versions)) == 16  # every writer got its own commit
    store = DeltaStore(root)
    df = store.read_all("rel", "t")
    counts = df.groupby("machine_id").size()
    assert set(counts.index) == {*machines, "seed"}
    assert (counts == ROWS).all()
    assert not df.duplicated(["machine_id", "ts"]).any()
    for i, m in enumerate(machines):
        assert set(df.loc[df.machine_id == m, "value"]) == {float(i + 1)}


def test_same_machine_window_twice_at_once_equals_one_run(tmp_path: Path):
    root, single = str(tmp_path / "a"), str(tmp_path / "b")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_spawned_write, [(root, "m", 5), (root, "m", 5)])
    write(single, "m", 5)
    a = DeltaStore(root).read("rel", "t", "m", DAY)
    b = DeltaStore(single).read("rel", "t", "m", DAY)
    pd.testing.assert_frame_equal(a, b)


@pytest.fixture(autouse=True)
def _repo_on_path(monkeypatch):
    """Spawned children import tests.reliability.writer: make the repo importable for them."""
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
