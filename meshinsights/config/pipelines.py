"""Pipeline templates: ordered steps, params, branch rules and validation rules."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from meshinsights.errors import ConfigError
from meshinsights.model import check_table_name

__all__ = [
    "Condition",
    "When",
    "MetricRule",
    "EventRules",
    "SinkConfig",
    "StepConfig",
    "PipelineConfig",
    "check_span",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


#: Longest span a lookback, late_lookback or retention may name: a century (longer ones reach
#: before year 1 from a window end and are surely a typo: 999999D).
MAX_SPAN_DAYS = 36_525

_SPAN = re.compile(r"(\d+)(min|h|D|W)")
_SPAN_DAYS = {"min": 1 / 1440, "h": 1 / 24, "D": 1, "W": 7}


def check_span(value: str, what: str) -> str:
    """A span like ``90D``, ``12h``, ``30min`` or ``2W``, positive and at most a century."""
    match = _SPAN.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{what} {value!r} must look like 90D, 12h, 30min or 2W")
    days = int(match.group(1)) * _SPAN_DAYS[match.group(2)]
    if days <= 0 or days > MAX_SPAN_DAYS:
        raise ValueError(
            f"{what} {value!r} must be longer than 0 and at most {MAX_SPAN_DAYS}D (a century)"
        )
    return value


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
    evolve: bool = Field(
        False,
        description="accept new output columns (Delta schema evolution; logged in the commit)",
    )

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return check_span(v, "lookback")

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
    window: Literal["time", "run"] = Field(
        "time",
        description="what a step runs over: time (the schedule's windows) or run (each run "
        "of the machine whole, partitioned by machine and run; the source names run_column)",
    )
    steps: list[StepConfig] = Field(description="the steps in the order they are listed")
    validation: dict[str, MetricRule] = Field(
        default_factory=dict, description="per-metric validation rules applied at ingest"
    )
    events: EventRules = Field(
        default_factory=EventRules, description="validation of events/alarms/logs at ingest"
    )
    retention: dict[str, str] = Field(
        default_factory=dict,
        description="how long each table keeps rows, e.g. {default: 365D, telemetry: 90D}; "
        "'meshinsights maintenance retain' (and the maintenance DAG) deletes older rows",
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "source_window" in data:
            raise ValueError(
                "source_window was removed (it never changed what ingest read); delete it. "
                "How far back late rows reach is the machine source's late_lookback, how far "
                "back a step reads is the step's lookback"
            )
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _valid(check_table_name, v)

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: dict[str, str]) -> dict[str, str]:
        for table, keep in v.items():
            if table != "default":
                _valid(check_table_name, table)
            check_span(keep, f"retention of {table}")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> PipelineConfig:
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique; repeated: {dupes}")
        return self
