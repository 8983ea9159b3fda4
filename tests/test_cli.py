"""The command line: run, step, tables, validate-configs, demo seed, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from meshinsights.cli import app
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS, REPO

runner = CliRunner()


def test_demo_seed_prints_machines_and_range(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'src.db'}"
    result = runner.invoke(app, ["demo", "seed", "--machines", "2", "--days", "1", "--url", url])
    assert result.exit_code == 0, result.output
    assert "hvac-001, hvac-002" in result.output
    assert "2024-01-01T00:00:00+00:00 → 2024-01-02T00:00:00+00:00" in result.output


def test_run_then_tables_then_step(demo_env):
    store = demo_env["MESHINSIGHTS_STORE"]
    result = runner.invoke(app, ["--store", store, "run", "hvac-001", "--start", "2024-01-01",
                                 "--end", "2024-01-02", "--json"])
    assert result.exit_code == 0, result.output
    summaries = json.loads(result.output)
    assert [s["step"] for s in summaries][:3] == ["ingest", "average_temperature", "summary"]
    assert summaries[1]["rows_out"] == 24

    result = runner.invoke(app, ["--store", store, "tables"])
    assert result.exit_code == 0
    assert "temperature_hourly" in result.output and "minimal" in result.output

    before = DeltaStore(store).version("minimal", "temperature_hourly")
    result = runner.invoke(app, ["--store", store, "step", "hvac-001", "average_temperature",
                                 "--start", "2024-01-01", "--end", "2024-01-02"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows_out"] == 24
    assert DeltaStore(store).version("minimal", "temperature_hourly") == before + 1


def test_run_batches_days_per_step_unless_told_not_to(demo_env):
    store = demo_env["MESHINSIGHTS_STORE"]
    args = ["--store", store, "run", "hvac-001", "--start", "2024-01-01", "--end", "2024-01-04"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    batched = json.loads(result.output)
    assert [s["step"] for s in batched] == ["ingest"] * 3 + ["average_temperature", "summary",
                                                            "genai"]
    assert [w["start"][:10] for w in batched[3]["windows"]] == ["2024-01-01", "2024-01-02",
                                                                "2024-01-03"]
    assert batched[3]["rows_out"] == 72  # three days of hourly means, one commit
    result = runner.invoke(app, [*args, "--batch-days", "0", "--json"])
    assert result.exit_code == 0, result.output
    alone = json.loads(result.output)
    assert [s["step"] for s in alone] == ["ingest", "average_temperature", "summary",
                                          "genai"] * 3
    assert not any("windows" in s for s in alone)
    assert [s["rows_out"] for s in alone if s["step"] == "average_temperature"] == [24] * 3


def test_validate_configs_lists_every_problem(tmp_path: Path):
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    (configs / "machines" / "a.yaml").write_text("machine_id: a\npipeline: nope\n")
    (configs / "machines" / "b.yaml").write_text("machine_id: b\npipeline: minimal\nfoo: 1\n")
    result = runner.invoke(app, ["--configs", str(configs), "validate-configs"])
    assert result.exit_code == 1
    assert "a.yaml: field pipeline" in result.output
    assert "b.yaml: field foo" in result.output
    assert "2 problem(s)" in result.output
    ok = runner.invoke(app, ["--configs", str(CONFIGS), "validate-configs"])
    assert ok.exit_code == 0 and "0 problem(s)" in ok.output


def test_errors_are_one_line_without_traceback(tmp_path: Path):
    env = {**os.environ, "MESHINSIGHTS_STORE": str(tmp_path / "s")}
    proc = subprocess.run(
        [sys.executable, "-m", "meshinsights.cli.__main__", "run", "hvac-01", "--start",
         "2024-01-01", "--end", "2024-01-02"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "no machine 'hvac-01'" in proc.stderr and "Did you mean" in proc.stderr

    proc = subprocess.run(
        [sys.executable, "-m", "meshinsights.cli.__main__", "run", "hvac-001", "--start",
         "2024-01-02", "--end", "2024-01-01"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "is not after start" in proc.stderr

    # Dates at datetime's edges (an OverflowError deep in the schedule before).
    for start, end in (("0001-01-01", "0001-01-02"), ("2024-01-01", "9999-12-31")):
        proc = subprocess.run(
            [sys.executable, "-m", "meshinsights.cli.__main__", "run", "hvac-001", "--start",
             start, "--end", end], cwd=REPO, env=env, capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "Error" not in proc.stderr
        assert "the range MeshInsights windows cover" in proc.stderr


def test_configs_option_is_honoured_for_relative_file_paths(tmp_path: Path, monkeypatch) -> None:
    """--configs wins over MESHINSIGHTS_CONFIGS, and a relative file path starts there, whatever
    the working directory."""
    configs = tmp_path / "mine"
    shutil.copytree(REPO / "examples" / "byod" / "skab", configs)
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(CONFIGS))
    monkeypatch.chdir(tmp_path)
    store = str(tmp_path / "artifacts")
    result = runner.invoke(app, ["--configs", str(configs), "--store", store, "run",
                                 "skab-valve1-1", "--start", "2020-03-09T10:00",
                                 "--end", "2020-03-09T11:00", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["rows_in"] == 1200 * 8


def test_validate_configs_reads_file_sources_and_names_what_is_wrong(tmp_path: Path) -> None:
    root = tmp_path / "configs"
    shutil.copytree(REPO / "examples" / "byod" / "skab", root)
    (root / "data" / "long.csv").write_text("ts,field,reading\n2024-01-01,t,1.0\n")
    (root / "machines" / "long.yaml").write_text(
        "machine_id: long\npipeline: byod\nstart_date: 2024-01-01\nsource: {type: file, "
        "path: data/long.csv, layout: long, ts_column: ts}\n")
    (root / "data" / "ms.csv").write_text("stamp,v\n1430258421000,1\n1430258422000,2\n")
    (root / "machines" / "ms.yaml").write_text(
        "machine_id: ms\npipeline: byod\nstart_date: 2024-01-01\nsource: {type: file, "
        "path: data/ms.csv, ts_column: stamp, ts_format: '%Y-%m-%d'}\n")
    (root / "machines" / "auto.yaml").write_text(
        "machine_id: auto\npipeline: byod\nstart_date: 2024-01-01\nsource: {type: file, "
        "path: data/valve1/1.csv, separator: ';', ts_column: datetime}\n")
    result = runner.invoke(app, ["--configs", str(root), "validate-configs"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "machine long:" in text and "no metric column 'metric' or value column 'value'" in text
    assert "set metric_column / value_column" in text
    assert "machine ms:" in text and "looks like epoch milliseconds: set ts_unit: ms" in text
    assert "machine auto: wide file without metrics: would ingest" in text
    assert "'anomaly'" in text  # numeric labels would be ingested: the note says so
    assert "2 problem(s)" in text


def test_validate_configs_lists_installed_plugins_with_versions(
    tmp_path: Path, monkeypatch
) -> None:
    """Built-ins and a third-party distribution's entry points, each with its version."""
    from meshinsights import __version__

    dist = tmp_path / "site" / "acme_jsonl-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-jsonl\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[meshinsights.connectors]\njsonl = acme_jsonl.connector:JSONLinesConnector\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    result = runner.invoke(app, ["--configs", str(CONFIGS), "validate-configs", "--no-sources"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    sql = "connector sql: meshinsights.connectors.sql:SQLConnector"
    assert f"{sql} (meshinsights {__version__})" in text
    assert f"steps builtin: meshinsights.steps.library (meshinsights {__version__})" in text
    assert "connector jsonl: acme_jsonl.connector:JSONLinesConnector (acme-jsonl 1.2.3)" in text
