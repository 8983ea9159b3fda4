"""File connector: CSV or Parquet files (one file or a folder) as a source, one window at a time.

Options cover what real exports need: separator, decimal comma, header or given column names,
values that mean missing (e.g. ``-200``), timestamp format and time zone. The files are read
once per connector (the pool shares it across windows) and re-read when they change.

A row whose timestamp cannot be parsed still has to land somewhere exactly once: it belongs to
the window of the nearest valid timestamp before it in the file (or after it, at the top), so
a backfill quarantines it once, in the window where it sat. A file in which *no* timestamp
parses fails at once, naming the column, an example value and the likely fix: its rows would
otherwise belong to no window and be lost without a word.

A file may hold several devices (``machine_column``): each machine's query returns only the
rows of its device values, and the file is read once per process for all of them.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from meshinsights.config.machines import FileSource, SourceOptions
from meshinsights.connectors.base import DBConnector
from meshinsights.errors import ConfigError, ConnectorError, DataQualityError

if TYPE_CHECKING:
    from meshinsights.connectors.sources import SourceAccess

__all__ = ["FileConnector"]

logger = logging.getLogger(__name__)

_FILE_OPTIONS = {"format", "separator", "decimal", "header", "names", "na_values", "encoding"}


#: Parsed files kept per process, keyed by read options and each file's (path, mtime, size):
#: a multi-device file is read once for all the machines it feeds in a process (a fleet run,
#: a grouped task), and again only when it changes. Bounded: the frames are whole files.
_KEPT_READS = 2
_READS: OrderedDict[tuple[Any, ...], tuple[pd.DataFrame, pd.Series, pd.Series | None]] = (
    OrderedDict()
)
#: Config keys that pick rows after the read (not how the file is read).
_NOT_READ_OPTIONS = frozenset({"device", "device_template", "machine_id", "late_lookback"})


class FileConnector(DBConnector):
    """CSV/Parquet rows of one window. Config: ``path`` plus the reading options below."""

    conn_type = "file"
    options = FileSource

    @classmethod
    def config_from_source(
        cls, source: SourceOptions, *, machine_id: str, access: SourceAccess
    ) -> dict[str, Any]:
        """The file (``{machine_id}`` filled in, relative to the config folder) and how to
        read it; machines reading one file share the connector (same options): one read."""
        from meshinsights.connectors.sources import shape_of, times_of

        assert isinstance(source, FileSource)
        path = Path(source.path.replace("{machine_id}", machine_id))
        if not path.is_absolute():
            from meshinsights.settings import get_settings

            path = (access.base_dir or get_settings().configs_dir) / path
        shape, times = shape_of(source), times_of(source)
        return {
            "path": str(path),
            **source.model_dump(include=_FILE_OPTIONS),
            "ts_column": shape.ts_column,
            "ts_columns": list(shape.ts_columns) or None,
            "ts_format": times.format,
            "ts_unit": times.unit,
            "ts_dayfirst": times.dayfirst,
            "timezone": times.timezone,
            "machine_column": source.machine_column,
            "run_column": source.run_column,
        }

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
        ts_columns: list[str] | None = None,
        ts_format: str | None = None,
        ts_unit: str | None = None,
        ts_dayfirst: bool | None = None,
        timezone: str = "UTC",
        machine_column: str | None = None,
        run_column: str | None = None,
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
            ts_columns=list(ts_columns) if ts_columns else None,
            ts_format=ts_format,
            ts_unit=ts_unit,
            ts_dayfirst=ts_dayfirst,
            timezone=timezone,
            machine_column=machine_column,
            run_column=run_column,
            **options,
        )
        self.path = Path(path)
        # (file key, rows, anchor times, device values or None)

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
        super().close()

    def sample(self, rows: int = 200) -> pd.DataFrame:
        """The first ``rows`` rows of the first file, read with the source's options."""
        return self._read_one(self.files()[0], nrows=rows)

    def _read_one(self, path: Path, nrows: int | None = None) -> pd.DataFrame:
        c = self.config
        try:
            if c["format"] == "parquet":
                if nrows is None:
                    frame = pd.read_parquet(path)
                else:
                    import pyarrow.parquet as pq

                    batch = next(pq.ParquetFile(path).iter_batches(batch_size=nrows), None)
                    frame = batch.to_pandas() if batch is not None else pd.read_parquet(path)
                for col in frame.columns:
                    if c["na_values"] and col != c["ts_column"]:
                        frame[col] = frame[col].mask(frame[col].isin(c["na_values"]))
                return frame
            # Times and device ids are read as text: each value is then parsed on its own merits
            # (a number column would turn device 007 into 7 and lose an epoch's digits).
            text_columns = [
                *(c["ts_columns"] or [c["ts_column"]]),
                c["machine_column"],
                c.get("run_column"),
            ]
            return pd.read_csv(
                path,
                sep=c["separator"],
                decimal=c["decimal"],
                header=0 if c["header"] else None,
                names=c["names"],
                na_values=c["na_values"],
                encoding=c["encoding"],
                dtype={col: "string" for col in text_columns if col},
                skipinitialspace=True,
                nrows=nrows,
            )
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ConnectorError(
                f"{self.describe()}: cannot read {path.name} ({exc}); check "
                "format, separator, encoding and header/names"
            ) from exc

    def read(self) -> tuple[pd.DataFrame, pd.Series]:
        """All rows (file order) and each row's anchor time in UTC (see the module doc)."""
        frame, anchor, _ = self._read()
        return frame, anchor

    def rows(self, devices: list[str] | None = None) -> tuple[pd.DataFrame, pd.Series]:
        """The rows of these device values (all rows without a device filter) and their anchors."""
        frame, anchor, device = self._read()
        if not devices:
            return frame, anchor
        if device is None:
            raise ConnectorError(
                f"{self.describe()}: a device filter needs machine_column (the device id column)"
            )
        mine = device.isin(devices)
        return frame[mine], anchor[mine]

    def _read(self) -> tuple[pd.DataFrame, pd.Series, pd.Series | None]:
        files = self.files()
        # The read options are part of the key: two machines reading one file alike share it.
        options = json.dumps(
            {k: v for k, v in self.config.items() if k not in _NOT_READ_OPTIONS},
            sort_keys=True,
            default=str,
        )
        key = (options, *((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))
        cached = _READS.get(key)
        if cached is not None:
            _READS.move_to_end(key)
            logger.info("%s: %d rows already read in this process", self.describe(), len(cached[0]))
            return cached
        frames = [self._read_one(p) for p in files]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        c = self.config
        from meshinsights.normalize.layout import combine_ts, device_text
        from meshinsights.normalize.timestamps import TimeFormat, explain_unparsed, parse_times

        if c["ts_columns"]:
            try:
                stamps = combine_ts(frame, c["ts_columns"])
            except ConfigError as exc:
                raise ConnectorError(f"{self.describe()}: {exc}") from None
        elif c["ts_column"] in frame.columns:
            stamps = frame[c["ts_column"]]
        else:
            raise ConnectorError(
                f"{self.describe()}: no timestamp column {c['ts_column']!r}; columns "
                f"are {list(frame.columns)[:12]} — set ts_column (or names, or ts_columns)"
            )
        times = TimeFormat(c["timezone"], c["ts_format"], c["ts_unit"], c["ts_dayfirst"])
        ts = parse_times(stamps, times).ts
        if len(frame) and ts.isna().all():
            present = stamps.dropna()
            example = present.iloc[0] if len(present) else None
            column = " + ".join(c["ts_columns"] or [c["ts_column"]])
            raise DataQualityError(
                f"{self.describe()}: none of its {len(frame):,} rows has a timestamp that "
                f"parses, so no row belongs to any window. "
                + explain_unparsed(example, times, column=column)
            )
        anchor = ts.ffill().bfill()
        device = None
        if c["machine_column"]:
            if c["machine_column"] not in frame.columns:
                raise ConnectorError(
                    f"{self.describe()}: no device column {c['machine_column']!r}; columns are "
                    f"{list(frame.columns)[:12]} — fix machine_column (or names)"
                )
            device = device_text(frame[c["machine_column"]])
        _READS[key] = (frame, anchor, device)
        while len(_READS) > _KEPT_READS:
            _READS.popitem(last=False)
        logger.info("%s: read %d rows from %d file(s)", self.describe(), len(frame), len(files))
        return frame, anchor, device

    def query(self, query: str = "", params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Rows whose (anchor) time lies in ``[params['start'], params['end'])``, as read; with
        ``params['devices']``, only the rows of those device values."""
        if query:
            raise ConnectorError(
                f"{self.describe()}: file sources take no query; filter with the run window instead"
            )
        p = params or {}
        frame, anchor = self.rows(p.get("devices"))
        mask = pd.Series(True, index=frame.index)
        if p.get("start") is not None:
            mask &= anchor >= _utc(p["start"])
        if p.get("end") is not None:
            mask &= anchor < _utc(p["end"])
        return frame[mask].reset_index(drop=True)


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
