"""What the store records and reports: commit metadata, one write's result, one table's listing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshinsights.model import Window

__all__ = ["TableInfo", "WriteResult", "commit_metadata", "decode_commit", "write_metadata"]


def commit_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Delta commit metadata is string to string: anything else is stored as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in metadata.items()}


def write_metadata(
    version: str, ranges: list[Window], machines: list[str], rows: int, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """What an overwrite records in its commit: the window(s), machines and row count."""
    return {
        "meshinsights.code_version": version,
        "meshinsights.window": Window(ranges[0].start, ranges[-1].end, ranges[0].run).as_dict(),
        **({"meshinsights.windows": [r.as_dict() for r in ranges]} if len(ranges) > 1 else {}),
        "meshinsights.machines": machines if len(machines) <= 20 else f"{len(machines)} machines",
        "meshinsights.rows_written": rows,
        **extra,
    }


def decode_commit(commit: Mapping[str, Any]) -> dict[str, Any]:
    """One ``DeltaTable.history()`` entry with its ``meshinsights.*`` JSON values decoded."""
    row = dict(commit)
    for key, value in list(row.items()):
        if key.startswith("meshinsights.") and isinstance(value, str):
            with contextlib.suppress(ValueError):
                row[key] = json.loads(value)
    return row


@dataclass(frozen=True)
class WriteResult:
    """What one overwrite did: small enough for XCom."""

    table: str
    version: int
    rows: int
    machines: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "version": self.version,
            "rows": self.rows,
            "machines": self.machines,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class TableInfo:
    """One artifact table as listed by :meth:`DeltaStore.tables`."""

    namespace: str
    name: str
    uri: str
    version: int
    rows: int
    files: int
    columns: list[str] = field(default_factory=list)
