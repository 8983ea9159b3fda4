"""Config schema and loader: pipeline templates and per-machine files, validated by pydantic.

``configs/pipelines/<name>.yaml`` is a template (ordered steps, params, branch rules,
validation rules); ``configs/machines/<machine>.yaml`` is one machine (source, schedule,
overrides). ``configs/machines/_defaults.yaml``, if present, is deep-merged under every
machine. Every problem is reported with the file, the field, the bad value and the fix;
one bad file never hides the others.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from meshinsights.errors import ConfigError
from meshinsights.model import check_machine_id, check_table_name

__all__ = [
    "Condition",
    "When",
    "MetricRule",
    "EventRules",
    "SinkConfig",
    "StepConfig",
    "PipelineConfig",
    "SQLSource",
    "ADXSource",
    "FileSource",
    "MachineConfig",
    "LoadedConfigs",
    "load_configs",
    "load_pipeline",
    "load_machine",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _valid(check: Any, value: str) -> str:
    # pydantic reports ValueError with the field's location; ConfigError would escape it.
    try:
        return check(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


# ---------------------------------------------------------------- pipeline templates


class Condition(_Model):
    """One test against a table of the current machine-window (used by branch rules)."""

    table: str = Field(description="artifact table of this pipeline to look at")
    min_rows: int | None = Field(
        None, description="true when the window has at least this many rows"
    )
    column: str | None = Field(None, description="column whose values the tests below look at")
    in_: list[Any] | None = Field(
        None, alias="in", description="true when any value is in this list"
    )
    gt: float | None = Field(None, description="true when any value is greater than this")
    lt: float | None = Field(None, description="true when any value is less than this")

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        return _valid(check_table_name, v)

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        value_tests = [t for t in (self.in_, self.gt, self.lt) if t is not None]
        if self.min_rows is None and not value_tests:
            raise ValueError("a condition needs min_rows, or column with one of in/gt/lt")
        if value_tests and self.column is None:
            raise ValueError("in/gt/lt need 'column' naming the column to test")
        return self


class When(_Model):
    """A branch rule: run the step only if any (or all) of the conditions hold."""

    any: list[Condition] | None = Field(None, description="true if at least one holds")
    all: list[Condition] | None = Field(None, description="true if every one holds")

    @model_validator(mode="after")
    def _exactly_one(self) -> When:
        if (self.any is None) == (self.all is None):
            raise ValueError("give exactly one of 'any' or 'all'")
        return self

    def tables(self) -> set[str]:
        return {c.table for c in (self.any or self.all or [])}


class MetricRule(_Model):
    """Validation for one metric; failing rows go to quarantine with the rule's name."""

    required: bool = Field(False, description="the window must contain this metric")
    min: float | None = Field(None, description="smallest plausible value")
    max: float | None = Field(None, description="largest plausible value")
    max_rate_per_min: float | None = Field(
        None, description="largest plausible absolute change per minute between samples"
    )
    unit: str | None = Field(None, description="canonical unit; sources in other units convert")


class EventRules(_Model):
    """Validation for events/alarms/logs; failing rows go to quarantine with the rule's name."""

    kinds: list[str] = Field(["event", "alarm", "log"], description="allowed kinds")
    severities: list[str] | None = Field(None, description="allowed severities (default: any)")
    codes: dict[str, list[str]] = Field(
        default_factory=dict, description="allowed codes per kind; kinds not listed accept any"
    )


class SinkConfig(_Model):
    """An edge writer for a step's output rows, run after the step's Delta commit."""

    type: Literal["alert_thresholds"] = Field(
        description="alert_thresholds: upsert into the alert database (history kept)"
    )
    conn_id: str = Field("meshinsights_alerts", description="Airflow Connection id of the target")
    table: str = Field("alert_thresholds", description="target table; history in <table>_history")


class StepConfig(_Model):
    """One step of a pipeline template."""

    id: str = Field(description="task id in the DAG; unique within the pipeline")
    uses: str | None = Field(None, description="registered step name (default: id)")
    params: dict[str, Any] = Field(default_factory=dict, description="step parameters")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="map a step input to another table: {input: table}"
    )
    output: str | None = Field(None, description="output table (default: the step's own)")
    when: When | None = Field(None, description="branch rule; the step runs only if it holds")
    lookback: str | None = Field(
        None,
        description="read inputs over [window end - lookback, window end), e.g. '90D'; the "
        "output is still written for the run window only",
    )
    sink: SinkConfig | None = Field(
        None, description="also write the step's output rows to this sink after the commit"
    )

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import re

        if not re.fullmatch(r"\d+(min|h|D|W)", v):
            raise ValueError(f"lookback {v!r} must look like 90D, 12h, 30min or 2W")
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _valid(check_table_name, v)

    @field_validator("output")
    @classmethod
    def _output(cls, v: str | None) -> str | None:
        return v if v is None else _valid(check_table_name, v)

    @property
    def step_name(self) -> str:
        return self.uses or self.id


class PipelineConfig(_Model):
    """A pipeline template shared by many machines."""

    name: str = Field(description="pipeline name; also the store namespace of its tables")
    description: str = ""
    steps: list[StepConfig] = Field(description="the steps in the order they are listed")
    validation: dict[str, MetricRule] = Field(
        default_factory=dict, description="per-metric validation rules applied at ingest"
    )
    events: EventRules = Field(
        default_factory=EventRules, description="validation of events/alarms/logs at ingest"
    )
    source_window: str | None = Field(
        None, description="how far back ingest reads (e.g. '90D'); default: the run window"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _valid(check_table_name, v)

    @model_validator(mode="after")
    def _unique_ids(self) -> PipelineConfig:
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique; repeated: {dupes}")
        return self


# ---------------------------------------------------------------- machines and sources


class _SourceShape(_Model):
    """Options every source shares: layout, time zone, units, late-data lookback."""

    layout: Literal["long", "wide", "tsdb"] = Field(
        "long",
        description="long (ts, metric, value), wide (a column per metric) or tsdb "
        "(time, deviceId, measure_name, measure_value)",
    )
    metrics: dict[str, str] = Field(
        default_factory=dict, description="wide layout: {column: metric name} (default: all)"
    )
    timezone: str = Field("UTC", description="zone of naive source timestamps")
    ts_format: str | None = Field(None, description="strftime format of text timestamps")
    units: dict[str, str] = Field(
        default_factory=dict,
        description="unit of each metric in the source; converted to the rule's unit",
    )
    late_lookback: str = Field(
        "31D",
        pattern=r"^\d+(min|h|D|W)$",
        description="how far back late rows can reopen windows (e.g. 31D)",
    )


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

    type: Literal["file"]
    path: str = Field(description="file or folder; relative paths are relative to the config dir")
    format: Literal["csv", "parquet"] = "csv"
    layout: Literal["long", "wide", "tsdb"] = "wide"
    separator: str = ","
    decimal: str = "."
    header: bool = True
    names: list[str] | None = Field(None, description="column names when header is false")
    na_values: list[Any] = Field(default_factory=list, description="values that mean missing")
    encoding: str = "utf-8"
    ts_column: str = "timestamp"
    machine_column: str | None = Field(None, description="column holding the machine id, if any")
    ingested_column: str | None = Field(
        None, description="column holding the ingestion time; enables late-data reprocessing"
    )


Source = Annotated[SQLSource | ADXSource | FileSource, Field(discriminator="type")]


class MachineConfig(_Model):
    """One machine: which pipeline, where its data comes from, and when it runs."""

    machine_id: str = Field(description="unique id; becomes part of the DAG id")
    pipeline: str = Field(description="name of a template in configs/pipelines/")
    source: Source
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

    @field_validator("machine_id")
    @classmethod
    def _mid(cls, v: str) -> str:
        return _valid(check_machine_id, v)

    @property
    def dag_id(self) -> str:
        return f"{self.pipeline}__{self.machine_id}".replace(".", "_")

    def params_for(self, step_cfg: StepConfig) -> dict[str, Any]:
        return {**step_cfg.params, **self.overrides.get(step_cfg.id, {})}


# ---------------------------------------------------------------- loading


@dataclass
class LoadedConfigs:
    """What a config folder holds: valid pipelines and machines, and one error per bad file."""

    root: Path
    pipelines: dict[str, PipelineConfig] = field(default_factory=dict)
    machines: dict[str, MachineConfig] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def machine(self, machine_id: str) -> MachineConfig:
        if machine_id in self.machines:
            return self.machines[machine_id]
        if any(machine_id in msg for msg in self.errors.values()):
            bad = "; ".join(self.errors.values())
            raise ConfigError(f"machine {machine_id!r} has an invalid config: {bad}")
        close = difflib.get_close_matches(machine_id, self.machines, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"no machine {machine_id!r} in {self.root / 'machines'}.{hint} "
            f"Known: {', '.join(sorted(self.machines)) or 'none'}"
        )

    def pipeline_of(self, machine: MachineConfig) -> PipelineConfig:
        return self.pipelines[machine.pipeline]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _explain(path: Path, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        value = err.get("input")
        hint = ""
        if err["type"] == "extra_forbidden":
            hint = " — remove it or check its spelling"
        elif err["type"] == "missing":
            hint = " — add it"
        shown = "" if err["type"] == "missing" else f" (got {value!r:.80})"
        parts.append(f"field {loc}: {msg}{shown}{hint}")
    return f"{path}: " + "; ".join(parts)


def load_pipeline(path: Path) -> PipelineConfig:
    """Parse one pipeline template; raises ConfigError naming the file and field."""
    try:
        cfg = PipelineConfig.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from None
    if cfg.name != path.stem:
        raise ConfigError(
            f"{path}: field name: {cfg.name!r} must match the file name {path.stem!r}"
        )
    return cfg


def load_machine(path: Path, defaults: dict[str, Any] | None = None) -> MachineConfig:
    """Parse one machine file (merged over ``_defaults.yaml``); raises ConfigError."""
    raw = _deep_merge(defaults or {}, _read_yaml(path))
    try:
        return MachineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from None


def _check_steps(path: Path, pipeline: PipelineConfig) -> None:
    # Imported here: validating step names loads the step library (pandas), which the
    # lightweight config schema itself does not need.
    from meshinsights.steps.registry import get_step

    produced = {"telemetry", "events", "quarantine"}
    for s in pipeline.steps:
        try:
            spec = get_step(s.step_name)
            spec.bind_params(s.params)
        except Exception as exc:  # StepError: unknown step or parameter
            raise ConfigError(f"{path}: field steps.{s.id}: {exc}") from None
        for arg in spec.inputs:
            table = s.inputs.get(arg, arg)
            if table not in produced and arg not in spec.optional:
                raise ConfigError(
                    f"{path}: field steps.{s.id}: input table {table!r} is produced by no earlier "
                    f"step; available: {sorted(produced)} — reorder the steps or map the input"
                )
        if s.when is not None:
            unknown = s.when.tables() - produced
            if unknown:
                raise ConfigError(
                    f"{path}: field steps.{s.id}.when: table(s) {sorted(unknown)} are produced by "
                    "no earlier step"
                )
        produced.add(s.output or spec.output)


def load_configs(root: Path | str, *, check_steps: bool = True) -> LoadedConfigs:
    """Load every pipeline and machine under ``root``; collect one error per bad file."""
    root = Path(root)
    out = LoadedConfigs(root=root)
    if not root.is_dir():
        out.errors[str(root)] = (
            f"{root}: config folder not found; set MESHINSIGHTS_CONFIGS or --configs"
        )
        return out
    for path in sorted((root / "pipelines").glob("*.yaml")):
        try:
            pipeline = load_pipeline(path)
            if check_steps:
                _check_steps(path, pipeline)
            out.pipelines[pipeline.name] = pipeline
        except ConfigError as exc:
            out.errors[str(path)] = str(exc)
    defaults_path = root / "machines" / "_defaults.yaml"
    defaults: dict[str, Any] = {}
    if defaults_path.exists():
        try:
            defaults = _read_yaml(defaults_path)
        except ConfigError as exc:
            out.errors[str(defaults_path)] = str(exc)
    seen: dict[str, Path] = {}
    for path in sorted((root / "machines").glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        try:
            machine = load_machine(path, defaults)
            if machine.pipeline not in out.pipelines:
                close = difflib.get_close_matches(machine.pipeline, out.pipelines, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{path}: field pipeline: no valid pipeline {machine.pipeline!r} in "
                    f"{root / 'pipelines'}{hint} (known: {', '.join(sorted(out.pipelines))})"
                )
            if machine.machine_id in seen:
                raise ConfigError(
                    f"{path}: field machine_id: {machine.machine_id!r} is already defined in "
                    f"{seen[machine.machine_id]}; machine ids must be unique"
                )
            seen[machine.machine_id] = path
            out.machines[machine.machine_id] = machine
        except ConfigError as exc:
            out.errors[str(path)] = str(exc)
    return out
