"""Source shapes and units: long ↔ wide ↔ TSDB frames, and unit conversion to canonical units.

Sources deliver telemetry in one of three layouts; :func:`to_long` turns each into the long
frame normalization expects (``ts, metric, value`` plus optional ``machine_id, unit,
ingested_at``), keeping the source's row order within each metric (normalization relies on it
to tell a clock rollback from the original readings).

- ``long``: one row per reading (``ts, metric, value[, unit]``).
- ``wide``: one row per timestamp, one column per metric.
- ``tsdb``: the time-series-database shape ``time, deviceId, measure_name, measure_value``
  (Amazon Timestream style; ``measure_value::double`` and friends are accepted too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
import pandas as pd

from meshinsights.errors import ConfigError

__all__ = ["Layout", "to_long", "to_wide", "convert_units", "can_convert", "UNIT_ALIASES"]

logger = logging.getLogger(__name__)

Layout = Literal["long", "wide", "tsdb"]

#: Spellings sources use for the same unit → the canonical spelling.
UNIT_ALIASES = {
    "°c": "degC",
    "c": "degC",
    "degc": "degC",
    "celsius": "degC",
    "°f": "degF",
    "f": "degF",
    "degf": "degF",
    "fahrenheit": "degF",
    "k": "K",
    "kelvin": "K",
    "w": "W",
    "watt": "W",
    "kw": "kW",
    "kilowatt": "kW",
    "mw": "MW",
    "megawatt": "MW",
    "%": "%",
    "percent": "%",
    "%rh": "%",
    "pa": "Pa",
    "kpa": "kPa",
    "hpa": "hPa",
    "bar": "bar",
    "psi": "psi",
}

_LINEAR: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    ("degF", "degC"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("degC", "degF"): lambda v: v * 9.0 / 5.0 + 32.0,
    ("K", "degC"): lambda v: v - 273.15,
    ("degC", "K"): lambda v: v + 273.15,
    ("degF", "K"): lambda v: (v - 32.0) * 5.0 / 9.0 + 273.15,
    ("W", "kW"): lambda v: v / 1e3,
    ("kW", "W"): lambda v: v * 1e3,
    ("MW", "kW"): lambda v: v * 1e3,
    ("kW", "MW"): lambda v: v / 1e3,
    ("W", "MW"): lambda v: v / 1e6,
    ("Pa", "kPa"): lambda v: v / 1e3,
    ("kPa", "Pa"): lambda v: v * 1e3,
    ("hPa", "kPa"): lambda v: v / 10.0,
    ("bar", "kPa"): lambda v: v * 100.0,
    ("psi", "kPa"): lambda v: v * 6.894757293168,
}

_TSDB = {"time": "ts", "deviceId": "machine_id", "measure_name": "metric"}


def canonical_unit(unit: object) -> str | None:
    """The canonical spelling of a unit (``°F`` → ``degF``); None for missing."""
    if unit is None or (isinstance(unit, float) and np.isnan(unit)) or unit is pd.NA:
        return None
    text = str(unit).strip()
    return UNIT_ALIASES.get(text.lower(), text) if text else None


def can_convert(source: str | None, target: str | None) -> bool:
    """Whether values in ``source`` units can be expressed in ``target`` units."""
    s, t = canonical_unit(source), canonical_unit(target)
    return s is None or t is None or s == t or (s, t) in _LINEAR


def convert_units(values: pd.Series, source: str | None, target: str | None) -> pd.Series:
    """``values`` (in ``source`` units) expressed in ``target`` units; raises if impossible."""
    s, t = canonical_unit(source), canonical_unit(target)
    if s is None or t is None or s == t:
        return values
    if (s, t) not in _LINEAR:
        raise ConfigError(
            f"no conversion from unit {source!r} to {target!r}; known pairs: "
            + ", ".join(f"{a}→{b}" for a, b in sorted(_LINEAR))
        )
    return pd.Series(_LINEAR[(s, t)](values.to_numpy(dtype="float64")), index=values.index)


def _rename(frame: pd.DataFrame, mapping: Mapping[str, str | None]) -> pd.DataFrame:
    renames = {
        src: dst for dst, src in mapping.items() if src and src in frame.columns and src != dst
    }
    return frame.rename(columns=renames)


def to_long(
    frame: pd.DataFrame,
    *,
    layout: Layout = "long",
    ts_column: str = "ts",
    machine_column: str | None = None,
    ingested_column: str | None = None,
    metrics: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Any source layout → long ``ts, metric, value`` (+ ``machine_id, unit, ingested_at``)."""
    if layout == "tsdb":
        value_cols = [c for c in frame.columns if str(c).startswith("measure_value")]
        missing = [c for c in _TSDB if c not in frame.columns] + (
            [] if value_cols else ["measure_value"]
        )
        if missing:
            raise ConfigError(
                f"tsdb layout needs columns time, deviceId, measure_name, "
                f"measure_value; missing {missing} — alias them in the query"
            )
        out = frame.rename(columns=_TSDB)
        # Timestream splits values by type (measure_value::double, ::bigint): take the first
        # non-null per row.
        out["value"] = (
            out[value_cols].bfill(axis=1).iloc[:, 0] if len(value_cols) > 1 else out[value_cols[0]]
        )
        out = out.drop(columns=[c for c in value_cols if c != "value"])
        return _rename(out, {"ingested_at": ingested_column})
    renamed = _rename(
        frame, {"ts": ts_column, "machine_id": machine_column, "ingested_at": ingested_column}
    )
    if "ts" not in renamed.columns:
        raise ConfigError(
            f"source rows have no timestamp column {ts_column!r}; columns are "
            f"{list(frame.columns)} — set ts_column or alias the column"
        )
    if layout == "long":
        return renamed
    if layout != "wide":
        raise ConfigError(f"unknown layout {layout!r}; use long, wide or tsdb")
    return _melt(renamed, metrics)


def _melt(frame: pd.DataFrame, metrics: Mapping[str, str] | None) -> pd.DataFrame:
    ids = [c for c in ("machine_id", "ts", "ingested_at") if c in frame.columns]
    columns = list(metrics) if metrics else [c for c in frame.columns if c not in ids]
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ConfigError(
            f"wide layout: metric column(s) {absent} not in the source; columns "
            f"are {list(frame.columns)} — fix 'metrics' in the source config"
        )
    if not columns:
        raise ConfigError("wide layout: the source has no metric columns besides the keys")
    n = len(frame)
    # Stack column by column (metric-major) so each metric keeps the source's row order.
    parts = {c: np.tile(frame[c].to_numpy(), len(columns)) for c in ids}
    values = (
        np.concatenate([frame[c].to_numpy(dtype=object) for c in columns])
        if n
        else np.array([], dtype=object)
    )
    names = np.repeat([(metrics or {}).get(c, c) for c in columns], n)
    out = pd.DataFrame({**parts, "metric": names, "value": values})
    return out


def to_wide(long: pd.DataFrame, *, metrics: list[str] | None = None) -> pd.DataFrame:
    """Long telemetry → one row per (machine_id, ts), one column per metric (first value wins)."""
    keys = [c for c in ("machine_id", "ts") if c in long.columns]
    rows = long if metrics is None else long[long["metric"].isin(metrics)]
    wide = rows.groupby([*keys, "metric"], sort=False)["value"].first().unstack("metric")
    wide.columns.name = None
    return wide.reset_index().sort_values(keys, kind="stable").reset_index(drop=True)
