"""File connector: CSV or Parquet files (one file or a folder) as a source, one window at a time.

Options cover what real exports need: separator, decimal comma, header or given column names,
values that mean missing (e.g. ``-200``), timestamp format and time zone. The files are read
once per connector (the pool shares it across windows) and re-read when they change.

A row whose timestamp cannot be parsed still has to land somewhere exactly once: it belongs to
the window of the nearest valid timestamp before it in the file (or after it, at the top), so
a backfill quarantines it once, in the window where it sat.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from meshinsights.connectors.base import DBConnector
from meshinsights.errors import ConnectorError

__all__ = ["FileConnector"]

logger = logging.getLogger(__name__)


class FileConnector(DBConnector):
    """CSV/Parquet rows of one window. Config: ``path`` plus the reading options below."""

    conn_type = "file"

    def __init__(
        self,
        *,
        path: str,
        format: Literal["csv", "parquet"] = "csv",
        separator: str = ",",
        decimal: str = ".",
        header: bool = True,
        names: list[str] | None = None,
        na_values: list[Any] | None = None,
        encoding: str = "utf-8",
        ts_column: str = "timestamp",
        ts_format: str | None = None,
        timezone: str = "UTC",
        **options: Any,
    ) -> None:
        super().__init__(
            path=path,
            format=format,
            separator=separator,
            decimal=decimal,
            header=header,
            names=names,
            na_values=na_values or [],
            encoding=encoding,
            ts_column=ts_column,
            ts_format=ts_format,
            timezone=timezone,
            **options,
        )
        self.path = Path(path)
        self._cache: tuple[tuple[Any, ...], pd.DataFrame, pd.Series] | None = None

    def describe(self) -> str:
        return f"file {self.path}"

    def files(self) -> list[Path]:
        """The files this source reads, in name order; a clear error if there are none."""
        fmt = self.config["format"]
        if self.path.is_dir():
            found = sorted(
                p
                for p in self.path.iterdir()
                if p.is_file() and p.suffix.lower() in (f".{fmt}", f".{fmt}.gz")
            )
        elif self.path.is_file():
            found = [self.path]
        else:
            raise ConnectorError(
                f"{self.describe()}: no such file or folder; check 'path' "
                "(relative paths start at the config folder)"
            )
        if not found:
            raise ConnectorError(f"{self.describe()}: the folder holds no .{fmt} files")
        return found

    def connect(self) -> Any:
        return self.files()

    def close(self) -> None:
        self._cache = None
        super().close()

    def _read_one(self, path: Path) -> pd.DataFrame:
        c = self.config
        try:
            if c["format"] == "parquet":
                frame = pd.read_parquet(path)
                for col in frame.columns:
                    if c["na_values"] and col != c["ts_column"]:
                        frame[col] = frame[col].mask(frame[col].isin(c["na_values"]))
                return frame
            return pd.read_csv(
                path,
                sep=c["separator"],
                decimal=c["decimal"],
                header=0 if c["header"] else None,
                names=c["names"],
                na_values=c["na_values"],
                encoding=c["encoding"],
                dtype={c["ts_column"]: "string"},
                skipinitialspace=True,
            )
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ConnectorError(
                f"{self.describe()}: cannot read {path.name} ({exc}); check "
                "format, separator, encoding and header/names"
            ) from exc

    def read(self) -> tuple[pd.DataFrame, pd.Series]:
        """All rows (file order) and each row's anchor time in UTC (see the module doc)."""
        files = self.files()
        key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        frames = [self._read_one(p) for p in files]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        ts_col = self.config["ts_column"]
        if ts_col not in frame.columns:
            raise ConnectorError(
                f"{self.describe()}: no timestamp column {ts_col!r}; columns "
                f"are {list(frame.columns)[:12]} — set ts_column (or names)"
            )
        from meshinsights.normalize import to_utc

        ts = to_utc(frame[ts_col], self.config["timezone"], self.config["ts_format"])
        anchor = ts.ffill().bfill()
        self._cache = (key, frame, anchor)
        logger.info("%s: read %d rows from %d file(s)", self.describe(), len(frame), len(files))
        return frame, anchor

    def query(self, query: str = "", params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Rows whose (anchor) time lies in ``[params['start'], params['end'])``, as read."""
        if query:
            raise ConnectorError(
                f"{self.describe()}: file sources take no query; filter with the run window instead"
            )
        frame, anchor = self.read()
        p = params or {}
        mask = pd.Series(True, index=frame.index)
        if p.get("start") is not None:
            mask &= anchor >= _utc(p["start"])
        if p.get("end") is not None:
            mask &= anchor < _utc(p["end"])
        return frame[mask].reset_index(drop=True)


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
