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
        for op in ("overwrite", "overwrite_cold", "read_day", "read_day_cold", "read_week")
        for n in (10, 30)
    }
    assert all(len(v) == 3 and all(x > 0 for x in v) for v in times.values())
    small, big = (sorted(times[f"read_day_{n}"])[1] for n in (10, 30))
    assert abs(ratio["value"] - big / small) <= 0.02 * ratio["value"]  # samples are rounded
