"""Incremental loading: late rows reopen exactly their windows; failures keep the watermark."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.config import MachineConfig, PipelineConfig
from meshinsights.demo import seed
from meshinsights.engine.ingest import last_watermark, late_windows, run_incremental
from meshinsights.errors import ConnectorError
from meshinsights.model import Window
from meshinsights.store import DeltaStore

PIPELINE = PipelineConfig(name="inc", steps=[], validation={"temperature": {"max": 60}})
DAYS = [Window.day(f"2024-01-0{d}") for d in range(1, 6)]


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh 2-unit × 5-day demo source behind connection ``inc_src``."""
    path = tmp_path / "src.db"
    seed(f"sqlite:///{path}", machines=2, days=5)
    monkeypatch.setenv("AIRFLOW_CONN_INC_SRC", f"sqlite:///{path}")
    return path


@pytest.fixture
def unit() -> MachineConfig:
    """hvac-001 with the demo queries, including the late-row query."""
    return MachineConfig.model_validate({
        "machine_id": "hvac-001", "pipeline": "inc", "start_date": "2024-01-01",
        "source": {
            "type": "sql", "conn_id": "inc_src",
            "query": "SELECT machine_id, ts, metric, value, unit, ingested_at FROM telemetry "
                     "WHERE machine_id = :machine_id AND ts >= :start AND ts < :end",
            "late_query": "SELECT ts FROM telemetry WHERE machine_id = :machine_id "
                          "AND ts >= :since AND ts < :start AND ingested_at > :watermark",
        }})


def _insert_late(path: Path, ts: str, ingested: str, value: float = 21.0) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO telemetry VALUES ('hvac-001', ?, 'late_probe', ?, 'degC', ?)",
                     (ts, value, ingested))


def _windows_written(store: DeltaStore, since_version: int) -> list[str]:
    return sorted(c["meshinsights.window"]["start"][:10]
                  for c in store.history("inc", "telemetry")
                  if c["version"] > since_version and c.get("meshinsights.step") == "ingest")


def test_late_rows_reprocess_exactly_their_window(source: Path, unit: MachineConfig,
                                                  store: DeltaStore) -> None:
    for day in DAYS[:3]:
        summaries = run_incremental(unit, PIPELINE, day, store, run_id="first")
        assert [s["late"] for s in summaries] == [False]
    version = store.version("inc", "telemetry")
    assert last_watermark(store, "inc", "hvac-001") == pd.Timestamp("2024-01-04", tz="UTC")

    _insert_late(source, "2024-01-01 12:00:00", "2024-01-04 06:00:00")
    summaries = run_incremental(unit, PIPELINE, DAYS[3], store, run_id="second")

    assert [(s["window"]["start"][:10], s["late"]) for s in summaries] == [
        ("2024-01-01", True), ("2024-01-04", False)]
    assert _windows_written(store, version) == ["2024-01-01", "2024-01-04"]  # days 2, 3 untouched
    day1 = store.read("inc", "telemetry", "hvac-001", DAYS[0])
    assert (day1["metric"] == "late_probe").sum() == 1
    assert summaries[0]["watermark"] == "2024-01-04 00:00:00+00:00"  # late commits don't move it
    assert last_watermark(store, "inc", "hvac-001") == pd.Timestamp("2024-01-05", tz="UTC")

    version = store.version("inc", "telemetry")
    again = run_incremental(unit, PIPELINE, DAYS[4], store, run_id="third")
    assert [s["late"] for s in again] == [False]  # the late rows were consumed
    assert _windows_written(store, version) == ["2024-01-05"]


def test_late_windows_are_aligned_and_bounded(source: Path, unit: MachineConfig) -> None:
    watermark = pd.Timestamp("2024-01-04", tz="UTC")
    _insert_late(source, "2024-01-02 00:00:00", "2024-01-04 01:00:00")
    _insert_late(source, "2024-01-02 23:59:59", "2024-01-04 01:00:00")
    _insert_late(source, "2024-01-03 00:00:00", "2024-01-04 00:00:00")  # not after the mark
    _insert_late(source, "2023-12-31 10:00:00", "2024-01-04 02:00:00")  # before start_date
    _insert_late(source, "2024-01-05 10:00:00", "2024-01-04 02:00:00")  # not before the run
    found = late_windows(unit, DAYS[3], watermark)
    assert found == [DAYS[1]]
    six_hourly = unit.model_copy(update={"schedule": "0 */6 * * *"})
    hourly = late_windows(six_hourly, DAYS[3], watermark)
    assert [str(w.start) for w in hourly] == ["2024-01-02 00:00:00+00:00",
                                              "2024-01-02 18:00:00+00:00"]
    assert late_windows(unit, DAYS[3], None) == []  # first run: nothing is late yet


def test_failed_run_never_advances_the_watermark(source: Path, unit: MachineConfig,
                                                 store: DeltaStore) -> None:
    run_incremental(unit, PIPELINE, DAYS[0], store, run_id="ok")
    mark, version = last_watermark(store, "inc", "hvac-001"), store.version("inc", "telemetry")
    _insert_late(source, "2024-01-01 08:00:00", "2024-01-03 00:00:00")
    with sqlite3.connect(source) as conn:  # the source breaks: the run fails
        conn.execute("ALTER TABLE telemetry RENAME TO telemetry_moved")
    with pytest.raises(ConnectorError, match="missing table"):
        run_incremental(unit, PIPELINE, DAYS[1], store, run_id="broken")
    assert last_watermark(store, "inc", "hvac-001") == mark
    assert store.version("inc", "telemetry") == version
    with sqlite3.connect(source) as conn:
        conn.execute("ALTER TABLE telemetry_moved RENAME TO telemetry")
    summaries = run_incremental(unit, PIPELINE, DAYS[1], store, run_id="fixed")
    assert [(s["window"]["start"][:10], s["late"]) for s in summaries] == [
        ("2024-01-01", True), ("2024-01-02", False)]


def test_a_source_clock_ahead_stops_the_watermark_at_the_runs_time(
        source: Path, unit: MachineConfig, store: DeltaStore, caplog) -> None:
    """One row stamped ingested_at 2099 used to move the watermark to 2099, so no later row
    was ever late again (issue 19). Stamps after the run's own time are left out of the
    watermark (with a warning): it stays where the credible stamps put it."""
    for day in DAYS[:3]:
        run_incremental(unit, PIPELINE, day, store, run_id="first")
    # A row of the window the next run reads, stamped by a clock that runs ahead.
    _insert_late(source, "2024-01-04 12:00:00", "2099-01-01 00:00:00")
    with caplog.at_level(logging.WARNING, logger="meshinsights.engine.ingest"):
        run_incremental(unit, PIPELINE, DAYS[3], store, run_id="ahead")
    after = pd.Timestamp.now(tz="UTC")
    # The demo stamps each day's rows at the next midnight: day 4's credible stamp.
    assert last_watermark(store, "inc", "hvac-001") == pd.Timestamp("2024-01-05", tz="UTC")
    assert "1 row(s) have ingested_at after the run's time" in caplog.text

    # A row that really arrives after that run is still found late and reprocessed.
    arrived = (after + pd.Timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    _insert_late(source, "2024-01-02 12:00:00", arrived, value=22.5)
    summaries = run_incremental(unit, PIPELINE, DAYS[4], store, run_id="later")
    reopened = {s["window"]["start"][:10] for s in summaries if s["late"]}
    assert "2024-01-02" in reopened
    day2 = store.read("inc", "telemetry", "hvac-001", DAYS[1])
    assert day2.loc[day2["metric"] == "late_probe", "value"].tolist() == [22.5]
