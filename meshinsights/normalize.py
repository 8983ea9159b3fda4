"""Normalization and validation of source rows into the canonical telemetry and events schemas.

Every input row ends in exactly one place: the clean frame, the quarantine frame (with the
rule, the reason and the original values as JSON), or the exact-duplicate count. The
invariant ``rows_in == rows_clean + rows_quarantined + duplicates_removed`` is checked on
every call. Decisions worth knowing:

- Naive timestamps are read in the source's time zone; everything leaves in UTC. Local times
  that do not exist or are ambiguous (DST edges) are quarantined (``ts_parse``).
- Exact duplicates (same ts, metric, value and unit) are removed and counted, keeping the
  earliest ingested copy.
- A *repeated* timestamp with a different value is a conflict. The first occurrence wins
  (earliest ``ingested_at``, then source order); later ones are quarantined as
  ``clock_rollback`` when the source had already moved past that time (the device clock
  jumped back and replayed readings), else as ``duplicate_ts``. Out-of-order but unique
  timestamps are simply sorted.
- Values are coerced to float; text that is not a number goes to ``value_type``, missing
  values (null or a source ``na_values`` marker) to ``value_missing``.
- Units are converted to the rule's canonical unit (degF→degC, W→kW, ...); rows whose unit
  cannot be converted go to ``unit``. Rows without a unit are taken as canonical.
- Rate rules compare each sample with the previous *accepted* one, so one spike costs one
  row (not its neighbour too); after three rejections in a row the new level is accepted.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from meshinsights.connectors.layout import can_convert, canonical_unit, convert_units
from meshinsights.errors import MeshInsightsError
from meshinsights.model import Window

__all__ = ["NormalizeResult", "normalize_telemetry", "normalize_events", "apply_rules",
           "quarantine_frame", "to_utc"]

logger = logging.getLogger(__name__)

TELEMETRY_COLUMNS = ["machine_id", "ts", "metric", "value", "unit", "ingested_at"]
EVENTS_COLUMNS = ["machine_id", "ts", "kind", "severity", "code", "message", "ingested_at"]
QUARANTINE_COLUMNS = ["machine_id", "ts", "source_table", "rule", "reason", "original"]
#: Consecutive rate-rule rejections after which the new level is accepted as real.
RATE_RESET = 3
DEFAULT_KINDS = ("event", "alarm", "log")


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


def _original_json(rows: pd.DataFrame) -> pd.Series:
    if rows.empty:
        return pd.Series([], dtype=object)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    return pd.Series([json.dumps(r, default=str, sort_keys=True) for r in records],
                     index=rows.index)


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
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
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


def to_utc(values: pd.Series, tz: str, fmt: str | None = None) -> pd.Series:
    """Parse timestamps (naive ones in ``tz``) to UTC; unparsable values become NaT.

    Numbers are epoch seconds. Text with an explicit offset (``Z``, ``+02:00``) keeps it,
    even in a column that otherwise holds naive local times.
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        ts = pd.to_datetime(values, unit="s", errors="coerce", utc=True)
    elif pd.api.types.is_datetime64_any_dtype(values):
        ts = values
    else:
        ts = _parse_text(values, fmt)
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    ts = ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        failed = ts.isna() & values.notna()
        if failed.any():
            text = values[failed].astype(str).str.strip()
            offset = text[text.str.contains(_OFFSET, regex=True)]
            if len(offset):
                ts.loc[offset.index] = pd.to_datetime(offset, errors="coerce", utc=True,
                                                      format="ISO8601")
    return ts


_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _parse_text(values: pd.Series, fmt: str | None) -> pd.Series:
    with warnings.catch_warnings():  # "could not infer format": per-element is intended
        warnings.simplefilter("ignore", UserWarning)
        try:
            ts = pd.to_datetime(values, errors="coerce", format=fmt, utc=False)
        except (ValueError, TypeError):  # mixed offsets or aware/naive mix
            ts = None
        if ts is None or not pd.api.types.is_datetime64_any_dtype(ts):
            ts = pd.to_datetime(values, errors="coerce", format=fmt, utc=True)
    return ts


class _Sorter:
    """Moves rejected rows from the working frame into quarantine, keeping the accounting."""

    def __init__(self, df: pd.DataFrame, original: pd.DataFrame, *, machine_id: str,
                 window: Window, source_table: str) -> None:
        self.df, self.original, self.parts = df, original, []
        self.machine_id, self.window, self.source_table = machine_id, window, source_table

    def reject(self, mask: pd.Series, rule: str, reason: str | pd.Series) -> None:
        mask = mask.reindex(self.df.index, fill_value=False).fillna(False).astype(bool)
        if not mask.any():
            return
        rows = self.df[mask]
        self.parts.append(quarantine_frame(
            rows, rule=rule, reason=reason if isinstance(reason, str) else reason[mask],
            machine_id=self.machine_id, window=self.window, source_table=self.source_table,
            original=self.original.loc[rows["_row"]].set_axis(rows.index),
        ))
        self.df = self.df[~mask]

    def common(self, timezone: str, ts_format: str | None) -> None:
        """Machine, timestamp and window checks shared by telemetry and events."""
        df = self.df
        if "machine_id" not in df.columns:
            df["machine_id"] = self.machine_id
        self.reject(df["machine_id"].astype(str) != self.machine_id, "machine_id",
                    f"row belongs to another machine than {self.machine_id}")
        self.df["ts"] = to_utc(self.df["ts"], timezone, ts_format)
        self.reject(self.df["ts"].isna(), "ts_parse",
                    "timestamp missing, unparsable or a non-existent/ambiguous local time")
        w = self.window
        inside = (self.df["ts"] >= pd.Timestamp(w.start)) & (self.df["ts"] < pd.Timestamp(w.end))
        self.reject(~inside, "out_of_window", f"timestamp outside the run window {w}")
        if "ingested_at" in self.df.columns:
            self.df["ingested_at"] = to_utc(self.df["ingested_at"], "UTC")
        else:
            self.df["ingested_at"] = pd.Series(pd.NaT, index=self.df.index,
                                               dtype="datetime64[us, UTC]")

    def dedupe(self, subset: list[str]) -> int:
        """Drop exact duplicates (earliest ingested copy wins); returns how many."""
        before = len(self.df)
        self.df = self.df.sort_values(["ingested_at", "_row"], kind="stable", na_position="last")
        self.df = self.df.drop_duplicates(subset=subset, keep="first")
        return before - len(self.df)

    def quarantined(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=QUARANTINE_COLUMNS)
        return pd.concat(self.parts, ignore_index=True)


def _start(raw: pd.DataFrame, required: tuple[str, ...], what: str, machine_id: str) -> pd.DataFrame:
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise MeshInsightsError(
            f"source {what} rows for {machine_id} lack column(s) {missing}; the query must "
            f"return {', '.join(required)} — alias the columns in the query"
        )
    df = raw.reset_index(drop=True).copy()
    df["_row"] = np.arange(len(df))
    return df


def normalize_telemetry(
    raw: pd.DataFrame,
    *,
    machine_id: str,
    window: Window,
    timezone: str = "UTC",
    ts_format: str | None = None,
    units: Mapping[str, str] | None = None,
    rules: Mapping[str, Any] | None = None,
) -> NormalizeResult:
    """Long-form source rows → canonical telemetry + quarantine, with exact accounting.

    Expects columns ``ts, metric, value`` and optionally ``machine_id, unit, ingested_at``
    (see :func:`meshinsights.connectors.layout.to_long` for wide and TSDB sources).
    """
    df = _start(raw, ("ts", "metric", "value"), "telemetry", machine_id)
    original = raw.reset_index(drop=True)
    sorter = _Sorter(df, original, machine_id=machine_id, window=window,
                     source_table="telemetry")
    sorter.common(timezone, ts_format)
    df = sorter.df
    sorter.reject(df["metric"].isna() | (df["metric"].astype(str).str.strip() == ""),
                  "metric_missing", "metric name missing")
    _coerce_values(sorter)
    sorter.df["metric"] = sorter.df["metric"].astype(str).str.strip()
    _units(sorter, units or {}, rules or {})
    duplicates = sorter.dedupe(["ts", "metric", "value", "unit"])
    _repeated_timestamps(sorter)
    if rules:
        kept, bad = apply_rules(sorter.df, rules, machine_id=machine_id, window=window,
                                original=original)
        sorter.df = kept
        if not bad.empty:
            sorter.parts.append(bad)
    clean = sorter.df.assign(machine_id=machine_id)[TELEMETRY_COLUMNS]
    clean = clean.sort_values(["ts", "metric"], kind="stable").reset_index(drop=True)
    clean["value"] = clean["value"].astype("float64")
    missing = sorted(m for m, r in (rules or {}).items()
                     if _get(r, "required") and m not in set(clean["metric"]))
    if missing:
        logger.warning("machine %s window %s: required metric(s) %s absent", machine_id,
                       window, missing)
    result = NormalizeResult(clean, sorter.quarantined(), len(raw), duplicates,
                             missing_required=missing)
    result.check()
    return result


def _coerce_values(sorter: _Sorter) -> None:
    raw_value = sorter.df["value"]
    value = pd.to_numeric(raw_value, errors="coerce")
    if raw_value.dtype == object or pd.api.types.is_string_dtype(raw_value):
        # Decimal commas ("21,5") are common in CSV exports from European locales.
        text = raw_value.astype("string").str.strip().str.replace(",", ".", regex=False)
        value = value.fillna(pd.to_numeric(text, errors="coerce"))
    sorter.reject(value.isna() & raw_value.notna(), "value_type", "value is not a number")
    sorter.reject(raw_value.isna(), "value_missing",
                  "value missing (null or one of the source's na_values)")
    value = value.loc[sorter.df.index].astype("float64")
    sorter.reject(pd.Series(np.isinf(value.to_numpy()), index=value.index), "value_inf",
                  "value is infinite")
    sorter.df["value"] = value.loc[sorter.df.index]


def _units(sorter: _Sorter, units: Mapping[str, str], rules: Mapping[str, Any]) -> None:
    df = sorter.df
    unit = df["unit"] if "unit" in df.columns else pd.Series(None, index=df.index, dtype=object)
    unit = unit.astype(object).where(unit.notna(), df["metric"].map(dict(units)))
    spellings = {u: canonical_unit(u) for u in unit.dropna().unique()}
    df["unit"] = unit.map(spellings).astype(object)
    targets = {m: _get(r, "unit") for m, r in rules.items() if _get(r, "unit")}
    if not targets:
        return
    target = df["metric"].map(targets)
    pairs = df[target.notna() & df["unit"].notna()].groupby(
        [df["unit"], target], sort=False).groups
    bad = pd.Series(False, index=df.index)
    for (src, dst), idx in pairs.items():
        if canonical_unit(src) == canonical_unit(dst):
            continue
        if can_convert(src, dst):
            df.loc[idx, "value"] = convert_units(df.loc[idx, "value"], src, dst)
        else:
            bad[idx] = True
    sorter.reject(bad, "unit", "unit " + df["unit"].astype(str) + " cannot be converted to "
                  + target.astype(str))
    fill = target.loc[sorter.df.index]
    sorter.df["unit"] = fill.where(fill.notna(), sorter.df["unit"])


def _repeated_timestamps(sorter: _Sorter) -> None:
    """Keep the first reading per (ts, metric); quarantine later conflicting ones."""
    df = sorter.df
    repeat = df.duplicated(subset=["ts", "metric"], keep="first")
    if not repeat.any():
        return
    # In source order: had this metric already reached a later time when the repeat arrived?
    by_source = df.sort_values("_row", kind="stable")
    seen_max = by_source.groupby("metric")["ts"].cummax().groupby(by_source["metric"]).shift()
    rolled = (by_source["ts"] < seen_max).reindex(df.index).fillna(False)
    sorter.reject(repeat & rolled, "clock_rollback",
                  "timestamp repeated after the clock had moved past it (device clock jumped "
                  "back); the first reading for this time was kept")
    sorter.reject(repeat & ~rolled, "duplicate_ts",
                  "another reading with the same timestamp and a different value came first")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def _get(rule: Any, key: str) -> Any:
    return rule.get(key) if isinstance(rule, Mapping) else getattr(rule, key, None)


def apply_rules(
    df: pd.DataFrame,
    rules: Mapping[str, Any],
    *,
    machine_id: str,
    window: Window,
    original: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-metric range and rate-of-change rules; failing rows move to quarantine."""
    bad_parts: list[pd.DataFrame] = []
    keep = pd.Series(True, index=df.index)

    def _move(idx: pd.Index, rule: str, reason: str) -> None:
        rows = df.loc[idx]
        orig = None
        if original is not None and "_row" in rows.columns:
            orig = original.loc[rows["_row"]].set_axis(rows.index)
        bad_parts.append(quarantine_frame(rows, rule=rule, reason=reason, machine_id=machine_id,
                                          window=window, original=orig))
        keep[idx] = False

    for metric, rule in rules.items():
        sel = df["metric"] == metric
        if not sel.any():
            continue
        vals = df.loc[sel, "value"]
        lo, hi = _get(rule, "min"), _get(rule, "max")
        out = pd.Series(False, index=vals.index)
        if lo is not None:
            out |= vals < lo
        if hi is not None:
            out |= vals > hi
        if out.any():
            _move(out[out].index, f"{metric}.range", f"{metric} outside [{lo}, {hi}]")
        rate = _get(rule, "max_rate_per_min")
        if rate is not None:
            sub = df.loc[sel & keep, ["ts", "value"]].sort_values("ts", kind="stable")
            jumps = _rate_violations(sub, float(rate))
            if len(jumps):
                _move(jumps, f"{metric}.rate", f"{metric} changed faster than {rate}/min "
                      "relative to the previous accepted reading")
    bad = (pd.concat(bad_parts, ignore_index=True) if bad_parts
           else pd.DataFrame(columns=QUARANTINE_COLUMNS))
    return df[keep], bad


def _rate_violations(sub: pd.DataFrame, rate: float) -> pd.Index:
    """Rows whose change from the previous accepted reading exceeds ``rate`` per minute."""
    if len(sub) < 2:
        return sub.index[:0]
    t = (sub["ts"] - sub["ts"].iloc[0]).dt.total_seconds().to_numpy() / 60.0
    v = sub["value"].to_numpy(dtype="float64")
    dt = np.diff(t)
    step = np.abs(np.diff(v)) > rate * np.where(dt > 0, dt, np.inf)
    candidates = np.flatnonzero(step) + 1
    if not len(candidates):
        return sub.index[:0]
    bad: list[int] = []
    ref, streak, pos = candidates[0] - 1, 0, 0
    i = candidates[0]
    while i < len(v):
        minutes = t[i] - t[ref]
        if minutes > 0 and abs(v[i] - v[ref]) > rate * minutes:
            bad.append(i)
            streak += 1
            if streak >= RATE_RESET:  # a sustained new level is real, not a spike
                ref, streak = i, 0
            i += 1
            continue
        ref, streak = i, 0
        # Between candidates every step is within the rate and the reference is current:
        # nothing can fail there, so jump to the next candidate.
        while pos < len(candidates) and candidates[pos] <= i:
            pos += 1
        if pos == len(candidates):
            break
        nxt = candidates[pos]
        if nxt > i + 1:
            ref, i = nxt - 1, nxt
        else:
            i += 1
    return sub.index[bad]


def normalize_events(
    raw: pd.DataFrame,
    *,
    machine_id: str,
    window: Window,
    timezone: str = "UTC",
    ts_format: str | None = None,
    rules: Any = None,
) -> NormalizeResult:
    """Source events/alarms/logs → canonical events + quarantine, with exact accounting.

    ``rules`` (an ``EventRules`` or a mapping) may restrict ``kinds``, ``severities`` and
    ``codes`` per kind; without it kinds must be one of event, alarm, log.
    """
    df = _start(raw, ("ts", "kind"), "events", machine_id)
    original = raw.reset_index(drop=True)
    sorter = _Sorter(df, original, machine_id=machine_id, window=window, source_table="events")
    sorter.common(timezone, ts_format)
    for col in ("kind", "severity", "code", "message"):
        if col not in sorter.df.columns:
            sorter.df[col] = None
        sorter.df[col] = sorter.df[col].astype(object).map(_text)
    sorter.df["kind"] = sorter.df["kind"].map(lambda k: k.lower() if isinstance(k, str) else None)
    kinds = list((_get(rules, "kinds") if rules is not None else None) or DEFAULT_KINDS)
    sorter.reject(~sorter.df["kind"].isin(kinds), "events.kind",
                  f"kind missing or not one of {kinds}")
    severities = _get(rules, "severities") if rules is not None else None
    if severities:
        sorter.reject(~sorter.df["severity"].isin(list(severities)), "events.severity",
                      f"severity not one of {list(severities)}")
    for kind, codes in (dict(_get(rules, "codes") or {}) if rules is not None else {}).items():
        wrong = (sorter.df["kind"] == kind) & ~sorter.df["code"].isin(list(codes))
        sorter.reject(wrong, f"{kind}.code", f"{kind} code not in the allowed codes {list(codes)}")
    duplicates = sorter.dedupe(["ts", "kind", "severity", "code", "message"])
    clean = sorter.df.assign(machine_id=machine_id)[EVENTS_COLUMNS]
    clean = clean.sort_values(["ts", "kind"], kind="stable").reset_index(drop=True)
    result = NormalizeResult(clean, sorter.quarantined(), len(raw), duplicates)
    result.check()
    return result
