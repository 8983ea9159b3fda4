"""What the store reports: one write's result and one table's listing (small, XCom-safe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TableInfo", "WriteResult"]


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
