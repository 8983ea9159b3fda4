"""Crash safety (kill -9 mid-overwrite) and concurrent writers (spawned processes).

``make test`` runs 20 kill trials and 16 writers; ``make soak`` (MESHINSIGHTS_SOAK=1) runs the
same checks with 200 trials and 64 writers × 3 generations from 32 processes.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import select
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.store import DeltaStore
from tests.conftest import REPO
from tests.reliability.conftest import record, soak
from tests.reliability.writer import DAY, ROWS, write

TRIALS = 20


def window_state(root: str, machine: str = "m") -> tuple[int, set[float]]:
    df = DeltaStore(root).read("rel", "t", machine, DAY)
    return len(df), set(df["value"].unique())


def kill_trials(root: str, trials: int, seed: int) -> dict[str, int]:
    """Kill a looping writer at a random moment, ``trials`` times; check the table each time."""
    write(root, "m", 0)
    write(root, "other", 99)
    rng = random.Random(seed)
    outcomes = {"trials": trials, "killed": 0, "finished": 0, "killed_before_first_commit": 0}
    seen_generations: set[float] = set()
    for trial in range(trials):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.writer", root, "m", str(1000 * (trial + 1)),
             "50"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if rng.random() < 0.2:  # during start-up or the first overwrite
            time.sleep(rng.uniform(0.0, 1.5))
        else:  # mid-loop: after the writer reports its first commit (start-up time varies
            # with load, so a fixed delay would often kill before any write began)
            ready, _, _ = select.select([proc.stdout], [], [], 120)
            assert ready, "the writer never committed"
            proc.stdout.readline()
            time.sleep(rng.uniform(0.0, 0.5))  # one overwrite takes tens of milliseconds
        outcomes["killed" if proc.poll() is None else "finished"] += 1
        proc.kill()
        proc.wait()
        proc.stdout.close()
        n, values = window_state(root)  # the table always opens
        outcomes["killed_before_first_commit"] += values <= seen_generations | {0.0}
        assert n == ROWS, f"trial {trial}: {n} rows, a half-written window"
        assert len(values) == 1, f"trial {trial}: mixed generations {values}"
        seen_generations |= values
        assert window_state(root, "other") == (ROWS, {99.0})
    assert outcomes["killed"] >= trials // 2, outcomes
    assert len(seen_generations) > trials // 4  # kills landed at many different points
    write(root, "m", 7)  # a rerun converges to the identical content
    df = DeltaStore(root).read("rel", "t", "m", DAY)
    assert len(df) == ROWS and set(df["value"]) == {7.0}
    outcomes["distinct_states_seen"] = len(seen_generations)
    outcomes["versions"] = DeltaStore(root).version("rel", "t") or 0
    return outcomes


def test_kill_9_during_overwrite_never_leaves_a_half_window(tmp_path: Path):
    record("kill_9", **kill_trials(str(tmp_path / "store"), TRIALS, seed=1234))


@soak
def test_soak_kill_9_two_hundred_times(tmp_path: Path):
    record("kill_9_soak", **kill_trials(str(tmp_path / "store"), 200, seed=int(time.time())))


def _spawned_write(args: tuple[str, str, int]) -> int:
    return write(*args)


def spawned_writers(root: str, machines: int, processes: int, generations: int = 1
                    ) -> dict[str, int]:
    """``machines`` × ``generations`` overwrites of one table from spawned processes at once."""
    write(root, "seed", 0)
    names = [f"m{i:02d}" for i in range(machines)]
    jobs = [(root, m, g * 1000 + i + 1) for g in range(generations) for i, m in enumerate(names)]
    ctx = mp.get_context("spawn")  # deltalake's runtime is not fork-safe
    started = time.perf_counter()
    with ctx.Pool(processes) as pool:
        versions = pool.map(_spawned_write, jobs, chunksize=1)
    seconds = time.perf_counter() - started
    assert len(set(versions)) == len(jobs)  # every writer got its own commit
    df = DeltaStore(root).read_all("rel", "t")
    counts = df.groupby("machine_id").size()
    assert set(counts.index) == {*names, "seed"}
    assert (counts == ROWS).all()
    assert not df.duplicated(["machine_id", "ts"]).any()
    last = generations - 1
    for i, m in enumerate(names):  # pool.map runs a machine's generations in order per chunk
        values = set(df.loc[df.machine_id == m, "value"])
        assert len(values) == 1 and values <= {float(g * 1000 + i + 1) for g in range(generations)}
        if generations == 1:
            assert values == {float(last * 1000 + i + 1)}
    history = DeltaStore(root).history("rel", "t")
    return {"writers": len(jobs), "processes": processes, "commits": len(set(versions)),
            "rows": len(df), "seconds": round(seconds, 1), "table_versions": len(history)}


def test_sixteen_spawned_writers_lose_no_commit(tmp_path: Path):
    record("writers_16", **spawned_writers(str(tmp_path / "store"), 16, 8))


@soak
def test_soak_sixty_four_writers_three_generations(tmp_path: Path):
    record("writers_64_soak", **spawned_writers(str(tmp_path / "store"), 64, 32, generations=3))


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
