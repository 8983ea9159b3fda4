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
    # A documented option that did nothing (issue 19): refused with what to use instead.
    ("source_window", "source_window: 7D\nsteps:\n  - id: summary\n    uses: window_summary\n",
     "source_window was removed (it never changed what ingest read); delete it"),
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


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "configs"
    shutil.copytree(GOLDEN / "valid", root)
    return root


def test_defaults_of_another_source_type_lend_only_shared_options(tmp_path: Path):
    root = _folder(tmp_path)
    (root / "machines" / "_defaults.yaml").write_text(
        (root / "machines" / "_defaults.yaml").read_text() + "  timezone: Europe/Rome\n"
    )
    (root / "machines" / "f1.yaml").write_text(
        "machine_id: f1\npipeline: minimal\nsource: {type: file, path: data/f1.csv}\n"
    )
    loaded = load_configs(root)
    assert loaded.errors == {}
    source = loaded.machines["f1"].source
    # conn_id/query belong to the SQL default and stay out; the zone applies to any source.
    assert source.type == "file" and source.timezone == "Europe/Rome"
    assert not hasattr(source, "conn_id")
    # A relative path starts at the config folder the loader was given (--configs).
    assert source.path == str((root / "data" / "f1.csv").resolve())


def test_duplicate_machine_ids_and_dag_id_clashes_refuse_every_file_involved(tmp_path: Path):
    root = _folder(tmp_path)
    (root / "machines" / "m1-copy.yaml").write_text("machine_id: m1\npipeline: minimal\n")
    (root / "machines" / "u1.yaml").write_text("machine_id: unit.1\npipeline: minimal\n")
    (root / "machines" / "u2.yaml").write_text("machine_id: unit_1\npipeline: minimal\n")
    loaded = load_configs(root)
    assert sorted(loaded.machines) == ["m2"]
    errors = {Path(k).name: v for k, v in loaded.errors.items()}
    assert "'m1' is also defined in" in errors["m1.yaml"] and "m1-copy.yaml" in errors["m1.yaml"]
    assert "'m1' is also defined in" in errors["m1-copy.yaml"]
    assert "give the same DAG id 'minimal__unit_1'" in errors["u1.yaml"]
    assert "give the same DAG id 'minimal__unit_1'" in errors["u2.yaml"]
    with pytest.raises(ConfigError, match="invalid config"):
        loaded.machine("m1")


OUTPUT_ERRORS = [
    ("same-output", "  - id: a\n    uses: window_summary\n  - id: b\n    uses: window_summary\n",
     "its output table 'summary' is also written by step 'a'"),
    ("ingest-table", "  - id: a\n    uses: window_summary\n    output: telemetry\n",
     "'telemetry' is written by ingest"),
    ("runs-table", "  - id: a\n    uses: window_summary\n    output: runs\n",
     "'runs' is written by ingest"),
    ("param-out-of-range", "  - id: a\n    uses: detect_issues\n    params: {missing_warn: 2}\n",
     "parameter missing_warn = 2: Input should be less than or equal to 1"),
]


@pytest.mark.parametrize("steps,expected", [c[1:] for c in OUTPUT_ERRORS],
                         ids=[c[0] for c in OUTPUT_ERRORS])
def test_pipeline_outputs_and_param_values_are_checked(tmp_path: Path, steps: str, expected: str):
    (tmp_path / "pipelines").mkdir()
    path = tmp_path / "pipelines" / "p.yaml"
    path.write_text("name: p\nsteps:\n" + steps)
    assert expected in load_configs(tmp_path).errors[str(path)]


BAD_FILES = [
    ("latin-1", lambda p: p.write_bytes("machine_id: caf\xe9\n".encode("latin-1")), "not UTF-8"),
    ("broken-symlink", lambda p: p.symlink_to(p.parent / "nowhere.yaml"), "cannot be read"),
    ("folder", lambda p: p.mkdir(), "a folder, not a config file"),
    # 12 levels of 12 aliases each: 12**12 leaves if expanded (the "billion laughs").
    ("alias-bomb", lambda p: p.write_text(
        "a: &a [x, x, x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{k}: &{k} [" + ", ".join([f"*{j}"] * 12) + "]\n"
                  for j, k in zip("abcdefghijk", "bcdefghijkl", strict=True))
        + "machine_id: *l\n"), "more than 100 aliases"),
    ("huge", lambda p: p.write_text("# " + "x" * 1_100_000 + "\n"), "too large for a config"),
]


@pytest.mark.parametrize("make,expected", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_one_unreadable_file_is_one_error_and_the_fleet_still_loads(tmp_path: Path, make,
                                                                   expected: str):
    root = _folder(tmp_path)
    bad = root / "machines" / "bad.yaml"
    make(bad)
    loaded = load_configs(root)
    assert sorted(loaded.machines) == ["m1", "m2"]
    assert list(loaded.errors) == [str(bad)]
    assert expected in loaded.errors[str(bad)]
