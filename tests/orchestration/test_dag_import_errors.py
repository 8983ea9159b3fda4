"""Real Airflow DagBag: each kind of bad machine file is an import error naming that file, and
every other machine's DAG still loads (one file never takes the fleet down)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import CONFIGS
from tests.orchestration.test_dags import dagbag

pytestmark = pytest.mark.airflow

BAD = {
    "latin-1": (lambda p: p.write_bytes("machine_id: caf\xe9\npipeline: x\n".encode("latin-1")),
                "not UTF-8"),
    "misspelt-override": (
        lambda p: p.write_text("machine_id: bad-1\npipeline: minimal\n"
                               "overrides: {average_temperature: {metrc: temperature}}\n"),
        "metrc"),
    "invalid-schedule": (
        lambda p: p.write_text("machine_id: bad-1\npipeline: minimal\nschedule: '@dailyy'\n"),
        "@dailyy"),
    "unknown-timezone": (
        lambda p: p.write_text("machine_id: bad-1\npipeline: minimal\nsource: {type: file, "
                               "path: x.csv, timezone: Mars/Olympus}\n"),
        "Mars/Olympus"),
    "folder": (lambda p: p.mkdir(), "a folder, not a config file"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_machine_file_is_an_import_error_naming_it_and_the_rest_load(
    kind, demo_env, airflow_db, tmp_path: Path, monkeypatch
) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    make, expected = BAD[kind]
    make(configs / "machines" / "bad-1.yaml")
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(configs))
    bag = dagbag()
    errors = "\n".join(bag.import_errors.values())
    assert len(bag.import_errors) == 1, bag.import_errors
    assert "bad-1.yaml" in errors and expected in errors, errors
    good = {p.stem for p in (CONFIGS / "machines").glob("hvac-*.yaml")}
    assert {d.split("__")[1] for d in bag.dag_ids if "__" in d} == good
