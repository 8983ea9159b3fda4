"""Telemetry normalization: long source rows → canonical telemetry + quarantine."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from meshinsights.model import RUN, Window
from meshinsights.normalize.common import (
    TELEMETRY_COLUMNS,
    NormalizeResult,
    RowSorter,
    prepare_rows,
    rule_value,
)
from meshinsights.normalize.rules import apply_rules
from meshinsights.normalize.runs import by_run
from meshinsights.normalize.timestamps import TimeFormat
from meshinsights.normalize.units import can_convert, canonical_unit, convert_units

__all__ = ["normalize_telemetry"]

logger = logging.getLogger(__name__)

#: Largest plausible |value|; beyond it sums of squares overflow float64 in downstream steps.
MAX_ABS_VALUE = 1e15


def normalize_telemetry(
    raw: pd.DataFrame,
    *,
    machine_id: str,
    window: Window,
    times: TimeFormat | None = None,
    units: Mapping[str, str] | None = None,
    rules: Mapping[str, Any] | None = None,
) -> NormalizeResult:
    """Long-form source rows → canonical telemetry + quarantine, with exact accounting.

    Expects columns ``ts, metric, value`` and optionally ``machine_id, unit, ingested_at``
    (see :func:`meshinsights.connectors.layout.to_long` for wide and TSDB sources), and
    ``run_id`` for a source with runs: each run is then checked on its own
    (:mod:`meshinsights.normalize.runs`) and keeps its ``run_id``.
    """
    if RUN in raw.columns:
        return by_run(
            normalize_telemetry,
            raw,
            machine_id=machine_id,
            window=window,
            source_table="telemetry",
            times=times,
            units=units,
            rules=rules,
        )
    df = prepare_rows(raw, ("ts", "metric", "value"), "telemetry", machine_id)
    original = raw.reset_index(drop=True)
    sorter = RowSorter(df, original, machine_id=machine_id, window=window, source_table="telemetry")
    sorter.common(times or TimeFormat())
    df = sorter.df
    sorter.reject(
        df["metric"].isna() | (df["metric"].astype(str).str.strip() == ""),
        "metric_missing",
        "metric name missing",
    )
    _coerce_values(sorter)
    sorter.df["metric"] = sorter.df["metric"].astype(str).str.strip()
    _units(sorter, units or {}, rules or {})
    duplicates = sorter.dedupe(["ts", "metric", "value", "unit"])
    _repeated_timestamps(sorter)
    if rules:
        kept, bad = apply_rules(
            sorter.df, rules, machine_id=machine_id, window=window, original=original
        )
        sorter.df = kept
        if not bad.empty:
            sorter.parts.append(bad)
    clean = sorter.df.assign(machine_id=machine_id)[TELEMETRY_COLUMNS]
    clean = clean.sort_values(["ts", "metric"], kind="stable").reset_index(drop=True)
    clean["value"] = clean["value"].astype("float64")
    present = set(clean["metric"])
    missing = sorted(
        m for m, r in (rules or {}).items() if rule_value(r, "required") and m not in present
    )
    if missing:
        logger.warning(
            "machine %s window %s: required metric(s) %s absent", machine_id, window, missing
        )
    result = NormalizeResult(
        clean,
        sorter.quarantined(),
        len(raw),
        duplicates,
        missing_required=missing,
        notes=sorter.notes,
    )
    result.check()
    return result


def _coerce_values(sorter: RowSorter) -> None:
    raw_value = sorter.df["value"]
    value = pd.to_numeric(raw_value, errors="coerce")
    if raw_value.dtype == object or pd.api.types.is_string_dtype(raw_value):
        # Decimal commas ("21,5") are common in CSV exports from European locales.
        text = raw_value.astype("string").str.strip().str.replace(",", ".", regex=False)
        value = value.fillna(pd.to_numeric(text, errors="coerce"))
    sorter.reject(value.isna() & raw_value.notna(), "value_type", "value is not a number")
    sorter.reject(
        raw_value.isna(), "value_missing", "value missing (null or one of the source's na_values)"
    )
    value = value.loc[sorter.df.index].astype("float64")
    sorter.reject(
        pd.Series(np.isinf(value.to_numpy()), index=value.index), "value_inf", "value is infinite"
    )
    # Finite but absurd magnitudes (1e200) overflow to inf in any mean or std a step computes,
    # and the store refuses inf: no sensor reads beyond this, so quarantine them here.
    value = value.loc[sorter.df.index]
    sorter.reject(
        value.abs() > MAX_ABS_VALUE,
        "value_magnitude",
        f"|value| exceeds {MAX_ABS_VALUE:g}, beyond any sensor's range",
    )
    sorter.df["value"] = value.loc[sorter.df.index]


def _units(sorter: RowSorter, units: Mapping[str, str], rules: Mapping[str, Any]) -> None:
    df = sorter.df
    unit = df["unit"] if "unit" in df.columns else pd.Series(None, index=df.index, dtype=object)
    unit = unit.astype(object).where(unit.notna(), df["metric"].map(dict(units)))
    spellings = {u: canonical_unit(u) for u in unit.dropna().unique()}
    df["unit"] = unit.map(spellings).astype(object)
    targets = {m: rule_value(r, "unit") for m, r in rules.items() if rule_value(r, "unit")}
    if not targets:
        return
    target = df["metric"].map(targets)
    pairs = df[target.notna() & df["unit"].notna()].groupby([df["unit"], target], sort=False).groups
    bad = pd.Series(False, index=df.index)
    for (src, dst), idx in pairs.items():
        if canonical_unit(src) == canonical_unit(dst):
            continue
        if can_convert(src, dst):
            df.loc[idx, "value"] = convert_units(df.loc[idx, "value"], src, dst)
        else:
            bad[idx] = True
    sorter.reject(
        bad,
        "unit",
        "unit " + df["unit"].astype(str) + " cannot be converted to " + target.astype(str),
    )
    fill = target.loc[sorter.df.index]
    sorter.df["unit"] = fill.where(fill.notna(), sorter.df["unit"])


def _repeated_timestamps(sorter: RowSorter) -> None:
    """Keep the first reading per (ts, metric); quarantine later conflicting ones."""
    df = sorter.df
    repeat = df.duplicated(subset=["ts", "metric"], keep="first")
    if not repeat.any():
        return
    # A conflict right next to its twin (in source order) is a double reading; a repeat that
    # arrives after other times were reported is a replay after the clock jumped back.
    by_source = df.sort_values("_row", kind="stable")
    per_metric = by_source.groupby("metric")["ts"]
    twin = (by_source["ts"] == per_metric.shift(1)) | (by_source["ts"] == per_metric.shift(-1))
    rolled = (~twin).reindex(df.index)
    sorter.reject(
        repeat & rolled,
        "clock_rollback",
        "timestamp repeated after later times were reported (the device clock "
        "jumped back and replayed); the first reading for this time was kept",
    )
    sorter.reject(
        repeat & ~rolled,
        "duplicate_ts",
        "another reading with the same timestamp and a different value came first",
    )
