"""Sharded DAG files: the fleet's DAGs spread over N small files that Airflow parses in parallel.

Each ``dags/meshinsights_shard_<k>.py`` is a two-line stub calling :func:`register_shard`,
which builds the machines whose stable hash falls in shard ``k`` of
``MESHINSIGHTS_DAG_SHARDS`` (default :data:`DEFAULT_SHARDS`). A task process (Airflow's
parsing context names its DAG) builds that one DAG and parses only its machine's file.
``meshinsights dag-shards N`` rewrites the stubs; a folder missing one is reported as an import
error by ``meshinsights_config_errors.py``, so no machine's DAG disappears silently.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from meshinsights.errors import ConfigError

__all__ = [
    "DEFAULT_SHARDS",
    "SHARD_ENV",
    "shard_count",
    "shard_file_name",
    "register_shard",
    "missing_shard_files",
    "write_shard_files",
    "fleet_problems",
]

logger = logging.getLogger(__name__)

#: Shards when MESHINSIGHTS_DAG_SHARDS is unset: at 10,000 hvac_power machines a file parsed in
#: 3.3-3.9 s on a loaded 2-core box, an eighth of Airflow's 30 s import timeout (at 32: up to
#: 12 s). Each file also costs ~1.5 s of imports whatever its size (BENCHMARKS.md §8).
DEFAULT_SHARDS = 64
SHARD_ENV = "MESHINSIGHTS_DAG_SHARDS"
_NAME = re.compile(r"^meshinsights_shard_(\d+)\.py$")

# Airflow's safe mode parses only files mentioning both "airflow" and "dag": the docstring does.
_STUB = '''"""Shard {index} of the MeshInsights DAGs for Airflow; see `meshinsights dag-shards`."""

from meshinsights.airflow.shards import register_shard

register_shard(globals(), __file__)
'''


def shard_count() -> int:
    """``MESHINSIGHTS_DAG_SHARDS`` as a positive integer (default :data:`DEFAULT_SHARDS`)."""
    raw = os.environ.get(SHARD_ENV, "").strip()
    if not raw:
        return DEFAULT_SHARDS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"{SHARD_ENV}={raw!r} must be a positive whole number of DAG files, e.g. "
            f"{DEFAULT_SHARDS}; then run `meshinsights dag-shards N` so the files match"
        )
    return int(raw)


def shard_file_name(index: int) -> str:
    return f"meshinsights_shard_{index:02d}.py"


def _index_of(file: str) -> int:
    found = _NAME.match(Path(file).name)
    if found is None:
        raise ConfigError(
            f"{file}: a MeshInsights shard file must be named meshinsights_shard_<k>.py; "
            "rewrite the stubs with `meshinsights dag-shards N`"
        )
    return int(found.group(1))


def register_shard(namespace: dict[str, Any], file: str) -> None:
    """Build this file's shard of the fleet into ``namespace`` (a DAG file's ``globals()``).

    Config errors are only logged here: ``meshinsights_config_errors.py`` reports them all as
    one import error, so a bad file never hides this shard's valid machines.
    """
    from airflow.sdk import get_parsing_context

    from meshinsights.airflow.dag_factory import build_dags

    index, count = _index_of(file), shard_count()
    if index >= count:  # a stub left over from a larger shard count: nothing hashes here
        logger.warning(
            "%s is shard %d but %s=%d: it builds no DAG; remove it with "
            "`meshinsights dag-shards %d`",
            Path(file).name,
            index,
            SHARD_ENV,
            count,
            count,
        )
        return
    dags, errors = build_dags(shard=(index, count), dag_id=get_parsing_context().dag_id)
    namespace.update(dags)
    for error in errors.values():
        logging.getLogger("meshinsights.dags").error("config error: %s", error)


def missing_shard_files(dags_dir: Path, count: int | None = None) -> list[str]:
    """Names of the shard files ``dags_dir`` lacks for ``count`` shards."""
    n = shard_count() if count is None else count
    return [shard_file_name(k) for k in range(n) if not (dags_dir / shard_file_name(k)).exists()]


def write_shard_files(dags_dir: Path, count: int) -> tuple[list[str], list[str]]:
    """Make ``dags_dir`` hold exactly ``count`` shard stubs; returns (written, removed) names."""
    if count < 1:
        raise ConfigError(f"shard count {count} must be at least 1")
    wanted = {shard_file_name(k): k for k in range(count)}
    written, removed = [], []
    for name, index in wanted.items():
        path = dags_dir / name
        text = _STUB.format(index=index)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    for path in sorted(dags_dir.glob("meshinsights_shard_*.py")):
        if _NAME.match(path.name) and path.name not in wanted:
            path.unlink()
            removed.append(path.name)
    return written, removed


def fleet_problems(configs_dir: Path, dags_dir: Path) -> list[str]:
    """Everything that would keep a machine's DAG from loading, one line each.

    Invalid config files (as :func:`~meshinsights.config.load_configs` reports them), shard
    files missing from ``dags_dir``, and a machine file whose ``machine_id:`` line reads as
    another id than the file defines (the shards would look for it in the wrong place).
    """
    from meshinsights.config import load_configs
    from meshinsights.config.fleet import scan_machine_files

    loaded = load_configs(configs_dir)
    problems = list(loaded.errors.values())
    count = shard_count()
    missing = missing_shard_files(dags_dir, count)
    if missing:
        problems.append(
            f"{dags_dir}: missing DAG shard file(s) {', '.join(missing)} for {SHARD_ENV}={count}; "
            f"their machines have no DAG — run `meshinsights dag-shards {count}`"
        )
    declared = scan_machine_files(loaded.root)
    for machine_id, path in sorted(loaded.paths.items()):
        seen = declared.get(path)
        if seen is not None and seen != machine_id:
            problems.append(
                f"{path}: field machine_id: the line 'machine_id: {seen}' is not the id YAML "
                f"reads ({machine_id!r}); write it once, plainly, as 'machine_id: {machine_id}'"
            )
    return problems
