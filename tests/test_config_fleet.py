"""Loading part of a big fleet: machine ids read from file text, stable shards, one machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meshinsights.config import load_configs, load_machine_configs, machine_of_dag
from meshinsights.config.fleet import machine_id_in, shard_of
from meshinsights.errors import ConfigError
from tests.conftest import CONFIGS, REPO


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("machine_id: hvac-001\npipeline: minimal\n", "hvac-001"),
        ('pipeline: minimal\nmachine_id: "a.b_c"  # quoted\n', "a.b_c"),
        ("machine_id: 'x1'\n", "x1"),
        ("machine_id: &m hvac-001\n", None),  # an anchor: parse it to know
        ("machine_id: !!str 12\n", None),  # a tag
        ("machine_id: a\nmachine_id: b\n", None),  # twice: YAML keeps the last
        ("  machine_id: nested\n", None),  # not top level
        ("pipeline: minimal\n", None),  # from _defaults.yaml, if anywhere
    ],
    ids=["plain", "quoted-comment", "single-quoted", "anchor", "tag", "twice", "nested", "none"],
)
def test_machine_id_is_read_from_text_only_when_unambiguous(text, expected):
    assert machine_id_in(text) == expected


def test_shards_are_stable_across_processes_and_cover_the_fleet():
    ids = [f"hvac-{i:04d}" for i in range(400)]
    here = [shard_of(m, 8) for m in ids]
    code = ("import sys; from meshinsights.config.fleet import shard_of; "
            "print(','.join(str(shard_of(f'hvac-{i:04d}', 8)) for i in range(400)))")
    other = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, text=True,
                           capture_output=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == ",".join(map(str, here))
    counts = [here.count(k) for k in range(8)]
    assert min(counts) >= 30, counts  # 50 expected each: no shard is starved or swamped
    # Ids that give the same DAG id ('.' -> '_') share a shard, where the clash is refused.
    assert shard_of("a.b", 8) == shard_of("a_b", 8)


def _fleet(tmp_path: Path, n: int) -> Path:
    root = tmp_path / "configs"
    shutil.copytree(CONFIGS / "pipelines", root / "pipelines")
    (root / "machines").mkdir(parents=True)
    shutil.copy(CONFIGS / "machines" / "_defaults.yaml", root / "machines")
    for i in range(n):
        (root / "machines" / f"m-{i:03d}.yaml").write_text(
            f"machine_id: m-{i:03d}\npipeline: minimal\n")
    return root


def test_a_shard_parses_only_its_machines_and_keeps_clashes_together(tmp_path: Path):
    root = _fleet(tmp_path, 40)
    # A file whose id is only known after parsing (an anchor) is parsed by every shard.
    (root / "machines" / "anchored.yaml").write_text("machine_id: &i anchored\npipeline: minimal\n")
    # Two files whose DAG ids clash: both refused, in whichever shard they fall.
    (root / "machines" / "c1.yaml").write_text("machine_id: dup.x\npipeline: minimal\n")
    (root / "machines" / "c2.yaml").write_text("machine_id: dup_x\npipeline: minimal\n")
    full = load_configs(root)
    parts = [load_configs(root, only=lambda m, k=k: shard_of(m, 4) == k) for k in range(4)]

    union = [mid for part in parts for mid in part.machines]
    assert sorted(union) == sorted(full.machines)  # each valid machine in exactly one shard
    assert "anchored" in full.machines and "dup.x" not in full.machines
    clash = [part for part in parts if str(root / "machines" / "c1.yaml") in part.errors]
    assert len(clash) == 1 and str(root / "machines" / "c2.yaml") in clash[0].errors
    assert clash[0].errors == {k: v for k, v in full.errors.items() if k in clash[0].errors}


def test_one_machine_loads_without_parsing_the_others(tmp_path: Path):
    root = _fleet(tmp_path, 5)
    # Broken files of other machines: a full load reports them, a one-machine load never reads
    # them as YAML (so it has no error to report).
    (root / "machines" / "bad.yaml").write_text("machine_id: bad-1\npipeline: [unclosed\n")
    (root / "machines" / "bad-2.yaml").write_text("machine_id: bad-2\nschedul: typo\n")
    assert len(load_configs(root).errors) == 2

    one = load_machine_configs(root, "m-003")
    assert list(one.machines) == ["m-003"] and one.errors == {}
    assert one.machine("m-003") == load_configs(root).machine("m-003")
    assert machine_of_dag(root, "minimal__m-003").machine_id == "m-003"
    assert machine_of_dag(root, "minimal__m-999") is None
    with pytest.raises(ConfigError, match="invalid config: .*bad-2.yaml: .*field schedul"):
        load_machine_configs(root, "bad-2").machine("bad-2")
    with pytest.raises(ConfigError, match="no machine 'm-9'"):
        load_machine_configs(root, "m-9").machine("m-9")
