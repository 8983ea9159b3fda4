"""Ingest end to end: the demo fleet's faults, accounting in commit metadata, idempotency."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.config import EventRules, MachineConfig, PipelineConfig, load_machine
from meshinsights.demo import EVENT_CODES, seed
from meshinsights.engine.ingest import fetch_source, run_ingest
from meshinsights.errors import ConfigError
from meshinsights.model import Window
from meshinsights.store import DeltaStore

SPAN = Window.parse("2024-01-01", "2024-01-04")
PIPELINE = PipelineConfig(
    name="fleet", steps=[],
    validation={"temperature": {"min": -40, "max": 60, "max_rate_per_min": 10, "unit": "degC"},
                "humidity": {"min": 0, "max": 100}, "power_kw": {"min": 0, "max": 12}},
    events=EventRules(codes=EVENT_CODES),
)


def machine(machine_id: str, **source: object) -> MachineConfig:
    """A machine reading the demo tables through connection ``fleet_src``."""
    base = {
        "type": "sql", "conn_id": "fleet_src",
        "query": "SELECT machine_id, ts, metric, value, unit, ingested_at FROM telemetry "
                 "WHERE machine_id = :machine_id AND ts >= :start AND ts < :end",
        "events_query": "SELECT machine_id, ts, kind, severity, code, message, ingested_at "
                        "FROM events WHERE machine_id = :machine_id AND ts >= :start "
                        "AND ts < :end",
    }
    return MachineConfig(machine_id=machine_id, pipeline="fleet", start_date="2024-01-01",
                         source={**base, **source})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo fleet, 10 units (every fault) × 3 days, in SQLite."""
    path = tmp_path_factory.mktemp("fleet") / "fleet.db"
    seed(f"sqlite:///{path}", machines=10, days=3)
    return path


@pytest.fixture
def source_env(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AIRFLOW_CONN_FLEET_SRC points at the demo fleet."""
    monkeypatch.setenv("AIRFLOW_CONN_FLEET_SRC", f"sqlite:///{fleet}")
    return fleet


def _source_counts(fleet: Path, table: str) -> dict[str, int]:
    with sqlite3.connect(fleet) as conn:
        return dict(conn.execute(f"SELECT machine_id, COUNT(*) FROM {table} GROUP BY 1"))


def test_accounting_holds_on_the_whole_fleet(source_env: Path, store: DeltaStore) -> None:
    telemetry_rows = _source_counts(source_env, "telemetry")
    event_rows = _source_counts(source_env, "events")
    summaries = {m: run_ingest(machine(m), PIPELINE, SPAN, store, run_id="fleet")
                 for m in sorted(telemetry_rows)}
    for m, s in summaries.items():
        assert s["rows_in"] == telemetry_rows[m]
        assert s["rows_in"] == s["rows_clean"] + s["rows_quarantined"] + s["duplicates_removed"]
        ev = s["events"]
        assert ev["rows_in"] == event_rows[m]
        assert ev["rows_in"] == ev["rows_clean"] + ev["rows_quarantined"] + ev["duplicates_removed"]
    quarantine = store.read_all("fleet", "quarantine")
    telemetry = store.read_all("fleet", "telemetry")
    assert len(telemetry) == sum(s["rows_clean"] for s in summaries.values())
    assert len(quarantine) == sum(s["rows_quarantined"] + s["events"]["rows_quarantined"]
                                  for s in summaries.values())
    # The faults show where they should: spikes and duplicates on hvac-006 only.
    spiky = summaries["hvac-006"]
    assert spiky["duplicates_removed"] > 0 and spiky["quarantine_rules"].get(
        "temperature.range", 0) + spiky["quarantine_rules"].get("temperature.rate", 0) >= 1
    assert spiky["events"]["quarantine_rules"] == {"events.kind": 1}
    assert all(s["duplicates_removed"] == 0 for m, s in summaries.items() if m != "hvac-006")
    q6 = quarantine[quarantine["machine_id"] == "hvac-006"]
    assert (q6[q6["rule"].str.startswith("temperature.")]["original"]
            .map(lambda o: json.loads(o)["value"]) >= 95).all()
    assert summaries["hvac-001"]["rows_quarantined"] == 0


def test_commit_metadata_records_the_accounting(source_env: Path, store: DeltaStore) -> None:
    s = run_ingest(machine("hvac-006"), PIPELINE, SPAN, store, run_id="meta")
    commit = store.history("fleet", "telemetry", limit=1)[0]
    assert commit["meshinsights.rows_in"] == s["rows_in"]
    assert commit["meshinsights.rows_in"] == (commit["meshinsights.rows_clean"]
                                              + commit["meshinsights.rows_quarantined"]
                                              + commit["meshinsights.duplicates_removed"])
    assert commit["meshinsights.events.rows_in"] == (
        commit["meshinsights.events.rows_clean"] + commit["meshinsights.events.rows_quarantined"]
        + commit["meshinsights.events.duplicates_removed"])
    assert commit["meshinsights.watermark"] == "2024-01-04 00:00:00+00:00"
    events = store.read_all("fleet", "events")
    assert set(events["kind"]) == {"event", "alarm", "log"}
    assert events["message"].str.startswith("Ignore all previous instructions").sum() == 1


def test_ingest_is_idempotent_per_machine_window(source_env: Path, store: DeltaStore) -> None:
    day1, day2 = Window.parse("2024-01-01", "2024-01-02"), Window.parse("2024-01-02", "2024-01-03")
    run_ingest(machine("hvac-001"), PIPELINE, day1, store, run_id="a")
    run_ingest(machine("hvac-001"), PIPELINE, day2, store, run_id="a")
    run_ingest(machine("hvac-002"), PIPELINE, day1, store, run_id="a")
    before = store.read_all("fleet", "telemetry")
    run_ingest(machine("hvac-001"), PIPELINE, day1, store, run_id="b")
    after = store.read_all("fleet", "telemetry")
    key = ["machine_id", "ts", "metric"]
    pd.testing.assert_frame_equal(
        before.sort_values(key).reset_index(drop=True)[key + ["value"]],
        after.sort_values(key).reset_index(drop=True)[key + ["value"]])
    assert not after.duplicated(key).any() and len(after) == 3 * 1440 * 4


def test_injection_through_config_values_is_harmless(source_env: Path, tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("machine_id: \"x' OR '1'='1\"\npipeline: fleet\nstart_date: 2024-01-01\n"
                    "source: {type: sql, conn_id: fleet_src, query: 'SELECT 1'}\n")
    with pytest.raises(ConfigError, match="invalid machine id"):
        load_machine(path)
    evil = machine("hvac-001", query="SELECT machine_id, ts, metric, value FROM telemetry "
                   "WHERE machine_id = :machine_id AND metric = :metric "
                   "AND ts >= :start AND ts < :end",
                   params={"metric": "x'; DROP TABLE telemetry; --"})
    assert fetch_source(evil, Window.parse("2024-01-01", "2024-01-02")).empty
    assert sum(_source_counts(source_env, "telemetry").values()) > 0  # still there


def test_wide_and_tsdb_sql_sources(tmp_path: Path, store: DeltaStore,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "shapes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE wide (ts TEXT, temp_f REAL, watts REAL)")
        conn.executemany("INSERT INTO wide VALUES (?, ?, ?)",
                         [("2024-01-01 00:00:00", 212.0, 1500.0), ("2024-01-01 00:01:00", 32.0,
                                                                   3000.0)])
        conn.execute("CREATE TABLE tsdb (time TEXT, deviceId TEXT, measure_name TEXT, "
                     "measure_value REAL)")
        conn.executemany("INSERT INTO tsdb VALUES (?, ?, ?, ?)",
                         [("2024-01-01 00:00:00", "m1", "temperature", 100.0),
                          ("2024-01-01 00:00:00", "m1", "power_kw", 1.5)])
    monkeypatch.setenv("AIRFLOW_CONN_SHAPES", f"sqlite:///{db}")
    pipeline = PipelineConfig(name="shapes", steps=[], validation={
        "temperature": {"unit": "degC"}, "power_kw": {"unit": "kW"}})
    wide = MachineConfig(machine_id="m1", pipeline="shapes", start_date="2024-01-01", source={
        "type": "sql", "conn_id": "shapes", "layout": "wide",
        "query": "SELECT ts, temp_f, watts FROM wide WHERE ts >= :start AND ts < :end",
        "metrics": {"temp_f": "temperature", "watts": "power_kw"},
        "units": {"temperature": "degF", "power_kw": "W"}})
    tsdb = wide.model_copy(update={"source": wide.source.model_copy(update={
        "layout": "tsdb", "metrics": {}, "units": {},
        "query": "SELECT * FROM tsdb WHERE deviceId = :machine_id"})})
    day = Window.parse("2024-01-01", "2024-01-02")
    run_ingest(wide, pipeline, day, store, run_id="w")
    result = store.read_all("shapes", "telemetry").sort_values(["ts", "metric"])
    assert result["value"].tolist() == pytest.approx([1.5, 100.0, 3.0, 0.0])
    run_ingest(tsdb, pipeline, day, store, run_id="t")
    result = store.read_all("shapes", "telemetry").sort_values(["ts", "metric"])
    assert result["value"].tolist() == [1.5, 100.0]
