"""A connector for a folder a gateway drops JSON-lines files into (one reading per line).

Selected from a machine file with ``source: {type: jsonl, folder: ..., ...}``; its options are
the pydantic model below, validated when configs load like the built-in sources' options.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import Field

from meshinsights.config import SourceOptions
from meshinsights.connectors.base import DBConnector
from meshinsights.errors import ConnectorError

__all__ = ["JSONLinesConnector", "JSONLinesSource"]


class JSONLinesSource(SourceOptions):
    """A drop folder of ``*.jsonl`` files, one reading per line (``ts``, ``metric``, ``value``)."""

    #: Made absolute against the config folder when configs load.
    path_fields: ClassVar[tuple[str, ...]] = ("folder",)

    type: Literal["jsonl"]
    folder: str = Field(description="the drop folder; relative paths start at the config folder")
    pattern: str = Field("*.jsonl", description="file name pattern inside the folder")


class JSONLinesConnector(DBConnector):
    """Every line of every matching file, as one DataFrame per window (filtered on ``ts``)."""

    conn_type = "jsonl"
    options = JSONLinesSource

    @classmethod
    def config_from_source(cls, source: Any, *, machine_id: str, access: Any) -> dict[str, Any]:
        # ``folder`` is already absolute (a path field, resolved when configs load).
        folder = source.folder.replace("{machine_id}", machine_id)
        return {"folder": folder, "pattern": source.pattern, "ts_column": source.ts_column}

    def connect(self) -> Path:
        folder = Path(self.config["folder"])
        if not folder.is_dir():
            raise ConnectorError(f"drop folder {folder} does not exist; create it or fix 'folder'")
        return folder

    def query(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        params = dict(params or {})
        records = []
        for path in sorted(self.client.glob(self.config["pattern"])):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise ConnectorError(f"{path}:{number}: not a JSON object ({exc})") from exc
        frame = pd.DataFrame.from_records(records)
        ts_column = self.config["ts_column"]
        if frame.empty or "start" not in params:
            return frame
        # Filtered on the parsed time; rows whose time does not parse are kept for ingest to
        # count and quarantine (nothing is dropped here silently).
        ts = pd.to_datetime(frame[ts_column], utc=True, errors="coerce")
        start = pd.Timestamp(params["start"], tz="UTC")
        end = pd.Timestamp(params["end"], tz="UTC")
        return frame[ts.isna() | ((ts >= start) & (ts < end))].reset_index(drop=True)
