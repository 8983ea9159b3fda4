"""File and ADX sources through the real pipeline: NAB data (with its clock rollback), Kusto."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.config import LoadedConfigs, MachineConfig, PipelineConfig, load_configs
from meshinsights.engine.ingest import run_incremental, run_ingest
from meshinsights.engine.runner import run_pipeline
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import FIXTURES
from tests.connectors.fake_kusto import FakeKusto

NAB = FIXTURES / "nab"
NAB_ROWS = 22_695
PIPELINE_YAML = """\
name: nab
description: NAB machine temperature through the file connector.
validation:
  machine_temperature: {min: 0, max: 120}
steps:
  - id: average_temperature
    params: {metric: machine_temperature, freq: 1h}
"""
# NAB timestamps are local wall time with no zone given; read as UTC here.
MACHINE_YAML = """\
machine_id: nab-machine-temp
pipeline: nab
start_date: 2013-12-02
schedule: "@daily"
source:
  type: file
  path: data/machine_temperature_system_failure.csv
  layout: wide
  ts_column: timestamp
  ts_format: "%Y-%m-%d %H:%M:%S"
  metrics: {value: machine_temperature}
"""


@pytest.fixture
def nab_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedConfigs:
    """A config folder with the NAB machine (a relative file path) and its pipeline."""
    root = tmp_path / "configs"
    for sub in ("pipelines", "machines", "data"):
        (root / sub).mkdir(parents=True)
    (root / "pipelines" / "nab.yaml").write_text(PIPELINE_YAML)
    (root / "machines" / "nab-machine-temp.yaml").write_text(MACHINE_YAML)
    shutil.copy(NAB / "machine_temperature_system_failure.csv", root / "data")
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(root))
    configs = load_configs(root)
    assert configs.errors == {}
    return configs


def test_nab_file_accounting_holds_over_the_whole_file(nab_configs: LoadedConfigs,
                                                       store: DeltaStore) -> None:
    machine = nab_configs.machine("nab-machine-temp")
    everything = Window.parse("2013-12-01", "2014-03-01")
    s = run_ingest(machine, nab_configs.pipeline_of(machine), everything, store, run_id="nab")
    assert s["rows_in"] == NAB_ROWS
    assert s["rows_in"] == s["rows_clean"] + s["rows_quarantined"] + s["duplicates_removed"]
    assert s["quarantine_rules"] == {"clock_rollback": 12} and s["duplicates_removed"] == 0
    q = store.read_all("nab", "quarantine")
    assert set(q["ts"].dt.strftime("%Y-%m-%d %H")) == {"2014-01-07 02"}
    replayed = [json.loads(o)["value"] for o in q.sort_values("ts")["original"]]
    source = pd.read_csv(NAB / "machine_temperature_system_failure.csv")
    assert replayed == source["value"].iloc[10149:10161].tolist()  # the second 02:00–02:55
    clean = store.read_all("nab", "telemetry")
    assert clean["ts"].is_unique and len(clean) == NAB_ROWS - 12


def test_nab_file_runs_through_the_pipeline_day_by_day(nab_configs: LoadedConfigs,
                                                       store: DeltaStore) -> None:
    summaries = run_pipeline(nab_configs, "nab-machine-temp",
                             Window.parse("2014-01-06", "2014-01-09"), store)
    ingests = [s for s in summaries if s["step"] == "ingest"]
    assert [s["rows_in"] for s in ingests] == [288, 300, 288]
    assert [s["quarantine_rules"] for s in ingests] == [{}, {"clock_rollback": 12}, {}]
    hourly = store.read("nab", "temperature_hourly", "nab-machine-temp",
                        Window.day("2014-01-07"))
    assert len(hourly) == 24 and set(hourly["count"]) == {12}
    first = pd.read_csv(NAB / "machine_temperature_system_failure.csv").iloc[10137:10149]
    two_am = hourly[hourly["ts"] == pd.Timestamp("2014-01-07 02:00", tz="UTC")]
    assert two_am["mean"].iloc[0] == pytest.approx(first["value"].mean())


@pytest.mark.airflow
def test_nab_file_machine_in_airflow(nab_configs: LoadedConfigs, airflow_db: Path,
                                     tmp_path: Path) -> None:
    from meshinsights.airflow.dag_factory import build_dags

    store_uri = str(tmp_path / "af-store")
    dags, errors = build_dags(nab_configs.root, store_uri=store_uri)
    assert errors == {}
    run = dags["nab__nab-machine-temp"].test(logical_date=datetime(2014, 1, 8, tzinfo=UTC))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    commit = DeltaStore(store_uri).history("nab", "telemetry", limit=1)[0]
    assert commit["meshinsights.rows_in"] == 300
    assert commit["meshinsights.quarantine_rules"] == {"clock_rollback": 12}


# ---------------------------------------------------------------- ADX
ADX_COLUMNS = [("machine_id", "string"), ("ts", "datetime"), ("metric", "string"),
               ("value", "real"), ("unit", "string"), ("ingested_at", "datetime")]
EVENT_COLUMNS = [("machine_id", "string"), ("ts", "datetime"), ("kind", "string"),
                 ("severity", "string"), ("code", "string"), ("message", "string"),
                 ("ingested_at", "datetime")]


def _adx_rows() -> list[list[object]]:
    rows = []
    for minute in range(0, 3 * 1440, 30):
        ts = datetime(2024, 1, 1, tzinfo=UTC) + pd.Timedelta(minutes=minute)
        rows.append(["m1", ts, "temperature", 68.0 + minute % 7, "degF",
                     ts + pd.Timedelta(minutes=1)])
    return rows


@pytest.fixture
def kusto(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKusto]:
    """A Kusto look-alike holding three days of telemetry (degF) and two events."""
    events = [["m1", datetime(2024, 1, 1, 5, tzinfo=UTC), "alarm", "high", "HIGH_TEMP", "hot",
               datetime(2024, 1, 1, 5, 1, tzinfo=UTC)],
              ["m1", datetime(2024, 1, 1, 6, tzinfo=UTC), "bogus", "low", "X", "?",
               datetime(2024, 1, 1, 6, 1, tzinfo=UTC)]]
    with FakeKusto({"Telemetry": (ADX_COLUMNS, _adx_rows()),
                    "Events": (EVENT_COLUMNS, events)}) as server:
        monkeypatch.setenv("AIRFLOW_CONN_ADX_PLANT", server.url)
        yield server


def _adx_machine() -> MachineConfig:
    declare = "declare query_parameters(p_machine_id:string, p_start:datetime, p_end:datetime);\n"
    where = "| where machine_id == p_machine_id and ts >= p_start and ts < p_end"
    return MachineConfig.model_validate({
        "machine_id": "m1", "pipeline": "adx", "start_date": "2024-01-01",
        "source": {
            "type": "adx", "conn_id": "adx_plant", "database": "iot",
            "query": f"{declare}Telemetry {where}",
            "events_query": f"{declare}Events {where}",
            "late_query": "declare query_parameters(p_machine_id:string, p_since:datetime, "
                          "p_start:datetime, p_watermark:datetime);\nTelemetry | where machine_id"
                          " == p_machine_id and ts >= p_since and ts < p_start and ingested_at > "
                          "p_watermark | project ts",
        }})


def test_adx_source_ingests_with_units_events_and_late_rows(kusto: FakeKusto,
                                                            store: DeltaStore) -> None:
    machine = _adx_machine()
    pipeline = PipelineConfig(name="adx", steps=[], validation={
        "temperature": {"unit": "degC", "min": -40, "max": 60}})
    day1, day2 = Window.day("2024-01-01"), Window.day("2024-01-02")
    first = run_incremental(machine, pipeline, day1, store, run_id="adx")[-1]
    assert first["rows_in"] == 48 and first["rows_clean"] == 48
    assert first["events"]["rows_clean"] == 1 and first["events"]["quarantine_rules"] == {
        "events.kind": 1}
    telemetry = store.read_all("adx", "telemetry")
    assert set(telemetry["unit"]) == {"degC"}
    assert telemetry["value"].min() == pytest.approx((68.0 - 32) * 5 / 9)
    params = kusto.requests[0]["properties"]["Parameters"]
    assert params["p_start"] == params["start"] == "datetime(2024-01-01T00:00:00.000000Z)"
    assert params["p_machine_id"] == "m1"

    late = datetime(2024, 1, 1, 12, 15, tzinfo=UTC)
    kusto.tables["Telemetry"][1].append(["m1", late, "temperature", 70.0, "degF",
                                         datetime(2024, 1, 2, 12, tzinfo=UTC)])
    second = run_incremental(machine, pipeline, day2, store, run_id="adx2")
    assert [(s["window"]["start"][:10], s["late"]) for s in second] == [
        ("2024-01-01", True), ("2024-01-02", False)]
    assert len(store.read("adx", "telemetry", "m1", day1)) == 49
