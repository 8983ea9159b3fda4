"""Source shapes: long, wide and TSDB frames made long, timestamps and device ids located.

Sources deliver telemetry in one of three layouts; :func:`to_long` turns each into the long
frame normalization expects (``ts, metric, value`` plus optional ``machine_id, unit,
ingested_at``), keeping the source's row order within each metric (normalization relies on it
to tell a clock rollback from the original readings).

- ``long``: one row per reading (``ts, metric, value[, unit]``; the columns may be named
  otherwise: ``metric_column``, ``value_column``, ``unit_column``).
- ``wide``: one row per timestamp, one column per metric: the listed ``metrics``, or else
  every numeric, non-empty column that is not a key; the others are reported as skipped.
- ``tsdb``: the time-series-database shape ``time, deviceId, measure_name, measure_value``
  (Amazon Timestream style; ``measure_value::double`` and friends are accepted too).

The time may span several columns (``ts_columns: [Date, Time]``): they are joined with a space
into ``ts`` (missing if any part is). A device column is mapped to machine ids by
:class:`DeviceMap`: exact, a template such as ``node-{value}``, or explicit values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from meshinsights.errors import ConfigError

__all__ = [
    "Layout",
    "Shape",
    "LongRows",
    "DeviceMap",
    "to_long",
    "to_wide",
    "combine_ts",
    "device_text",
    "TS_JOINED",
]

logger = logging.getLogger(__name__)

Layout = Literal["long", "wide", "tsdb"]

_TSDB = {"time": "ts", "deviceId": "machine_id", "measure_name": "metric"}
#: Name of the joined time column when a source spreads its time over ``ts_columns``.
TS_JOINED = "__ts__"


@dataclass(frozen=True)
class Shape:
    """How a source lays out its rows (built from the source config by the connectors)."""

    layout: Layout = "long"
    ts_column: str = "ts"
    ts_columns: tuple[str, ...] = ()
    machine_column: str | None = None
    ingested_column: str | None = None
    run_column: str | None = None
    metrics: Mapping[str, str] | None = None  # wide: {column: metric}; long: renames
    skip_columns: tuple[str, ...] = ()
    metric_column: str = "metric"
    value_column: str = "value"
    unit_column: str = "unit"

    @property
    def time_column(self) -> str:
        """The column the timestamp is read from (the joined one for ``ts_columns``)."""
        return TS_JOINED if self.ts_columns else self.ts_column

    @property
    def time_label(self) -> str:
        """How to name the time column(s) in a message."""
        return " + ".join(self.ts_columns) if self.ts_columns else self.ts_column


@dataclass
class LongRows:
    """Long rows, plus the wide source's columns that were not ingested and why."""

    frame: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceMap:
    """Which values of a source's device column are this machine's, and how values map to ids.

    ``devices`` lists this machine's values explicitly; else ``template`` (``node-{value}``)
    maps a value to a machine id; else a value *is* the machine id.
    """

    devices: tuple[str, ...] = ()
    template: str | None = None

    def values_for(self, machine_id: str) -> list[str]:
        """The device values whose rows belong to ``machine_id``."""
        if self.devices:
            return list(self.devices)
        if self.template is None:
            return [machine_id]
        found = re.fullmatch(_template_regex(self.template), machine_id)
        if found is None:
            raise ConfigError(
                f"machine id {machine_id!r} does not fit device_template {self.template!r}; "
                "name the machine after the template or give its device explicitly (device: ...)"
            )
        return [found.group("value")]

    def machine_ids(self, values: pd.Series, machine_id: str) -> pd.Series:
        """Each row's machine id: this machine for its own device values, else mapped."""
        text = device_text(values)
        mine = text.isin(self.values_for(machine_id))
        if self.template is not None and not self.devices:
            other = text.map(lambda v: None if v is None else self.template.format(value=v))
        else:
            other = text
        return other.where(~mine, machine_id)


def _template_regex(template: str) -> str:
    if template.count("{value}") != 1:
        raise ConfigError(
            f"device_template {template!r} must contain {{value}} exactly once, "
            "e.g. 'node-{value}'"
        )
    head, tail = template.split("{value}")
    return re.escape(head) + "(?P<value>.+)" + re.escape(tail)


def device_text(values: pd.Series) -> pd.Series:
    """Device values as stripped text (``3``, ``3.0``, ``' 3'`` are one device); None if missing."""

    def one(v: object) -> str | None:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        text = str(v).strip()
        return text or None

    return values.astype(object).map(one)


def combine_ts(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """The parts of a timestamp spread over ``columns`` joined by a space; missing if any is."""
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ConfigError(
            f"ts_columns {list(columns)}: column(s) {absent} not in the source; columns are "
            f"{list(frame.columns)[:20]} — fix ts_columns (or names for a headerless file)"
        )
    parts = [frame[c].astype("string").str.strip() for c in columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + " " + part
    return joined.astype(object).where(joined.notna(), None)


def _rename(frame: pd.DataFrame, mapping: Mapping[str, str | None]) -> pd.DataFrame:
    renames = {
        src: dst for dst, src in mapping.items() if src and src in frame.columns and src != dst
    }
    return frame.rename(columns=renames)


def to_long(frame: pd.DataFrame, shape: Shape | None = None) -> LongRows:
    """Any source layout → long ``ts, metric, value`` (+ ``machine_id, unit, ingested_at``)."""
    shape = shape or Shape()
    if shape.ts_columns:
        frame = frame.assign(**{TS_JOINED: combine_ts(frame, shape.ts_columns)})
    if shape.layout == "tsdb":
        return LongRows(_tsdb(frame, shape))
    renamed = _rename(
        frame,
        {
            "ts": shape.time_column,
            "machine_id": shape.machine_column,
            "ingested_at": shape.ingested_column,
            "run_id": shape.run_column,
        },
    )
    if shape.run_column and "run_id" not in renamed.columns:
        raise ConfigError(
            f"source rows have no run column {shape.run_column!r}; columns are "
            f"{list(frame.columns)[:20]} — fix run_column (or alias the column in the query)"
        )
    if "ts" not in renamed.columns:
        raise ConfigError(
            f"source rows have no timestamp column {shape.ts_column!r}; columns are "
            f"{list(frame.columns)[:20]} — set ts_column (or ts_columns, or alias the column)"
        )
    if shape.layout == "long":
        return LongRows(_long(renamed, shape))
    if shape.layout != "wide":
        raise ConfigError(f"unknown layout {shape.layout!r}; use long, wide or tsdb")
    # The parts of a joined time are keys, never metrics.
    return _melt(renamed.drop(columns=[c for c in shape.ts_columns if c in renamed.columns]), shape)


def _tsdb(frame: pd.DataFrame, shape: Shape) -> pd.DataFrame:
    value_cols = [c for c in frame.columns if str(c).startswith("measure_value")]
    missing = [c for c in _TSDB if c not in frame.columns] + (
        [] if value_cols else ["measure_value"]
    )
    if missing:
        raise ConfigError(
            "tsdb layout needs columns time, deviceId, measure_name, "
            f"measure_value; missing {missing} — alias them in the query"
        )
    out = frame.rename(columns=_TSDB)
    # Timestream splits values by type (measure_value::double, ::bigint): take the first
    # non-null per row.
    out["value"] = (
        out[value_cols].bfill(axis=1).iloc[:, 0] if len(value_cols) > 1 else out[value_cols[0]]
    )
    out = out.drop(columns=[c for c in value_cols if c != "value"])
    return _rename(out, {"ingested_at": shape.ingested_column, "run_id": shape.run_column})


def _long(frame: pd.DataFrame, shape: Shape) -> pd.DataFrame:
    out = _rename(
        frame,
        {"metric": shape.metric_column, "value": shape.value_column, "unit": shape.unit_column},
    )
    absent = [
        name
        for name, col in (("metric", shape.metric_column), ("value", shape.value_column))
        if name not in out.columns
    ]
    if absent:
        wanted = {"metric": shape.metric_column, "value": shape.value_column}
        raise ConfigError(
            f"long layout: no {' or '.join(f'{a} column {wanted[a]!r}' for a in absent)} in the "
            f"source; columns are {list(frame.columns)[:20]} — set "
            + " / ".join(f"{a}_column" for a in absent)
            + " (or use layout: wide with metrics for one column per metric)"
        )
    if shape.metrics:
        out["metric"] = out["metric"].map(lambda m: shape.metrics.get(m, m) if shape.metrics else m)
    return out


def _numeric(values: pd.Series) -> bool:
    """Whether a column holds at least one number (text numbers with a decimal comma count)."""
    if pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        return bool(values.notna().any())
    present = values.dropna().astype(str).str.strip()
    present = present[present != ""]
    if present.empty:
        return False
    sample = present.head(1000).str.replace(",", ".", regex=False)
    return bool(pd.to_numeric(sample, errors="coerce").notna().any())


def _melt(frame: pd.DataFrame, shape: Shape) -> LongRows:
    ids = [c for c in ("machine_id", "ts", "ingested_at", "run_id") if c in frame.columns]
    skipped: dict[str, str] = {}
    if shape.metrics:
        columns = list(shape.metrics)
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise ConfigError(
                f"wide layout: metric column(s) {absent} not in the source; columns "
                f"are {list(frame.columns)[:30]} — fix 'metrics' in the source config"
            )
        for c in frame.columns:
            if c not in ids and c not in columns:
                skipped[str(c)] = "not listed in metrics"
    else:
        columns = []
        for c in frame.columns:
            if c in ids:
                continue
            if c in shape.skip_columns:
                skipped[str(c)] = "in skip_columns"
            elif not _numeric(frame[c]):
                skipped[str(c)] = "empty" if frame[c].isna().all() else "not numeric"
            else:
                columns.append(c)
    if not columns:
        raise ConfigError(
            "wide layout: the source has no metric columns besides the keys"
            + (
                f" (skipped: {', '.join(f'{c} ({why})' for c, why in skipped.items())})"
                if skipped
                else ""
            )
            + " — list them in 'metrics'"
        )
    if skipped and not shape.metrics:
        logger.info(
            "wide source: ingesting %s; skipped %s",
            columns,
            ", ".join(f"{c} ({why})" for c, why in skipped.items()),
        )
    n = len(frame)
    # Stack column by column (metric-major) so each metric keeps the source's row order.
    parts = {c: np.tile(frame[c].to_numpy(), len(columns)) for c in ids}
    values = (
        np.concatenate([frame[c].to_numpy(dtype=object) for c in columns])
        if n
        else np.array([], dtype=object)
    )
    names = np.repeat([(shape.metrics or {}).get(c, str(c)) for c in columns], n)
    return LongRows(pd.DataFrame({**parts, "metric": names, "value": values}), skipped)


def to_wide(long: pd.DataFrame, *, metrics: list[str] | None = None) -> pd.DataFrame:
    """Long telemetry → one row per (machine_id, ts), one column per metric (first value wins)."""
    keys = [c for c in ("machine_id", "ts") if c in long.columns]
    rows = long if metrics is None else long[long["metric"].isin(metrics)]
    wide = rows.groupby([*keys, "metric"], sort=False)["value"].first().unstack("metric")
    wide.columns.name = None
    return wide.reset_index().sort_values(keys, kind="stable").reset_index(drop=True)
