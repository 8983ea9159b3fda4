"""Shared pieces of normalization: the result and its accounting, quarantine rows, time parsing."""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from meshinsights.errors import ConfigError, MeshInsightsError
from meshinsights.model import Window

__all__ = ["NormalizeResult", "quarantine_frame", "empty_quarantine", "to_utc"]

logger = logging.getLogger(__name__)

TELEMETRY_COLUMNS = ["machine_id", "ts", "metric", "value", "unit", "ingested_at"]
EVENTS_COLUMNS = ["machine_id", "ts", "kind", "severity", "code", "message", "ingested_at"]
QUARANTINE_COLUMNS = ["machine_id", "ts", "source_table", "rule", "reason", "original"]


@dataclass
class NormalizeResult:
    """Clean rows, quarantined rows and the counts that must add up."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    duplicates_removed: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    missing_required: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rows_in": self.rows_in,
            "rows_clean": len(self.clean),
            "rows_quarantined": len(self.quarantine),
            "duplicates_removed": self.duplicates_removed,
            **self.stats,
        }

    @property
    def by_rule(self) -> dict[str, int]:
        """Quarantined rows per rule."""
        if self.quarantine.empty:
            return {}
        return {str(k): int(v) for k, v in self.quarantine["rule"].value_counts().items()}

    def check(self) -> None:
        total = len(self.clean) + len(self.quarantine) + self.duplicates_removed
        if total != self.rows_in:
            raise MeshInsightsError(
                f"row accounting broken: {self.rows_in} in, {len(self.clean)} clean + "
                f"{len(self.quarantine)} quarantined + {self.duplicates_removed} duplicates "
                f"= {total}; this is a bug in normalization, please report it"
            )


def empty_quarantine() -> pd.DataFrame:
    """A quarantine frame with no rows but the right dtypes (concatenates cleanly)."""
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in QUARANTINE_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[us, UTC]")
    return frame


def _original_json(rows: pd.DataFrame) -> pd.Series:
    if rows.empty:
        return pd.Series([], dtype=object)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    return pd.Series(
        [json.dumps(r, default=str, sort_keys=True) for r in records], index=rows.index
    )


def quarantine_frame(
    rows: pd.DataFrame,
    *,
    rule: str,
    reason: str | pd.Series,
    machine_id: str,
    window: Window,
    source_table: str = "telemetry",
    original: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Quarantine rows: their own ts where it parses and lies in the window, else its start.

    ``original`` (indexed like ``rows``) holds the values as the source delivered them.
    """
    if rows.empty:
        return empty_quarantine()
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    ts = to_utc(rows["ts"], "UTC") if "ts" in rows else pd.Series(pd.NaT, index=rows.index)
    inside = (ts >= start) & (ts < end)
    out = pd.DataFrame(index=rows.index)
    out["machine_id"] = machine_id
    out["ts"] = ts.where(inside, start).astype("datetime64[us, UTC]")
    out["source_table"] = source_table
    out["rule"] = rule
    out["reason"] = reason
    source = original.loc[rows.index] if original is not None else rows
    out["original"] = _original_json(source.drop(columns=["_row"], errors="ignore"))
    return out.reset_index(drop=True)


#: Times outside this range are refused (NaT): no sensor reports there, and near the ends of
#: the datetime range pandas cannot localize, convert or format them.
EARLIEST, LATEST = pd.Timestamp("1900-01-01", tz="UTC"), pd.Timestamp("2200-01-01", tz="UTC")


def to_utc(values: pd.Series, tz: str, fmt: str | None = None) -> pd.Series:
    """Parse timestamps (naive ones in ``tz``) to UTC; unparsable values become NaT.

    Numbers are epoch seconds. Text with an explicit offset (``Z``, ``+02:00``) keeps it,
    even in a column that otherwise holds naive local times. Times outside
    [``EARLIEST``, ``LATEST``) become NaT.
    """
    # Screen before parsing: pandas silently wraps some overflowing times (year 9999 with an
    # offset came back as 1972).
    values = values.where(_plausible(values))
    try:
        ts = _to_utc(values, tz, fmt)
    except (NotImplementedError, OverflowError, ValueError):
        # e.g. year 9999 local time: localizing overflows the stdlib datetime range. One value
        # at a time, so only the offending values become NaT.
        ts = pd.Series(
            [_one_to_utc(values.iloc[[i]], tz, fmt) for i in range(len(values))],
            index=values.index,
            dtype="datetime64[us, UTC]",
        )
    return ts.where((ts >= EARLIEST) & (ts < LATEST))


_YEAR = re.compile(r"^\s*([+-]?\d{1,6})-")


def _plausible(values: pd.Series) -> pd.Series:
    """False for values whose year is visibly outside [EARLIEST, LATEST) (they become NaT)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return pd.Series(True, index=values.index)
    if pd.api.types.is_numeric_dtype(values):  # epoch seconds
        lo, hi = EARLIEST.timestamp(), LATEST.timestamp()
        return values.isna() | ((values >= lo) & (values < hi))
    return values.map(_plausible_one).astype(bool)


def _plausible_one(value: Any) -> bool:
    if isinstance(value, datetime):
        return EARLIEST.year <= value.year < LATEST.year
    if isinstance(value, str):
        year = _YEAR.match(value)
        return year is None or EARLIEST.year <= int(year.group(1)) < LATEST.year
    return True


def _one_to_utc(value: pd.Series, tz: str, fmt: str | None) -> Any:
    try:
        return _to_utc(value, tz, fmt).iloc[0]
    except (NotImplementedError, OverflowError, ValueError):
        return pd.NaT


def _to_utc(values: pd.Series, tz: str, fmt: str | None) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        ts = pd.to_datetime(values, unit="s", errors="coerce", utc=True)
    elif pd.api.types.is_datetime64_any_dtype(values):
        ts = values
    else:
        ts = _parse_text(values, fmt, tz)
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    ts = ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        failed = ts.isna() & values.notna()
        if failed.any():
            text = values[failed].astype(str).str.strip()
            offset = text[text.str.contains(_OFFSET, regex=True)]
            if len(offset):
                ts.loc[offset.index] = pd.to_datetime(
                    offset, errors="coerce", utc=True, format="ISO8601"
                )
    return ts


_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _parse_text(values: pd.Series, fmt: str | None, tz: str) -> pd.Series:
    with warnings.catch_warnings():  # "could not infer format": per-element is intended
        warnings.simplefilter("ignore", UserWarning)
        try:
            ts = pd.to_datetime(values, errors="coerce", format=fmt, utc=False)
        except (ValueError, TypeError):  # mixed offsets or aware/naive mix
            ts = None
        if ts is None or not pd.api.types.is_datetime64_any_dtype(ts):
            ts = _parse_mixed(values, fmt, tz)
    return ts


def _parse_mixed(values: pd.Series, fmt: str | None, tz: str) -> pd.Series:
    """Aware and naive values in one column: naive ones are local times in ``tz``, not UTC.

    ``utc=True`` alone would read every naive value as UTC and shift it silently.
    """
    ts = pd.to_datetime(values, errors="coerce", format=fmt, utc=True)
    naive = values.map(_is_naive).astype(bool)
    if naive.any():
        local = pd.to_datetime(values[naive], errors="coerce", format=fmt)
        if pd.api.types.is_datetime64_any_dtype(local) and getattr(local.dt, "tz", None) is None:
            local = local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
            ts.loc[naive] = local.dt.tz_convert("UTC")
        else:
            ts.loc[naive] = pd.NaT
    return ts


def _is_naive(value: Any) -> bool:
    if isinstance(value, datetime):  # pd.Timestamp too
        return value.tzinfo is None
    if isinstance(value, np.datetime64):
        return True
    return isinstance(value, str) and re.search(_OFFSET, value.strip()) is None


class RowSorter:
    """Moves rejected rows from the working frame into quarantine, keeping the accounting."""

    def __init__(
        self,
        df: pd.DataFrame,
        original: pd.DataFrame,
        *,
        machine_id: str,
        window: Window,
        source_table: str,
    ) -> None:
        self.df, self.original = df, original
        self.parts: list[pd.DataFrame] = []
        self.machine_id, self.window, self.source_table = machine_id, window, source_table

    def reject(self, mask: pd.Series, rule: str, reason: str | pd.Series) -> None:
        mask = mask.reindex(self.df.index, fill_value=False).fillna(False).astype(bool)
        if not mask.any():
            return
        rows = self.df[mask]
        self.parts.append(
            quarantine_frame(
                rows,
                rule=rule,
                reason=reason if isinstance(reason, str) else reason[mask],
                machine_id=self.machine_id,
                window=self.window,
                source_table=self.source_table,
                original=self.original.loc[rows["_row"]].set_axis(rows.index),
            )
        )
        self.df = self.df[~mask]

    def common(self, timezone: str, ts_format: str | None) -> None:
        """Machine, timestamp and window checks shared by telemetry and events."""
        df = self.df
        if "machine_id" not in df.columns:
            df["machine_id"] = self.machine_id
        self.reject(
            df["machine_id"].astype(str) != self.machine_id,
            "machine_id",
            f"row belongs to another machine than {self.machine_id}",
        )
        self.df["ts"] = to_utc(self.df["ts"], timezone, ts_format)
        self.reject(
            self.df["ts"].isna(),
            "ts_parse",
            "timestamp missing, unparsable, outside 1900-2199 or a non-existent/ambiguous "
            "local time",
        )
        w = self.window
        inside = (self.df["ts"] >= pd.Timestamp(w.start)) & (self.df["ts"] < pd.Timestamp(w.end))
        self.reject(~inside, "out_of_window", f"timestamp outside the run window {w}")
        if "ingested_at" in self.df.columns:
            self.df["ingested_at"] = to_utc(self.df["ingested_at"], "UTC")
        else:
            self.df["ingested_at"] = pd.Series(
                pd.NaT, index=self.df.index, dtype="datetime64[us, UTC]"
            )

    def dedupe(self, subset: list[str]) -> int:
        """Drop exact duplicates (earliest ingested copy wins); returns how many."""
        before = len(self.df)
        self.df = self.df.sort_values(["ingested_at", "_row"], kind="stable", na_position="last")
        self.df = self.df.drop_duplicates(subset=subset, keep="first")
        return before - len(self.df)

    def quarantined(self) -> pd.DataFrame:
        """Everything rejected so far, as one quarantine frame."""
        if not self.parts:
            return empty_quarantine()
        return pd.concat(self.parts, ignore_index=True)


def prepare_rows(
    raw: pd.DataFrame, required: tuple[str, ...], what: str, machine_id: str
) -> pd.DataFrame:
    """A working copy with ``_row`` (source order); ConfigError if a required column is absent."""
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise ConfigError(
            f"source {what} rows for {machine_id} lack column(s) {missing}; the query must "
            f"return {', '.join(required)} — alias the columns in the query"
        )
    df = raw.reset_index(drop=True).copy()
    df["_row"] = np.arange(len(df))
    return df


def clean_text(value: Any) -> str | None:
    """Stripped text, or None for missing/blank values."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def rule_value(rule: Any, key: str) -> Any:
    """``key`` of a rule given as a pydantic model or a mapping (None if absent)."""
    return rule.get(key) if isinstance(rule, Mapping) else getattr(rule, key, None)
