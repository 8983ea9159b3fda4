"""Config schema: golden valid/invalid files, defaults merging, one error per bad file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meshinsights.config import load_configs
from meshinsights.errors import ConfigError
from tests.conftest import CONFIGS, FIXTURES

GOLDEN = FIXTURES / "configs"
INVALID = sorted((GOLDEN / "invalid").glob("*.yaml"))


def test_valid_golden_configs_load_with_defaults_merged():
    loaded = load_configs(GOLDEN / "valid")
    assert loaded.errors == {}
    m1, m2 = loaded.machines["m1"], loaded.machines["m2"]
    assert (m1.schedule, m1.source.conn_id) == ("@daily", "meshinsights_demo")
    # The machine file wins over _defaults.yaml, field by field (deep merge).
    assert (m2.schedule, m2.source.conn_id) == ("@hourly", "other_source")
    assert "SELECT machine_id" in m2.source.query
    step = loaded.pipelines["minimal"].steps[0]
    assert m1.params_for(step) == {"metric": "temperature", "freq": "30min"}
    assert m1.dag_id == "minimal__m1"


def test_repo_configs_are_all_valid():
    loaded = load_configs(CONFIGS)
    assert loaded.errors == {}
    assert "hvac-001" in loaded.machines


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_each_invalid_file_gives_one_clear_error_and_the_rest_load(tmp_path: Path, path: Path):
    root = tmp_path / "configs"
    shutil.copytree(GOLDEN / "valid", root)
    shutil.copy(path, root / "machines" / path.name)
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    loaded = load_configs(root)
    assert list(loaded.errors) == [str(root / "machines" / path.name)]
    message = loaded.errors[str(root / "machines" / path.name)]
    assert message.startswith(str(root / "machines" / path.name))
    assert expected in message
    assert sorted(loaded.machines) == ["m1", "m2"]


PIPELINE_ERRORS = [
    ("unknown_step", "steps:\n  - id: avg\n    uses: average_temprature\n",
     "Did you mean 'average_temperature'"),
    ("unknown_param", "steps:\n  - id: average_temperature\n    params: {frq: 1h}\n",
     "has no parameter(s) ['frq']"),
    ("unproduced_input", "steps:\n  - id: average_temperature\n    inputs: {telemetry: clean}\n",
     "input table 'clean' is produced by no earlier step"),
    ("duplicate_ids", "steps:\n  - id: summary\n    uses: window_summary\n  - id: summary\n"
     "    uses: window_summary\n", "step ids must be unique"),
    ("bad_when", "steps:\n  - id: summary\n    uses: window_summary\n    when: {any: [{table: "
     "summary}]}\n", "a condition needs min_rows"),
    ("bad_lookback", "steps:\n  - id: summary\n    uses: window_summary\n    lookback: 3 months\n",
     "must look like 90D"),
]


@pytest.mark.parametrize("body,expected", [c[1:] for c in PIPELINE_ERRORS],
                         ids=[c[0] for c in PIPELINE_ERRORS])
def test_pipeline_errors_name_file_field_and_fix(tmp_path: Path, body: str, expected: str):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "machines").mkdir()
    path = tmp_path / "pipelines" / "p.yaml"
    path.write_text("name: p\n" + body)
    loaded = load_configs(tmp_path)
    assert expected in loaded.errors[str(path)]
    assert "p" not in loaded.pipelines


def test_pipeline_name_must_match_file(tmp_path: Path):
    (tmp_path / "pipelines").mkdir()
    path = tmp_path / "pipelines" / "p.yaml"
    path.write_text("name: q\nsteps: []\n")
    assert "must match the file name" in load_configs(tmp_path).errors[str(path)]


def test_unknown_machine_suggests_the_closest(tmp_path: Path):
    loaded = load_configs(GOLDEN / "valid")
    with pytest.raises(ConfigError, match="Did you mean 'm1'"):
        loaded.machine("m11")


def test_missing_config_dir_is_an_error(tmp_path: Path):
    loaded = load_configs(tmp_path / "nope")
    assert "config folder not found" in next(iter(loaded.errors.values()))
