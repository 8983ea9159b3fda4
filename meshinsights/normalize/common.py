"""Shared pieces of normalization: the result and its accounting, quarantine rows, time parsing."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from meshinsights.errors import ConfigError, MeshInsightsError
from meshinsights.model import Window
from meshinsights.normalize.timestamps import TimeFormat, parse_times

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
    #: How the source was read, for the run to say (e.g. ``{"ts_unit": "ms (detected)"}``).
    notes: dict[str, Any] = field(default_factory=dict)

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


def to_utc(values: pd.Series, tz: str = "UTC", fmt: str | None = None) -> pd.Series:
    """Timestamps (naive ones in ``tz``) as UTC, NaT where unparsable (see ``timestamps``)."""
    return parse_times(values, TimeFormat(timezone=tz, format=fmt)).ts


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
        self.notes: dict[str, Any] = {}

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

    def common(self, times: TimeFormat) -> None:
        """Machine, timestamp and window checks shared by telemetry and events."""
        df = self.df
        if "machine_id" not in df.columns:
            df["machine_id"] = self.machine_id
        self.reject(
            df["machine_id"].astype(str) != self.machine_id,
            "machine_id",
            f"row belongs to another machine than {self.machine_id}",
        )
        parsed = parse_times(self.df["ts"], times)
        self.df["ts"] = parsed.ts
        if parsed.note:
            self.notes["ts_unit"] = parsed.note
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
