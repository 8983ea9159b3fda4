"""One machine's config: its pipeline, its source (any connector, by name) and its schedule.

A source is ``{type: <name>, ...options}``. ``<name>`` is a built-in (``sql``, ``adx``,
``file``) or any entry point in the ``meshinsights.connectors`` group; the connector class
declares its options as a pydantic model (``options = MySource``, a :class:`SourceOptions`
subclass), and the machine file is validated against it when configs load — an error names
file, field, value and fix exactly as for the built-ins.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from meshinsights.config.pipelines import StepConfig, _Model, _valid, check_span
from meshinsights.model import check_machine_id

__all__ = [
    "SQLSource",
    "ADXSource",
    "FileSource",
    "MachineConfig",
    "SourceOptions",
    "SOURCE_TYPES",
    "SHAPE_KEYS",
    "source_model",
    "GROUP_MARK",
    "group_dag_id",
]

# No '.': a group's DAG id must give its name back (machine ids' '.' becomes '_').
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}")


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as 'UTC', 'Europe/Rome' or "
            "'America/New_York'"
        ) from None
    return value


class _SourceShape(_Model):
    """Options every source shares: layout, timestamps, device ids, units, late data, limits."""

    #: Options holding a file or folder path: a relative one is made absolute against the
    #: config folder when configs load, so every reader resolves it the same way.
    path_fields: ClassVar[tuple[str, ...]] = ()

    type: str = Field(description="the connector: sql, adx, file or a plugin's name")
    layout: Literal["long", "wide", "tsdb"] = Field(
        "long",
        description="long (ts, metric, value), wide (a column per metric) or tsdb "
        "(time, deviceId, measure_name, measure_value)",
    )
    metrics: dict[str, str] = Field(
        default_factory=dict,
        description="wide: the columns to ingest, as a list or {column: metric name} (default: "
        "every numeric, non-empty column); long: renames of metric names",
    )
    skip_columns: list[str] = Field(
        default_factory=list, description="wide layout without metrics: columns never ingested"
    )
    metric_column: str = Field("metric", description="long layout: the column naming the metric")
    value_column: str = Field("value", description="long layout: the column holding the value")
    unit_column: str = Field("unit", description="long layout: the column holding the unit")
    ts_column: str = Field("ts", description="the column holding the timestamp")
    ts_columns: list[str] | None = Field(
        None,
        min_length=2,
        description="a timestamp split over several columns (e.g. [Date, Time]), joined with a "
        "space; ts_format then describes the joined text",
    )
    timezone: str = Field("UTC", description="zone of naive source timestamps (IANA name)")
    ts_format: str | None = Field(
        None, description="strftime format of text timestamps (default: ISO 8601 per value)"
    )
    ts_unit: Literal["s", "ms", "us", "ns"] | None = Field(
        None,
        description="unit of epoch-number timestamps (default: chosen from their magnitude when "
        "plainly epochs, and reported)",
    )
    ts_dayfirst: bool | None = Field(
        None, description="non-ISO dates without ts_format: day before month (10/03 = 10 March)"
    )
    machine_column: str | None = Field(
        None, description="the column holding the device id, if the source holds several devices"
    )
    device: list[str] | None = Field(
        None,
        description="this machine's value(s) in machine_column (default: the machine id itself, "
        "or what device_template says)",
    )
    device_template: str | None = Field(
        None,
        description="machine id of a device value, e.g. 'node-{value}' (machine node-3 reads "
        "the rows whose machine_column is 3)",
    )
    run_column: str | None = Field(
        None,
        description="the column holding the run id (a robot run, a batch, a test): kept as "
        "run_id in every table; runs may overlap in time, the checks apply within a run",
    )
    units: dict[str, str] = Field(
        default_factory=dict,
        description="unit of each metric in the source; converted to the rule's unit",
    )
    late_lookback: str = Field(
        "31D", description="how far back late rows can reopen windows (e.g. 31D)"
    )
    max_quarantine_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a window that quarantines more than this share of the rows read fails, "
        "naming the cause (1: never)",
    )

    @field_validator("late_lookback")
    @classmethod
    def _late_lookback(cls, v: str) -> str:
        return check_span(v, "late_lookback")

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_list(cls, v: Any) -> Any:
        # A list is the common case: ingest exactly these columns under their own names.
        return {str(c): str(c) for c in v} if isinstance(v, list) else v

    @field_validator("device", mode="before")
    @classmethod
    def _device_list(cls, v: Any) -> Any:
        if v is None:
            return v
        values = v if isinstance(v, list) else [v]
        return [str(int(x)) if isinstance(x, float) and x.is_integer() else str(x) for x in values]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)

    @field_validator("device_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None and v.count("{value}") != 1:
            raise ValueError(
                f"device_template {v!r} must contain {{value}} exactly once, e.g. 'node-{{value}}'"
            )
        return v

    @model_validator(mode="after")
    def _one_device_rule(self) -> _SourceShape:
        if self.device and self.device_template:
            raise ValueError("give device or device_template, not both")
        if (
            (self.device or self.device_template)
            and not self.machine_column
            and self.layout != "tsdb"
        ):
            raise ValueError("device/device_template need machine_column (the device id column)")
        return self


class SQLSource(_SourceShape):
    """A SQL database (SQLite, MySQL/MariaDB, PostgreSQL) read through SQLAlchemy."""

    type: Literal["sql"]
    conn_id: str = Field(description="Airflow Connection id (or AIRFLOW_CONN_<ID> variable)")
    query: str = Field(
        description="parameterized SQL; :machine_id, :start and :end are bound per run"
    )
    events_query: str | None = Field(
        None, description="optional query for events/alarms/logs (same parameters)"
    )
    late_query: str | None = Field(
        None,
        description="optional: return the ts of rows ingested after :watermark with "
        ":since <= ts < :start; their windows are reprocessed (late data)",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="extra bound parameters")


class ADXSource(_SourceShape):
    """Azure Data Explorer (Kusto), queried with declared parameters."""

    type: Literal["adx"]
    conn_id: str = Field(description="Airflow Connection id (or AIRFLOW_CONN_<ID> variable)")
    database: str = Field(description="Kusto database")
    query: str = Field(description="KQL; declare parameters, e.g. 'declare query_parameters(...)'")
    events_query: str | None = Field(None, description="optional KQL for events/alarms/logs")
    late_query: str | None = Field(
        None,
        description="optional KQL returning ts of rows ingested after watermark with "
        "since <= ts < start",
    )
    params: dict[str, Any] = Field(default_factory=dict)


class FileSource(_SourceShape):
    """CSV or Parquet files (a file or a folder)."""

    path_fields: ClassVar[tuple[str, ...]] = ("path",)

    type: Literal["file"]
    path: str = Field(description="file or folder; relative paths are relative to the config dir")
    format: Literal["csv", "parquet"] = "csv"
    layout: Literal["long", "wide", "tsdb"] = "wide"
    ts_column: str = Field("timestamp", description="the column holding the timestamp")
    separator: str = ","
    decimal: str = "."
    header: bool = True
    names: list[str] | None = Field(None, description="column names when header is false")
    na_values: list[Any] = Field(default_factory=list, description="values that mean missing")
    encoding: str = "utf-8"
    ingested_column: str | None = Field(
        None, description="column holding the ingestion time; enables late-data reprocessing"
    )


#: The base of every source's options model: a plugin's model subclasses it (and declares
#: ``type``), so layout, timestamps, devices, units and limits work for every connector.
SourceOptions = _SourceShape

#: The built-in source models by ``type``. They are the options of the built-in connectors
#: (``SQLConnector.options`` is ``SQLSource`` ...) kept here so that loading configs — which
#: Airflow does on every DAG parse — never imports pandas, SQLAlchemy or the Kusto client.
SOURCE_TYPES: dict[str, type[_SourceShape]] = {
    "sql": SQLSource,
    "adx": ADXSource,
    "file": FileSource,
}
#: Options every source type has (a ``_defaults.yaml`` of another type may set these).
SHAPE_KEYS = frozenset(_SourceShape.model_fields) - {"type"}
_CONNECTORS = "meshinsights.connectors"


_plugins: dict[str, Any] | None = None


def _plugin_types(*, refresh: bool = False) -> dict[str, Any]:
    """Connector entry points by name, read once per process (a fleet's configs load fast)."""
    global _plugins
    if _plugins is None or refresh:
        _plugins = {ep.name: ep for ep in entry_points(group=_CONNECTORS)}
    return _plugins


def source_model(kind: Any) -> type[_SourceShape]:
    """The options model of source type ``kind``: a built-in, else the ``options`` of the
    connector an entry point of that name registers. ValueError names the fix."""
    if not isinstance(kind, str) or not kind:
        raise ValueError("source needs a type: one of " + ", ".join(sorted(SOURCE_TYPES)))
    if kind in SOURCE_TYPES:
        return SOURCE_TYPES[kind]
    plugins = _plugin_types()
    if kind not in plugins:
        plugins = _plugin_types(refresh=True)  # installed since the first look?
    if kind not in plugins:
        known = sorted({*SOURCE_TYPES, *plugins})
        close = difflib.get_close_matches(kind, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown source type {kind!r}; {hint}installed: {', '.join(known)} — install the "
            f"package whose entry point ({_CONNECTORS}) provides it"
        )
    try:
        connector = plugins[kind].load()
    except Exception as exc:  # a broken plugin is this machine's error, not everyone's
        raise ValueError(
            f"source type {kind!r}: its connector {plugins[kind].value} cannot be imported "
            f"({type(exc).__name__}: {exc}); reinstall or fix that package"
        ) from None
    model = getattr(connector, "options", None)
    if not (isinstance(model, type) and issubclass(model, _SourceShape)):
        raise ValueError(
            f"source type {kind!r}: connector {plugins[kind].value} declares no options model; "
            "set `options = <a SourceOptions subclass>` on the class"
        )
    return model


class MachineConfig(_Model):
    """One machine: which pipeline, where its data comes from, and when it runs."""

    machine_id: str = Field(description="unique id; becomes part of the DAG id")
    pipeline: str = Field(description="name of a template in configs/pipelines/")
    source: SerializeAsAny[SourceOptions] = Field(
        description="where the data comes from: {type: <connector>, ...its options}"
    )
    schedule: str | None = Field(
        "@daily", description="cron or preset; the data interval is the window"
    )
    start_date: date = Field(description="first window the schedule covers")
    catchup: bool = False
    timezone: str = Field("UTC", description="machine's local zone, for display")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-step param overrides: {step_id: {param: value}}"
    )
    tags: list[str] = Field(default_factory=list)
    owner: str = "meshinsights"
    retries: int = Field(2, ge=0, description="Airflow task retries (with exponential backoff)")
    alert_conn_id: str | None = Field(None, description="Connection holding a failure webhook URL")
    group: str | None = Field(
        None,
        description="schedule this machine in its group's one DAG (the grouped grain for big "
        "fleets) instead of a DAG of its own; set it in the machine file, on its own line",
    )
    paused: bool = Field(
        False, description="a group member the group's DAG runs leave out (see `group`)"
    )

    @field_validator("machine_id")
    @classmethod
    def _mid(cls, v: str) -> str:
        return _valid(check_machine_id, v)

    @field_validator("group")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        if v is None or _GROUP_NAME.fullmatch(v):
            return v
        raise ValueError(
            f"invalid group {v!r}: use letters, digits, '_', '-' (starting with a "
            "letter or digit, at most 128 characters)"
        )

    @model_validator(mode="after")
    def _paused_needs_group(self) -> MachineConfig:
        if self.paused and self.group is None:
            raise ValueError(
                "paused: true applies to a group member (its group's DAG leaves it out); "
                "pause an ungrouped machine's own DAG with the toggle in the Airflow UI"
            )
        return self

    @field_validator("source", mode="wrap")
    @classmethod
    def _source_by_type(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # The options model is chosen by name, so a plugin's type is as selectable as the
        # built-ins; its field errors keep their location (source.<field>).
        if isinstance(v, dict):
            return source_model(v.get("type")).model_validate(v)
        if isinstance(v, _SourceShape):
            return v
        return handler(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        from meshinsights.schedules import check_schedule

        return check_schedule(v)

    @property
    def dag_id(self) -> str:
        """This machine's DAG: its own, or its group's (``<pipeline>__group__<group>``)."""
        if self.group is not None:
            return group_dag_id(self.pipeline, self.group)
        return f"{self.pipeline}__{self.machine_id}".replace(".", "_")

    def params_for(self, step_cfg: StepConfig) -> dict[str, Any]:
        return {**step_cfg.params, **self.overrides.get(step_cfg.id, {})}


#: What separates a pipeline from a group name in a grouped DAG's id.
GROUP_MARK = "__group__"


def group_dag_id(pipeline: str, group: str) -> str:
    """The DAG id of a pipeline's machine group."""
    return f"{pipeline}{GROUP_MARK}{group}"
