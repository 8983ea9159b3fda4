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

__all__ = [
    "machine_id_in",
    "group_in",
    "UNKNOWN_GROUP",
    "scan_machine_files",
    "scan_machine_groups",
    "fleet_key",
    "shard_of",
    "dag_shard_key",
]

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


_GROUP_LINE = re.compile(
    r"""^group:[ \t]+(?P<q>["']?)(?P<id>[A-Za-z0-9][A-Za-z0-9_\-]{0,127})(?P=q)"""
    r"""[ \t]*(?:\#.*)?$""",
    re.MULTILINE,
)
# Anything that could set a top-level ``group`` other than one plain line: a key written
# another way, a merge key, a flow-style document.
_MAYBE_GROUP = re.compile(r"""^(?:["']?group["']?[ \t]*:|<<[ \t]*:|[ \t]*\{)""", re.MULTILINE)

#: A file whose group its text does not tell plainly: whoever needs groups parses it.
UNKNOWN_GROUP = "\x00unknown"


def group_in(text: str) -> str | None:
    """The group a machine file declares on one plain top-level line; None when it declares
    none; :data:`UNKNOWN_GROUP` when its text could set one in a way this cannot read."""
    found = _GROUP_LINE.findall(text) if "group" in text else []
    if len(found) == 1 and len(_MAYBE_GROUP.findall(text)) == 1:
        return str(found[0][1])
    if not found and not _MAYBE_GROUP.search(text):
        return None
    return UNKNOWN_GROUP


#: How long a process reuses its last scan of a machines folder that has not changed (mtime).
#: A task process scans once to parse its DAG file and again to load its machine's config a
#: moment later; at 10,000 files one scan is ≈ 0.3 s of the task's start (BENCHMARKS.md §8).
SCAN_REUSE_SECONDS = 10.0
_Scan = dict[Path, tuple[str | None, str | None]]
_last_scans: dict[tuple[str, int], tuple[float, _Scan]] = {}


def scan_machine_files(root: Path, *, max_bytes: int = 1_000_000) -> dict[Path, str | None]:
    """Every machine file under ``root/machines`` (sorted) with the id its text declares.

    A file that cannot be read, or is larger than ``max_bytes``, maps to None: whoever parses
    it reports the problem. A scan of the same unchanged folder in the last
    :data:`SCAN_REUSE_SECONDS` is reused.
    """
    return {path: ids[0] for path, ids in _scan(root, max_bytes).items()}


def scan_machine_groups(root: Path, *, max_bytes: int = 1_000_000) -> dict[Path, str | None]:
    """Every machine file with the group its text declares (:func:`group_in`); a file that
    cannot be read maps to :data:`UNKNOWN_GROUP`. The same scan as :func:`scan_machine_files`."""
    return {path: ids[1] for path, ids in _scan(root, max_bytes).items()}


def _scan(root: Path, max_bytes: int) -> _Scan:
    folder = root / "machines"
    try:
        key = (str(folder.resolve()), folder.stat().st_mtime_ns)
    except OSError:
        return {}
    cached = _last_scans.get(key)
    if cached is not None and time.monotonic() - cached[0] < SCAN_REUSE_SECONDS:
        return cached[1]
    # os.scandir and plain strings: pathlib's glob and Path comparisons were most of a scan.
    names = sorted(
        e.name  # what glob("*.yaml") lists, less _defaults.yaml and the like
        for e in os.scandir(folder)
        if e.name.endswith(".yaml") and e.name[:1] not in ("_", ".")
    )
    out: _Scan = {}
    base = str(folder)
    for name in names:
        try:
            with open(os.path.join(base, name), "rb") as fh:
                data = fh.read(max_bytes + 1)
            if len(data) > max_bytes:
                out[folder / name] = (None, UNKNOWN_GROUP)
                continue
            text = data.decode("utf-8")
            out[folder / name] = (machine_id_in(text), group_in(text))
        except (OSError, UnicodeDecodeError):
            out[folder / name] = (None, UNKNOWN_GROUP)
    _last_scans.clear()  # one folder's scan is kept: a process reads one config folder
    _last_scans[key] = (time.monotonic(), out)
    return out


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


def dag_shard_key(machine_id: str, group: str | None) -> str:
    """What places a machine in a DAG-file shard: its group (a group's DAG is built in one
    file, from all its members) or, ungrouped, its id."""
    return machine_id if group is None else "group:" + group
