"""Normalization and validation of source rows into the canonical telemetry schema.

Every input row ends in exactly one place: the clean frame, the quarantine frame (with the
rule, the reason and the original values), or the exact-duplicate count. The invariant
``rows_in == rows_clean + rows_quarantined + duplicates_removed`` is checked on every call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from meshinsights.errors import MeshInsightsError
from meshinsights.model import Window

__all__ = ["NormalizeResult", "normalize_telemetry", "apply_rules", "quarantine_frame"]

logger = logging.getLogger(__name__)

TELEMETRY_COLUMNS = ["machine_id", "ts", "metric", "value", "unit", "ingested_at"]
QUARANTINE_COLUMNS = ["machine_id", "ts", "source_table", "rule", "reason", "original"]


@dataclass
class NormalizeResult:
    """Clean rows, quarantined rows and the counts that must add up."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    duplicates_removed: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rows_in": self.rows_in,
            "rows_clean": len(self.clean),
            "rows_quarantined": len(self.quarantine),
            "duplicates_removed": self.duplicates_removed,
            **self.stats,
        }

    def check(self) -> None:
        total = len(self.clean) + len(self.quarantine) + self.duplicates_removed
        if total != self.rows_in:
            raise MeshInsightsError(
                f"row accounting broken: {self.rows_in} in, {len(self.clean)} clean + "
                f"{len(self.quarantine)} quarantined + {self.duplicates_removed} duplicates "
                f"= {total}; this is a bug in normalization, please report it"
            )


def _original_json(rows: pd.DataFrame) -> pd.Series:
    if rows.empty:
        return pd.Series([], dtype=object)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    return pd.Series([json.dumps(r, default=str, sort_keys=True) for r in records], index=rows.index)


def quarantine_frame(
    rows: pd.DataFrame,
    *,
    rule: str,
    reason: str | pd.Series,
    machine_id: str,
    fallback_ts: pd.Timestamp,
    source_table: str = "telemetry",
    original: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Quarantine rows: keep their own ts where it parses, else the window start."""
    if rows.empty:
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    ts = pd.to_datetime(rows["ts"], errors="coerce", utc=True) if "ts" in rows else None
    out = pd.DataFrame(index=rows.index)
    out["machine_id"] = machine_id
    out["ts"] = ts.fillna(fallback_ts) if ts is not None else fallback_ts
    out["source_table"] = source_table
    out["rule"] = rule
    out["reason"] = reason
    out["original"] = _original_json(original.loc[rows.index] if original is not None else rows)
    return out.reset_index(drop=True)


def _to_utc(values: pd.Series, tz: str, fmt: str | None = None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
    else:
        ts = pd.to_datetime(values, errors="coerce", format=fmt, utc=False)
        if ts.dtype == object:  # mixed offsets: let pandas resolve each to UTC
            ts = pd.to_datetime(values, errors="coerce", format=fmt, utc=True)
    if getattr(ts.dt, "tz", None) is None:
        # Ambiguous/non-existent local times (DST edges) become NaT and go to quarantine.
        ts = ts.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def normalize_telemetry(
    raw: pd.DataFrame,
    *,
    machine_id: str,
    window: Window,
    timezone: str = "UTC",
    units: Mapping[str, str] | None = None,
    rules: Mapping[str, Any] | None = None,
) -> NormalizeResult:
    """Long-form source rows → canonical telemetry + quarantine, with exact accounting.

    Expects columns ``ts, metric, value`` and optionally ``machine_id, unit, ingested_at``.
    Naive timestamps are read in ``timezone``. Rows of another machine, unparsable
    timestamps or values, rows outside the window and rule violations are quarantined.
    """
    rows_in = len(raw)
    fallback = pd.Timestamp(window.start)
    missing = [c for c in ("ts", "metric", "value") if c not in raw.columns]
    if missing:
        raise MeshInsightsError(
            f"source rows for {machine_id} lack column(s) {missing}; the query must return "
            "ts, metric, value (long layout) — alias the columns in the query"
        )
    df = raw.copy()
    original = raw
    if "machine_id" not in df.columns:
        df["machine_id"] = machine_id
    quarantined: list[pd.DataFrame] = []

    def _reject(mask: pd.Series, rule: str, reason: str | pd.Series) -> None:
        nonlocal df
        if mask.any():
            quarantined.append(
                quarantine_frame(df[mask], rule=rule, reason=reason if isinstance(reason, str)
                                 else reason[mask], machine_id=machine_id, fallback_ts=fallback,
                                 original=original)
            )
            df = df[~mask]

    _reject(df["machine_id"].astype(str) != machine_id, "machine_id",
            f"row belongs to another machine than {machine_id}")
    df["ts"] = _to_utc(df["ts"], timezone)
    _reject(df["ts"].isna(), "ts_parse", "timestamp missing, unparsable or non-existent local time")
    value = pd.to_numeric(df["value"], errors="coerce")
    _reject(value.isna() & df["value"].notna(), "value_type", "value is not a number")
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    _reject(pd.Series(np.isinf(df["value"].to_numpy()), index=df.index), "value_inf",
            "value is infinite")
    _reject(df["metric"].isna() | (df["metric"].astype(str).str.strip() == ""), "metric_missing",
            "metric name missing")
    in_window = (df["ts"] >= pd.Timestamp(window.start)) & (df["ts"] < pd.Timestamp(window.end))
    _reject(~in_window, "out_of_window", f"timestamp outside the run window {window}")

    df["machine_id"] = machine_id
    df["metric"] = df["metric"].astype(str)
    if "unit" not in df.columns:
        df["unit"] = None
    if units:
        df["unit"] = df["unit"].where(df["unit"].notna(), df["metric"].map(units))
    if "ingested_at" in df.columns:
        df["ingested_at"] = _to_utc(df["ingested_at"], "UTC")
    else:
        df["ingested_at"] = pd.NaT
        df["ingested_at"] = df["ingested_at"].astype("datetime64[us, UTC]")

    before = len(df)
    df = df.drop_duplicates(subset=["ts", "metric", "value", "unit"], keep="first")
    duplicates = before - len(df)

    if rules:
        df, rule_q = apply_rules(df, rules, machine_id=machine_id, fallback_ts=fallback)
        if not rule_q.empty:
            quarantined.append(rule_q)

    clean = df[TELEMETRY_COLUMNS].sort_values(["ts", "metric"], kind="stable").reset_index(drop=True)
    q = (pd.concat(quarantined, ignore_index=True) if quarantined
         else pd.DataFrame(columns=QUARANTINE_COLUMNS))
    result = NormalizeResult(clean, q, rows_in, duplicates)
    result.check()
    return result


def apply_rules(
    df: pd.DataFrame, rules: Mapping[str, Any], *, machine_id: str, fallback_ts: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-metric range and rate-of-change rules; failing rows move to quarantine."""
    bad_parts: list[pd.DataFrame] = []
    keep = pd.Series(True, index=df.index)
    for metric, rule in rules.items():
        get = rule.get if isinstance(rule, Mapping) else lambda k, r=rule: getattr(r, k, None)
        sel = df["metric"] == metric
        if not sel.any():
            continue
        vals = df.loc[sel, "value"]
        lo, hi = get("min"), get("max")
        if lo is not None or hi is not None:
            out = ((vals < lo) if lo is not None else False) | ((vals > hi) if hi is not None else False)
            out = out & vals.notna()
            if out.any():
                idx = out[out].index
                bad_parts.append(quarantine_frame(
                    df.loc[idx], rule=f"{metric}.range", machine_id=machine_id,
                    fallback_ts=fallback_ts,
                    reason=f"{metric} outside [{lo}, {hi}]",
                ))
                keep[idx] = False
        rate = get("max_rate_per_min")
        if rate is not None:
            sub = df.loc[sel & keep, ["ts", "value"]].sort_values("ts")
            minutes = sub["ts"].diff().dt.total_seconds() / 60.0
            change = sub["value"].diff().abs() / minutes.where(minutes > 0)
            jump = change > rate
            if jump.any():
                idx = jump[jump].index
                bad_parts.append(quarantine_frame(
                    df.loc[idx], rule=f"{metric}.rate", machine_id=machine_id,
                    fallback_ts=fallback_ts,
                    reason=f"{metric} changed faster than {rate}/min",
                ))
                keep[idx] = False
    bad = pd.concat(bad_parts, ignore_index=True) if bad_parts else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return df[keep], bad
