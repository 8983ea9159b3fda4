"""``meshinsights export``: one machine's rows of a table for a window, to CSV or Parquet."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from meshinsights.cli import app
from meshinsights.errors import ConfigError
from meshinsights.model import TELEMETRY_SCHEMA, Window
from meshinsights.store import DeltaStore
from tests.dashboard.seed import run_demo

runner = CliRunner()
DAYS = Window.parse("2024-01-01", "2024-01-03")


@pytest.fixture(scope="module")
def seeded(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The minimal pipeline for hvac-001 and hvac-002 over 2024-01-01..02."""
    root = tmp_path_factory.mktemp("export") / "artifacts"
    run_demo(root, demo_db, ["hvac-001", "hvac-002"], "2024-01-01", "2024-01-03")
    return root


def export(root: Path, *args: str):
    return runner.invoke(app, ["--store", str(root), "export", *args])


def expected_rows(root: Path, table: str, machine: str, window: Window) -> pd.DataFrame:
    return DeltaStore(str(root)).read("minimal", table, machine, window)


def test_csv_export_equals_the_store(seeded: Path, tmp_path: Path):
    out = tmp_path / "t.csv"
    result = export(
        seeded,
        "telemetry",
        "--machine",
        "hvac-002",
        "--start",
        "2024-01-01T06:00",
        "--end",
        "2024-01-01T18:00",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    window = Window.parse("2024-01-01T06:00", "2024-01-01T18:00")
    expected = expected_rows(seeded, "telemetry", "hvac-002", window)
    assert len(expected) == 12 * 60 * 4  # 12 hours × 1/min × 4 metrics
    got = pd.read_csv(out)
    for col in ("ts", "ingested_at"):
        got[col] = pd.to_datetime(got[col], utc=True).astype(expected[col].dtype)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert f"wrote {len(expected):,} rows of minimal/telemetry for hvac-002" in " ".join(
        result.output.split()
    )


def test_parquet_export_keeps_types(seeded: Path, tmp_path: Path):
    out = tmp_path / "nested" / "hourly.parquet"
    result = export(
        seeded,
        "temperature_hourly",
        "-m",
        "hvac-001",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-03",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    got = pq.read_table(out)
    expected = expected_rows(seeded, "temperature_hourly", "hvac-001", DAYS)
    assert "month" not in got.column_names and len(expected) == 48
    pd.testing.assert_frame_equal(got.to_pandas(), expected)
    assert str(got.schema.field("ts").type) == "timestamp[us, tz=UTC]"


def test_last_days_counts_back_from_the_latest_row(seeded: Path, tmp_path: Path):
    out = tmp_path / "last.parquet"
    result = export(
        seeded,
        "telemetry",
        "-m",
        "hvac-001",
        "--last-days",
        "1",
        "--format",
        "parquet",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    got = pq.read_table(out).to_pandas()
    day2 = Window.parse("2024-01-02", "2024-01-03")
    pd.testing.assert_frame_equal(got, expected_rows(seeded, "telemetry", "hvac-001", day2))


def test_ambiguous_table_needs_pipeline(seeded: Path, tmp_path: Path):
    root = tmp_path / "artifacts"
    shutil.copytree(seeded, root)
    store = DeltaStore(str(root))
    day1 = Window.parse("2024-01-01", "2024-01-02")
    store.overwrite(
        "other",
        "telemetry",
        store.read("minimal", "telemetry", "hvac-001", day1).head(5),
        machine_ids="hvac-001",
        window=day1,
        schema=TELEMETRY_SCHEMA,
    )
    args = ["telemetry", "-m", "hvac-001", "--start", "2024-01-01", "--end", "2024-01-02"]
    result = export(root, *args, "--out", str(tmp_path / "a.csv"))
    assert isinstance(result.exception, ConfigError)
    assert "several pipelines (minimal, other) with this machine's rows" in str(result.exception)
    assert "--pipeline" in str(result.exception)
    result = export(root, *args, "--pipeline", "other", "--out", str(tmp_path / "b.csv"))
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "b.csv")) == 5
    # hvac-002 has rows in one of the two pipelines only: that one is meant.
    result = export(
        root,
        "telemetry",
        "-m",
        "hvac-002",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-02",
        "--out",
        str(tmp_path / "c.csv"),
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "c.csv")) == len(
        store.read("minimal", "telemetry", "hvac-002", day1)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["telemetri", "-m", "hvac-001", "--last-days", "1", "--out", "x.csv"],
            "did you mean telemetry",
        ),
        (
            ["telemetry", "-m", "hvac-009", "--last-days", "1", "--out", "x.csv"],
            "machine 'hvac-009' has no rows in minimal/telemetry; machines there: "
            "hvac-001, hvac-002",
        ),
        (
            [
                "telemetry",
                "-m",
                "hvac-001",
                "--last-days",
                "1",
                "--start",
                "2024-01-01",
                "--out",
                "x.csv",
            ],
            "either --last-days or --start/--end",
        ),
        (
            ["telemetry", "-m", "hvac-001", "--start", "2024-01-01", "--out", "x.csv"],
            "pass --start and --end",
        ),
        (
            ["telemetry", "-m", "hvac-001", "--last-days", "1", "--out", "x.txt"],
            "cannot tell the output format",
        ),
        (["../etc", "-m", "hvac-001", "--last-days", "1", "--out", "x.csv"], "invalid table name"),
        (
            ["telemetry", "-m", "hvac-001;drop", "--last-days", "1", "--out", "x.csv"],
            "invalid machine id",
        ),
    ],
    ids=[
        "unknown-table",
        "unknown-machine",
        "both-ranges",
        "half-range",
        "bad-format",
        "path-in-table",
        "bad-machine-id",
    ],
)
def test_bad_arguments_get_clear_errors(seeded: Path, tmp_path: Path, args, message):
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    result = export(seeded, *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError), result.output
    assert message in str(result.exception)
    assert not list(tmp_path.iterdir())  # nothing written


def test_empty_window_writes_an_empty_file_with_the_schema(seeded: Path, tmp_path: Path):
    out = tmp_path / "empty.parquet"
    result = export(
        seeded,
        "telemetry",
        "-m",
        "hvac-001",
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-02",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 0 and table.column_names == [f.name for f in TELEMETRY_SCHEMA]
    assert "no rows for hvac-001" in " ".join(result.output.split())
