"""Fuzzing shapes, not values: random machine and pipeline files (encodings, YAML features,
types, names) beside two good machines. However wrong a file is, loading the folder never
raises, the good machines always load, and the bad file is one error naming it; the CLI's
`validate-configs` over the same folder exits 0 or 1 with no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshinsights.config import load_configs
from tests.conftest import CONFIGS, REPO
from tests.reliability.conftest import SOAK, record

EXAMPLES = 400 if SOAK else 60
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

MACHINE_KEYS = ["machine_id", "pipeline", "schedule", "start_date", "catchup", "source",
                "overrides", "tags", "enabled", "timezone", "type", "conn_id", "query", "path",
                "late_lookback", "metrics", "ts_column", "ts_format", "machine_column",
                "device_template", "units", "max_quarantine_share", "columns", "params"]
PIPELINE_KEYS = ["name", "steps", "id", "uses", "params", "inputs", "output", "when",
                 "lookback", "evolve", "sink", "validation", "events", "retention", "min",
                 "max", "unit", "description"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["minimal", "hvac_power", "@daily", "@dailyy",
                                           "0 6 * * *", "99 99 * * *", "999999D", "1D", "-1h",
                                           "Europe/Rome", "Mars/Olympus", "sql", "file", "adx",
                                           "2024-01-01", "0001-01-01", "9999-12-31", "../x",
                                           "unit.1", "", " ", "\x00", "é", "${HOME}"]),
    st.dates(), st.datetimes(),
)


def values(keys: list[str]) -> st.SearchStrategy:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=8)), inner,
                            max_size=5),
        ),
        max_leaves=12,
    )


def documents(keys: list[str]) -> st.SearchStrategy[bytes]:
    """A file's bytes: a YAML mapping of known and random keys, or something that is not one."""
    mapping = st.dictionaries(st.sampled_from(keys), values(keys), max_size=8).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True).encode())
    return st.one_of(
        mapping,
        mapping.map(lambda b: b.decode().encode("utf-16")),  # another encoding
        mapping.map(lambda b: b"\xef\xbb\xbf" + b),  # a BOM
        values(keys).map(lambda v: yaml.safe_dump(v).encode()),  # a list, a scalar
        st.binary(max_size=200),  # not text at all
        st.sampled_from([
            b"", b"---\n---\n", b"a: &x 1\nb: *x\nmachine_id: *x\n", b"!!python/name:os.system\n",
            b"machine_id: [unclosed\n", b"machine_id: m\nmachine_id: n\n", b"\t- tab\n",
            b"machine_id: m\npipeline: minimal\n<<: {schedule: '@daily'}\n",
            b"? complex\n: key\n", b"machine_id: !!binary aGVsbG8=\n",
        ]),
    )


def file_names() -> st.SearchStrategy[str]:
    return st.sampled_from(["bad.yaml", "bad.yml", "Bad Name.yaml", "bad.YAML", "ünï.yaml",
                            "-x.yaml", ".hidden.yaml", "b@d.yaml"])


def _folder(tmp: Path) -> Path:
    root = tmp / "configs"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(CONFIGS / "pipelines", root / "pipelines")
    (root / "machines").mkdir()
    shutil.copy(CONFIGS / "machines" / "_defaults.yaml", root / "machines" / "_defaults.yaml")
    for mid in ("good-1", "good-2"):
        (root / "machines" / f"{mid}.yaml").write_text(f"machine_id: {mid}\npipeline: minimal\n")
    return root


_seen = {"machine": 0, "pipeline": 0, "errors": 0}


@FUZZ
@given(body=documents(MACHINE_KEYS), name=file_names())
def test_a_random_machine_file_never_takes_the_fleet_down(tmp_path_factory, body, name) -> None:
    root = _folder(tmp_path_factory.mktemp("m"))
    (root / "machines" / name).write_bytes(body)
    loaded = load_configs(root)  # never raises
    assert {"good-1", "good-2"} <= set(loaded.machines)
    assert set(loaded.errors) <= {str(root / "machines" / name)}
    for message in loaded.errors.values():
        assert name in message and "Traceback" not in message and len(message) < 4000
    _seen["machine"] += 1
    _seen["errors"] += len(loaded.errors)


@FUZZ
@given(body=documents(PIPELINE_KEYS), name=file_names())
def test_a_random_pipeline_file_never_takes_the_others_down(tmp_path_factory, body, name) -> None:
    root = _folder(tmp_path_factory.mktemp("p"))
    (root / "pipelines" / name).write_bytes(body)
    loaded = load_configs(root)
    assert {"good-1", "good-2"} <= set(loaded.machines)
    assert "minimal" in loaded.pipelines
    for path, message in loaded.errors.items():
        assert Path(path).name == name and name in message and "Traceback" not in message
    _seen["pipeline"] += 1
    _seen["errors"] += len(loaded.errors)
    record("config_fuzz", examples=dict(_seen), soak=SOAK)


def test_validate_configs_over_hostile_files_exits_1_without_a_traceback(tmp_path) -> None:
    root = _folder(tmp_path)
    hostile = {"latin.yaml": "machine_id: caf\xe9\n".encode("latin-1"),
               "utf16.yaml": "machine_id: m\npipeline: minimal\n".encode("utf-16"),
               "list.yaml": b"- 1\n- 2\n", "bin.yaml": bytes(range(256)),
               "bomb.yaml": b"a: &a [x,x,x,x,x,x,x,x,x]\n" + b"".join(
                   f"{k}: &{k} [".encode() + b", ".join([f"*{j}".encode()] * 9) + b"]\n"
                   for j, k in zip("abcdefgh", "bcdefghi", strict=True)) + b"machine_id: *i\n"}
    for name, body in hostile.items():
        (root / "machines" / name).write_bytes(body)
    env = {**os.environ, "MESHINSIGHTS_CONFIGS": str(root)}
    proc = subprocess.run([sys.executable, "-m", "meshinsights.cli.__main__", "validate-configs",
                           "--no-sources"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"{len(hostile)} problem(s)" in proc.stdout
    for name in hostile:
        assert name in proc.stdout + proc.stderr
