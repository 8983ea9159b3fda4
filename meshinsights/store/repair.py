"""Bring a damaged table back to a readable state: a corrupt commit, or lost data files.

Two faults leave a table that no command can read or rewrite:

- **a commit file that does not parse** (truncated by a full disk, edited by hand): the table
  is restored to its last readable version by moving that commit, every later one and any
  checkpoint built on them into ``_delta_log/_damaged/<time>/`` (kept, not deleted). What
  those commits wrote is reported (step, machines, windows, when their JSON still parses) so
  exactly those windows can be rerun; their data files become unreferenced (vacuum removes
  them).
- **a data file the log references but the storage lost**: delta-rs' FSCK (``repair``) commits
  a remove for each; the partitions (machine, month) that lost rows are reported.

The log part works on local stores (the damaged files are moved with ``os.replace``); on an
object store the missing-file part still works, and a corrupt commit is reported with the key
to move aside by hand.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from deltalake import CommitProperties

from meshinsights import __version__
from meshinsights.errors import BrokenTableError, StoreError
from meshinsights.store.records import commit_metadata

__all__ = ["TableRepair", "repair_table", "damaged_commits"]

_COMMIT = 20  # digits of a commit file's version: 00000000000000000003.json


@dataclass(frozen=True)
class TableRepair:
    """What repair found and did on one table (small enough for XCom and a JSON receipt)."""

    namespace: str
    table: str
    restored_version: int | None  # the last readable version, when commits were moved aside
    moved_aside: list[str] = field(default_factory=list)  # log files moved into _damaged/
    lost_writes: list[dict[str, Any]] = field(default_factory=list)  # what they had written
    missing_files: list[str] = field(default_factory=list)  # data files FSCK removed
    version: int | None = None  # the table's version after repair

    @property
    def changed(self) -> bool:
        return bool(self.moved_aside or self.missing_files)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _local_log(uri: str) -> Path | None:
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return Path(unquote(parts.path) if parts.scheme else uri) / "_delta_log"
    return None


def _parses(path: Path) -> bool:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return bool(lines) and all(isinstance(json.loads(line), dict) for line in lines if line)
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def damaged_commits(log: Path) -> tuple[int | None, list[Path]]:
    """The first commit file that does not parse (None if all do), and the commits from it on."""
    commits = sorted(p for p in log.glob("*.json") if p.stem.isdigit() and len(p.stem) == _COMMIT)
    for i, path in enumerate(commits):
        if not _parses(path):
            return int(path.stem), commits[i:]
    return None, []


def _what_it_wrote(path: Path) -> dict[str, Any]:
    """Step, machines and windows a commit recorded (from its commitInfo, if it still parses)."""
    found: dict[str, Any] = {"version": int(path.stem)}
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            info = json.loads(line).get("commitInfo") if line else None
            if info:
                for key in ("step", "machines", "window", "windows", "run_id"):
                    value = info.get(f"meshinsights.{key}")
                    if value is not None:
                        found[key] = json.loads(value) if value[:1] in "[{" else value
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        found["unreadable"] = True
    return found


def _move_aside(log: Path, bad: int, commits: list[Path]) -> list[str]:
    """Move the damaged commits and checkpoints built on them into ``_damaged/<time>/``."""
    aside = log / "_damaged" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    aside.mkdir(parents=True)
    moved = list(commits)
    moved += [
        p
        for p in log.glob("*.checkpoint*.parquet")
        if p.name.split(".")[0].isdigit() and int(p.name.split(".")[0]) >= bad
    ]
    last = log / "_last_checkpoint"
    if last.exists():
        try:
            points_at = int(json.loads(last.read_text())["version"])
        except (ValueError, KeyError, TypeError):
            points_at = bad  # unreadable itself: the log is listed without it
        if points_at >= bad:
            moved.append(last)
    for path in moved:
        os.replace(path, aside / path.name)
    return [str(p.relative_to(log.parent)) for p in moved]


def repair_table(store: Any, namespace: str, table: str, *, dry_run: bool = False) -> TableRepair:
    """Restore the table's last readable version and drop references to lost files."""
    uri = store.uri(namespace, table)
    log = _local_log(uri)
    restored: int | None = None
    moved: list[str] = []
    lost: list[dict[str, Any]] = []
    if log is not None and log.is_dir():
        bad, commits = damaged_commits(log)
        if bad is not None:
            if bad == 0:
                raise StoreError(
                    f"table {uri}: its first commit is damaged, so no version is readable; "
                    "delete the table folder and rerun the steps that write it"
                )
            restored, lost = bad - 1, [_what_it_wrote(p) for p in commits]
            if not dry_run:
                moved = _move_aside(log, bad, commits)
            else:
                moved = [str(p.relative_to(log.parent)) for p in commits]
    try:
        dt = store._open(namespace, table)
    except BrokenTableError as exc:
        if dry_run and restored is not None:
            return TableRepair(namespace, table, restored, moved, lost, [], None)
        raise StoreError(
            f"{exc}; repair found no damaged commit file it could move aside"
            + ("" if log is not None else " (object store: move the bad commit by hand)")
        ) from None
    if dt is None:
        raise StoreError(f"table {namespace}/{table} does not exist in {store.root}")
    meta = commit_metadata(
        {"meshinsights.code_version": __version__, "meshinsights.step": "repair"}
    )
    try:
        metrics = dt.repair(
            dry_run=dry_run, commit_properties=CommitProperties(custom_metadata=meta)
        )
    except Exception as exc:  # deltalake raises bare DeltaError/OSError variants
        raise StoreError(f"repairing {uri} failed: {exc}") from exc
    missing = [str(f) for f in metrics.get("files_removed", [])]
    return TableRepair(
        namespace, table, restored, moved, lost, missing, None if dry_run else int(dt.version())
    )
