"""Smoke test of the benchmark runner: one quick benchmark end to end, and the JSON it writes."""

from __future__ import annotations

import json
from pathlib import Path

from bench.run import main


def test_quick_partition_benchmark_writes_a_report(tmp_path: Path):
    out = tmp_path / "results" / "latest.json"
    code = main(
        ["--only", "partitions", "--quick", "--out", str(out), "--workdir", str(tmp_path / "work")]
    )
    report = json.loads(out.read_text())
    result = report["benchmarks"]["partitions"]
    assert code == 0, result.get("traceback")
    assert report["meta"]["quick"] is True
    assert report["meta"]["command"] == "python -m bench.run --only partitions --quick"
    assert {"date", "nproc", "free_h", "python", "deltalake", "duckdb", "pandas"} <= set(
        report["meta"]
    )
    rows = {r["metric"]: r for r in result["rows"]}
    ratio = rows["daily runs: read_day 30 / 10 machines"]
    assert ratio["unit"] == "x" and ratio["target"] == "<= 1.5"
    assert ratio["ok"] is (ratio["value"] <= 1.5)
    # Every figure is a median of interleaved repetitions: 3 per variant in quick mode.
    times = result["samples"]["daily runs_times"]
    assert set(times) == {
        f"{op}_{n}"
        for op in (
            "overwrite",
            "overwrite_cold",
            "read_day",
            "read_day_settled",
            "read_day_cold",
            "read_week",
        )
        for n in (10, 30)
    }
    assert all(len(v) == 3 and all(x > 0 for x in v) for v in times.values())
    small, big = (sorted(times[f"read_day_{n}"])[1] for n in (10, 30))
    assert abs(ratio["value"] - big / small) <= 0.02 * ratio["value"]  # samples are rounded


def test_changed_tables_names_exactly_the_partitions_that_differ(tmp_path: Path):
    """The incremental benchmark's count of tables one late row changed (ingested_at aside)."""
    import pandas as pd

    from bench.incremental import DAY1, MACHINE, _changed_tables, _window
    from meshinsights.store import DeltaStore

    ts = pd.date_range(DAY1, periods=3, freq="1h")
    base = pd.DataFrame({"machine_id": MACHINE, "ts": ts, "value": [1.0, 2.0, 3.0]})
    late, normal = DeltaStore(str(tmp_path / "late")), DeltaStore(str(tmp_path / "normal"))
    frames = {
        "same": (base, base),
        "value": (base.assign(value=[1.0, 2.5, 3.0]), base),
        "rows": (base.iloc[:2], base),
        "ingest_time": (
            base.assign(ingested_at=ts + pd.Timedelta("3D")),
            base.assign(ingested_at=ts),
        ),
    }
    for name, (a, b) in frames.items():
        for store, frame in ((late, a), (normal, b)):
            store.overwrite("p", name, frame, machine_ids=MACHINE, window=_window(DAY1))
    assert _changed_tables(late, normal, "p") == (["rows", "value"], 4)


def test_commit_floor_appends_one_own_row_per_named_table(tmp_path: Path):
    """The §5 floor's set-up: each named table opened with one of its own rows, nothing else."""
    import pandas as pd
    from deltalake import write_deltalake

    from bench.incremental import DAY1, MACHINE, _one_row_appends, _window
    from meshinsights.store import DeltaStore

    store = DeltaStore(str(tmp_path / "s"))
    ts = pd.date_range(DAY1, periods=4, freq="1h")
    for name in ("a", "b", "untouched"):
        frame = pd.DataFrame({"machine_id": MACHINE, "ts": ts, "value": [1.0, 2.0, 3.0, 4.0]})
        store.overwrite("p", name, frame, machine_ids=MACHINE, window=_window(DAY1))
    floor = _one_row_appends(store, "p", ["a", "b"])
    assert [t.table_uri.rstrip("/").rsplit("/", 1)[-1] for t, _ in floor] == ["a", "b"]
    assert all(
        row.num_rows == 1 and row.column("machine_id")[0].as_py() == MACHINE for _, row in floor
    )
    before = [t.version() for t, _ in floor]
    for table, row in floor:
        write_deltalake(table, row, mode="append")
    assert [t.version() for t, _ in floor] == [v + 1 for v in before]
    assert len(DeltaStore(str(tmp_path / "s")).read("p", "a", MACHINE, _window(DAY1))) == 5
    assert len(DeltaStore(str(tmp_path / "s")).read("p", "untouched", MACHINE, _window(DAY1))) == 4
