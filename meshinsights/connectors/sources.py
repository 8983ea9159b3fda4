"""From a machine's source config to rows: the connector it needs, its queries and parameters.

Every query gets the same bound parameters — ``machine_id``, ``start`` and ``end`` (naive
UTC datetimes for SQL, typed ``datetime`` literals for ADX) plus the source's own ``params``;
the late-data query also gets ``watermark`` and ``since``. ADX also receives each one as
``p_<name>`` (declare those: a KQL parameter named like a column is shadowed by it). Nothing
is ever formatted into a query string.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from meshinsights.config import ADXSource, FileSource, MachineConfig, SourceOptions
from meshinsights.connectors.base import DBConnector, PluginManager, default_manager
from meshinsights.connectors.files import FileConnector
from meshinsights.connectors.retry import with_retry
from meshinsights.credentials import env_resolver
from meshinsights.model import Window
from meshinsights.normalize import to_utc
from meshinsights.normalize.layout import DeviceMap, LongRows, Shape, to_long
from meshinsights.normalize.timestamps import TimeFormat, parse_times

__all__ = ["SourceAccess", "Resolver", "shape_of", "times_of", "devices_of"]

logger = logging.getLogger(__name__)

Resolver = Callable[[str], str]
_NO_TIMES = pd.Series([], dtype="datetime64[us, UTC]")


def shape_of(source: SourceOptions) -> Shape:
    """How the source lays out its rows, from its config."""
    return Shape(
        layout=source.layout,
        ts_column="time" if source.layout == "tsdb" else source.ts_column,
        ts_columns=tuple(source.ts_columns or ()),
        machine_column=source.machine_column,
        ingested_column=getattr(source, "ingested_column", None),
        run_column=source.run_column,
        metrics=source.metrics or None,
        skip_columns=tuple(source.skip_columns),
        metric_column=source.metric_column,
        value_column=source.value_column,
        unit_column=source.unit_column,
    )


def times_of(source: SourceOptions) -> TimeFormat:
    """How the source writes its timestamps, from its config."""
    return TimeFormat(source.timezone, source.ts_format, source.ts_unit, source.ts_dayfirst)


def devices_of(source: SourceOptions) -> DeviceMap:
    """How the source's device values map to machine ids, from its config."""
    return DeviceMap(tuple(source.device or ()), source.device_template)


def _has_devices(source: SourceOptions) -> bool:
    return bool(source.machine_column or source.device or source.device_template)


@dataclass(frozen=True)
class SourceAccess:
    """How sources are reached: a credential resolver, a connector pool, the config folder."""

    resolver: Resolver = env_resolver
    manager: PluginManager | None = None
    base_dir: Path | None = None  # relative file paths start here (default: the config dir)

    def connector(self, machine: MachineConfig) -> DBConnector:
        """The pooled connector of this machine's source, chosen by its ``type`` (a built-in
        or a plugin: the same path), built from the source options by the connector class."""
        manager, source = self.manager or default_manager(), machine.source
        cls = manager.connector_class(source.type)
        config = cls.config_from_source(source, machine_id=machine.machine_id, access=self)
        return manager.get(source.type, **config)

    def _run(
        self, machine: MachineConfig, query: str, params: dict[str, Any], what: str
    ) -> pd.DataFrame:
        if isinstance(machine.source, ADXSource):
            # In KQL a parameter named like a column (machine_id) would be shadowed by the
            # column: every value is also bound as p_<name> for queries to declare instead.
            params = {**params, **{f"p_{k}": v for k, v in params.items()}}
        conn = self.connector(machine)
        return with_retry(
            lambda: conn.query(query, params), what=f"{what} for {machine.machine_id}"
        )

    def telemetry(self, machine: MachineConfig, window: Window) -> LongRows:
        """Raw telemetry rows of one machine-window, made long (see ``normalize.layout``)."""
        source = machine.source
        query = getattr(source, "query", "")  # a file source has none
        raw = self._run(machine, query, params(machine, window), "source query")
        rows = to_long(raw, shape_of(source))
        if _has_devices(source) and "machine_id" in rows.frame.columns:
            rows.frame["machine_id"] = devices_of(source).machine_ids(
                rows.frame["machine_id"], machine.machine_id
            )
        return rows

    def events(self, machine: MachineConfig, window: Window) -> pd.DataFrame | None:
        """Raw events/alarms/logs of one machine-window, or None if the source has none."""
        query = getattr(machine.source, "events_query", None)
        if not query:
            return None
        return self._run(machine, query, params(machine, window), "events query")

    def late_times(
        self, machine: MachineConfig, window: Window, watermark: pd.Timestamp, since: datetime
    ) -> pd.Series:
        """Times (UTC) of rows ingested after ``watermark`` (the source filters by time)."""
        source = machine.source
        if isinstance(source, FileSource):
            if not source.ingested_column:
                return _NO_TIMES
            conn = self.connector(machine)
            assert isinstance(conn, FileConnector)
            frame, anchor = conn.rows(_devices_param(machine))
            ingested = to_utc(frame[source.ingested_column], "UTC")
            return anchor[ingested > watermark].reset_index(drop=True)
        late_query = getattr(source, "late_query", None)
        if not late_query:
            return _NO_TIMES
        bound = params(
            machine,
            window,
            since=since.replace(tzinfo=None),
            watermark=watermark.tz_convert("UTC").tz_localize(None).to_pydatetime(),
        )
        found = self._run(machine, late_query, bound, "late-data query")
        if found.empty:
            return _NO_TIMES
        column = found["ts"] if "ts" in found.columns else found.iloc[:, 0]
        return parse_times(column, times_of(source)).ts.dropna()


def _devices_param(machine: MachineConfig) -> list[str] | None:
    source = machine.source
    if not _has_devices(source):
        return None
    return devices_of(source).values_for(machine.machine_id)


def params(machine: MachineConfig, window: Window, **extra: Any) -> dict[str, Any]:
    """The bound parameters of a machine-window query (naive UTC datetimes).

    With a device column, ``device_id`` is this machine's (first) device value; a file source
    gets ``devices``, every value of this machine.
    """
    source = machine.source
    devices = _devices_param(machine)
    bound: dict[str, Any] = {
        **getattr(source, "params", {}),
        "machine_id": machine.machine_id,
        "start": window.start.replace(tzinfo=None),
        "end": window.end.replace(tzinfo=None),
        **extra,
    }
    if devices is not None:
        if isinstance(source, FileSource):
            bound["devices"] = devices
        else:
            bound["device_id"] = devices[0]
    return bound
