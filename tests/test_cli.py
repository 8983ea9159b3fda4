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
