"""Finding machine files cheaply in a big fleet: a file's machine id without parsing it, shards.

Parsing and validating a machine file costs far more than reading it, so a process that needs
only some machines (one Airflow task, one DAG-file shard) reads every file's text, picks the
``machine_id:`` line out with a regular expression and parses only the files it needs. A file
whose id cannot be read that way (anchors, tags, an id from ``_defaults.yaml``) is parsed by
everyone, so no machine is ever skipped on a guess.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

__all__ = ["machine_id_in", "scan_machine_files", "fleet_key", "shard_of"]

# A top-level ``machine_id:`` with a plain or quoted id of the characters machine ids allow
# (model.check_machine_id); such a scalar reads back from YAML as exactly that text.
_ID_LINE = re.compile(
    r"""^machine_id:[ \t]+(?P<q>["']?)(?P<id>[A-Za-z0-9][A-Za-z0-9_.\-]{0,127})(?P=q)"""
    r"""[ \t]*(?:\#.*)?$""",
    re.MULTILINE,
)


def machine_id_in(text: str) -> str | None:
    """The machine id a machine file's text declares on one plain top-level line, else None."""
    if "machine_id" not in text:
        return None
    found = _ID_LINE.findall(text)
    return found[0][1] if len(found) == 1 else None


#: How long a process reuses its last scan of a machines folder that has not changed (mtime).
#: A task process scans once to parse its DAG file and again to load its machine's config a
#: moment later; at 10,000 files one scan is ≈ 0.3 s of the task's start (BENCHMARKS.md §8).
SCAN_REUSE_SECONDS = 10.0
_last_scans: dict[tuple[str, int], tuple[float, dict[Path, str | None]]] = {}


def scan_machine_files(root: Path, *, max_bytes: int = 1_000_000) -> dict[Path, str | None]:
    """Every machine file under ``root/machines`` (sorted) with the id its text declares.

    A file that cannot be read, or is larger than ``max_bytes``, maps to None: whoever parses
    it reports the problem. A scan of the same unchanged folder in the last
    :data:`SCAN_REUSE_SECONDS` is reused.
    """
    folder = root / "machines"
    try:
        key = (str(folder.resolve()), folder.stat().st_mtime_ns)
    except OSError:
        return {}
    cached = _last_scans.get(key)
    if cached is not None and time.monotonic() - cached[0] < SCAN_REUSE_SECONDS:
        return dict(cached[1])
    # os.scandir and plain strings: pathlib's glob and Path comparisons were most of a scan.
    names = sorted(
        e.name  # what glob("*.yaml") lists, less _defaults.yaml and the like
        for e in os.scandir(folder)
        if e.name.endswith(".yaml") and e.name[:1] not in ("_", ".")
    )
    out: dict[Path, str | None] = {}
    base = str(folder)
    for name in names:
        try:
            with open(os.path.join(base, name), "rb") as fh:
                data = fh.read(max_bytes + 1)
            small = len(data) <= max_bytes
            out[folder / name] = machine_id_in(data.decode("utf-8")) if small else None
        except (OSError, UnicodeDecodeError):
            out[folder / name] = None
    _last_scans.clear()  # one folder's scan is kept: a process reads one config folder
    _last_scans[key] = (time.monotonic(), out)
    return dict(out)


def fleet_key(machine_id: str) -> str:
    """The id as it appears in DAG ids ('.' becomes '_'): ids that could clash share a key."""
    return machine_id.replace(".", "_")


def shard_of(machine_id: str, count: int) -> int:
    """The shard (0 .. count-1) of a machine, the same in every process and Python version.

    Keyed by :func:`fleet_key` so that machines whose ids or DAG ids clash land in one shard,
    where the clash is detected. (Python's ``hash()`` is salted per process: never use it here.)
    """
    digest = hashlib.blake2b(fleet_key(machine_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
