"""Auto compaction: a machine-month partition is merged when a write brings it to the bound."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from meshinsights.errors import ConfigError
from meshinsights.model import TELEMETRY_SCHEMA, Window
from meshinsights.store import DeltaStore
from meshinsights.store.compaction import (
    auto_compact_bound,
    compact_table,
    merge_batches,
    partitions_to_compact,
)

NS = "unit"


def day_rows(machine: str, day: pd.Timestamp, value: float) -> pd.DataFrame:
    ts = pd.date_range(day, periods=24, freq="1h", tz="UTC")
    return pd.DataFrame(
        {
            "machine_id": machine,
            "ts": ts,
            "metric": "temperature",
            "value": value + np.arange(24, dtype=float),
            "unit": "degC",
            "ingested_at": ts,
        }
    )


def write_day(store: DeltaStore, machine: str, n: int, value: float | None = None) -> None:
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=n)
    window = Window(start.to_pydatetime(), (start + timedelta(days=1)).to_pydatetime())
    store.overwrite(
        NS,
        "telemetry",
        day_rows(machine, start, float(n) if value is None else value),
        machine_ids=machine,
        window=window,
        schema=TELEMETRY_SCHEMA,
    )


def files_per_machine(store: DeltaStore) -> dict[str, int]:
    actions = DeltaTable(store.uri(NS, "telemetry")).get_add_actions(flatten=True)
    return pd.Series(actions.column("partition.machine_id").to_pylist()).value_counts().to_dict()


def test_partition_is_merged_when_a_write_reaches_the_bound(tmp_path):
    store = DeltaStore(str(tmp_path), auto_compact_files=4)
    for n in range(3):
        write_day(store, "a", n)
        write_day(store, "b", n)
    assert files_per_machine(store) == {"a": 3, "b": 3}

    write_day(store, "a", 3)  # a's January partition reaches 4 files: merged

    assert files_per_machine(store) == {"a": 1, "b": 3}
    history = store.history(NS, "telemetry", 2)
    assert history[0]["meshinsights.operation"] == "auto-compact"
    assert "meshinsights.operation" not in history[1]  # the write itself
    rows = store.read_all(NS, "telemetry")
    a = rows[rows.machine_id == "a"].sort_values("ts")
    assert len(a) == 4 * 24 and len(rows) == 7 * 24  # nothing lost, nothing doubled
    assert a["value"].iloc[[0, 24, 48, 72]].tolist() == [0.0, 1.0, 2.0, 3.0]
    # an overwrite of a day inside the merged file replaces exactly that day
    write_day(store, "a", 1, value=100.0)
    again = store.read_all(NS, "telemetry")
    a = again[again.machine_id == "a"].sort_values("ts")
    assert len(again) == 7 * 24
    assert a["value"].iloc[[0, 24, 47, 48, 72]].tolist() == [0.0, 100.0, 123.0, 2.0, 3.0]


def test_a_grouped_write_merges_every_full_partition_in_one_commit(tmp_path):
    store = DeltaStore(str(tmp_path), auto_compact_files=3)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for n in range(3):
        day = start + pd.Timedelta(days=n)
        frame = pd.concat([day_rows(m, day, float(n)) for m in ("a", "b", "c")])
        window = Window(day.to_pydatetime(), (day + pd.Timedelta(days=1)).to_pydatetime())
        store.overwrite(
            NS,
            "telemetry",
            frame,
            machine_ids=["a", "b", "c"],
            window=window,
            schema=TELEMETRY_SCHEMA,
        )
    assert files_per_machine(store) == {"a": 1, "b": 1, "c": 1}
    ops = [h.get("meshinsights.operation") for h in store.history(NS, "telemetry")]
    assert ops.count("auto-compact") == 1
    assert len(store.read_all(NS, "telemetry")) == 3 * 3 * 24


def test_off_and_bad_bounds(tmp_path, monkeypatch):
    store = DeltaStore(str(tmp_path), auto_compact_files=0)
    for n in range(10):
        write_day(store, "a", n)
    assert files_per_machine(store) == {"a": 10}
    monkeypatch.delenv("MESHINSIGHTS_AUTO_COMPACT_FILES", raising=False)
    assert DeltaStore(str(tmp_path)).auto_compact_files == 8  # on by default
    monkeypatch.setenv("MESHINSIGHTS_AUTO_COMPACT_FILES", "0")
    assert DeltaStore(str(tmp_path)).auto_compact_files == 0  # off
    monkeypatch.setenv("MESHINSIGHTS_AUTO_COMPACT_FILES", "5")
    assert DeltaStore(str(tmp_path)).auto_compact_files == 5
    for bad in ("1", "-2", "many"):
        monkeypatch.setenv("MESHINSIGHTS_AUTO_COMPACT_FILES", bad)
        with pytest.raises(ConfigError, match=f"0 \\(off\\) or a file count >= 2, got '{bad}'"):
            auto_compact_bound()


def test_only_written_partitions_are_considered():
    actions = pa.table(
        {
            "partition.machine_id": ["a"] * 5 + ["b"] * 5 + ["a"] * 2,
            "partition.month": ["2024-01"] * 10 + ["2024-02"] * 2,
        }
    )
    assert partitions_to_compact(actions, ["a"], ["2024-01", "2024-02"], 5) == {"2024-01": ["a"]}
    assert partitions_to_compact(actions, ["a", "b"], ["2024-01"], 5) == {"2024-01": ["a", "b"]}
    assert partitions_to_compact(actions, ["a"], ["2024-02"], 5) == {}
    assert partitions_to_compact(actions, ["a"], ["2024-01"], 0) == {}


def test_a_failed_merge_is_logged_and_the_write_stands(tmp_path, monkeypatch, caplog):
    """A concurrent writer can win the merge's commit; the overwrite has committed already."""
    from deltalake.exceptions import CommitFailedError

    import meshinsights.store.compaction as compaction

    def conflict(*args, **kwargs):
        raise CommitFailedError("concurrent delete read")

    monkeypatch.setattr(compaction, "write_deltalake", conflict)
    store = DeltaStore(str(tmp_path), auto_compact_files=2)
    write_day(store, "a", 0)
    write_day(store, "a", 1)
    assert files_per_machine(store) == {"a": 2}
    assert len(store.read_all(NS, "telemetry")) == 48
    assert "auto compaction of" in caplog.text and "skipped" in caplog.text


def test_an_overwrite_racing_a_merge_never_duplicates_rows(tmp_path):
    """The race the Airflow integration test hit: a writer loaded the table before a merge
    and commits after it. With optimize.compact() (dataChange=false) delta-rs accepted that
    commit and the row existed twice; the data-changing merge makes it a conflict instead."""
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    from meshinsights.store.compaction import auto_compact
    from meshinsights.store.frames import prepare
    from meshinsights.store.predicates import window_predicate

    store = DeltaStore(str(tmp_path), auto_compact_files=0)
    for n in range(3):
        write_day(store, "a", n)
    uri = store.uri(NS, "telemetry")
    stale = DeltaTable(uri)  # a writer that has read the three files

    merged = auto_compact(DeltaTable(uri), ["a"], ["2024-01"], 3, {})
    assert merged and files_per_machine(store) == {"a": 1}

    day1 = pd.Timestamp("2024-01-02", tz="UTC")
    new = prepare(day_rows("a", day1, 500.0), table="t", schema=TELEMETRY_SCHEMA, evolve=False)
    window = Window(day1.to_pydatetime(), (day1 + pd.Timedelta(days=1)).to_pydatetime())
    with pytest.raises(CommitFailedError):
        write_deltalake(stale, new, mode="overwrite", predicate=window_predicate(["a"], window))
    rows = store.read_all(NS, "telemetry")
    assert len(rows) == 72 and not rows.duplicated(["machine_id", "ts"]).any()

    write_day(store, "a", 1, value=500.0)  # the store's retry path: reopen, overwrite
    rows = store.read_all(NS, "telemetry").sort_values("ts")
    assert len(rows) == 72 and not rows.duplicated(["machine_id", "ts"]).any()
    assert rows["value"].iloc[24] == 500.0


def test_parallel_writers_with_auto_compaction_keep_every_row_once(tmp_path):
    """Four spawned processes overwrite their own one-row windows of one machine-month, each
    row twice, while their writes keep merging the partition. With the merge done by
    ``optimize.compact()`` this lost nothing but duplicated rows massively (1,434 rows for 48
    in one run: delta-rs accepts an overwrite that removed a file a concurrent OPTIMIZE had
    already merged); the data-changing merge leaves exactly one row per window."""
    import multiprocessing as mp

    from tests.store.compaction_writer import write_rows

    ctx = mp.get_context("spawn")  # deltalake's runtime is not fork-safe
    procs = [ctx.Process(target=write_rows, args=(str(tmp_path), w, 6, 2)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]

    rows = DeltaStore(str(tmp_path)).read_all("ns", "runs")
    assert len(rows) == 24
    assert not rows.duplicated(["machine_id", "ts"]).any()
    assert set(rows["value"]) == {2.0}  # every window holds its last write


def _actions(rows: list[tuple[str, str, int]]) -> pa.Table:
    """A synthetic get_add_actions table: one row per (month, machine, records) file."""
    return pa.table(
        {
            "partition.month": [r[0] for r in rows],
            "partition.machine_id": [r[1] for r in rows],
            "num_records": [r[2] for r in rows],
        }
    )


def test_merge_batches_group_one_month_up_to_the_row_budget():
    actions = _actions(
        [
            ("2024-01", "a", 10), ("2024-01", "a", 10),  # 2 files, 20 rows
            ("2024-01", "b", 30), ("2024-01", "b", 30),  # 2 files, 60 rows
            ("2024-01", "c", 5),  # one file: already compact, skipped
            ("2024-01", "d", 200), ("2024-01", "d", 200),  # larger than the budget: alone
            ("2024-02", "a", 1), ("2024-02", "a", 1), ("2024-02", "a", 1),
        ]
    )  # fmt: skip
    assert merge_batches(actions, max_rows=100) == [
        ("2024-01", ["a", "b"], 4, 80),
        ("2024-01", ["d"], 2, 400),
        ("2024-02", ["a"], 3, 3),
    ]
    assert merge_batches(actions, max_rows=10) == [
        ("2024-01", ["a"], 2, 20),
        ("2024-01", ["b"], 2, 60),
        ("2024-01", ["d"], 2, 400),
        ("2024-02", ["a"], 3, 3),
    ]
    assert merge_batches(_actions([("2024-01", "a", 1)]), max_rows=10) == []


def test_maintenance_compaction_merges_in_bounded_batches_and_keeps_every_row(tmp_path):
    store = DeltaStore(str(tmp_path))
    for machine in ("a", "b", "c"):
        for n in range(4):
            write_day(store, machine, n)
    write_day(store, "c", 40)  # February: a one-file partition, left alone
    expected = store.read_all(NS, "telemetry").sort_values(["machine_id", "ts"])
    version = store.version(NS, "telemetry")

    metrics = compact_table(DeltaTable(store.uri(NS, "telemetry")), {}, max_rows=24 * 8)
    assert metrics == {
        "numFilesRemoved": 12,
        "numFilesAdded": 3,
        "partitionsOptimized": 3,
        "commits": 2,  # a+b (192 rows), then c: one batch never exceeds the budget
        "rowsRewritten": 288,
    }
    assert files_per_machine(store) == {"a": 1, "b": 1, "c": 2}
    assert store.version(NS, "telemetry") == version + 2
    after = store.read_all(NS, "telemetry").sort_values(["machine_id", "ts"])
    pd.testing.assert_frame_equal(after.reset_index(drop=True), expected.reset_index(drop=True))
    ops = [h.get("meshinsights.operation") for h in store.history(NS, "telemetry", 2)]
    assert ops == ["compact", "compact"]
    assert compact_table(DeltaTable(store.uri(NS, "telemetry")), {})["commits"] == 0


def test_a_stale_compaction_loses_to_a_writer_and_retries_on_its_files(tmp_path):
    """The compactor read the partition before a writer added a day: its commit conflicts,
    it rereads and merges the new day too; nothing is lost or duplicated."""
    store = DeltaStore(str(tmp_path))
    for n in range(3):
        write_day(store, "a", n)
    stale = DeltaTable(store.uri(NS, "telemetry"))
    write_day(store, "a", 3)  # committed after the compactor loaded the table
    write_day(store, "a", 1, value=500.0)  # and an overwrite of a day it had read

    metrics = compact_table(stale, {})
    assert metrics["numFilesRemoved"] == 4 and metrics["commits"] == 1
    assert files_per_machine(store) == {"a": 1}
    rows = store.read_all(NS, "telemetry").sort_values("ts")
    assert len(rows) == 96 and not rows.duplicated(["machine_id", "ts"]).any()
    assert rows["value"].iloc[24] == 500.0


def test_maintenance_compaction_beside_parallel_writers_keeps_every_row_once(tmp_path):
    """Three spawned writers overwrite their one-row windows of one partition (each row
    twice, 0.1 s apart) while a fourth process runs maintenance compaction in a loop, its
    merges committing between the writers' commits. With ``optimize.compact()`` in the loop
    the same run kept 43 and 39 rows for 24 (2 of 3 manual runs); the data-changing merge
    keeps one each."""
    import multiprocessing as mp
    import time

    from tests.store.compaction_writer import compact_until, write_rows

    ctx = mp.get_context("spawn")  # deltalake's runtime is not fork-safe
    stop = tmp_path / "stop"
    compactor = ctx.Process(target=compact_until, args=(str(tmp_path), str(stop), 5000))
    # 0.1 s between a writer's commits leaves the compactor room to win some races.
    writers = [ctx.Process(target=write_rows, args=(str(tmp_path), w, 8, 0, 0.1)) for w in range(3)]
    compactor.start()
    ready = tmp_path / "stop.ready"
    for _ in range(600):  # the compactor is importing: start the writers once it loops
        if ready.exists():
            break
        time.sleep(0.1)
    for p in writers:
        p.start()
    for p in writers:
        p.join(timeout=300)
    stop.touch()
    compactor.join(timeout=120)
    assert [p.exitcode for p in writers] == [0, 0, 0] and compactor.exitcode == 0

    store = DeltaStore(str(tmp_path))
    ops = [h.get("meshinsights.operation") for h in reversed(store.history("ns", "runs"))]
    first_merge = ops.index("compact")
    assert any(op is None for op in ops[first_merge:])  # writers committed after a merge
    rows = store.read_all("ns", "runs")
    assert len(rows) == 24
    assert not rows.duplicated(["machine_id", "ts"]).any()
    assert set(rows["value"]) == {2.0}
