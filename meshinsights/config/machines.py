"""One machine's config: its pipeline, its source (SQL, ADX, files) and its schedule."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from meshinsights.config.pipelines import StepConfig, _Model, _valid
from meshinsights.model import check_machine_id

__all__ = ["SQLSource", "ADXSource", "FileSource", "MachineConfig"]


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
