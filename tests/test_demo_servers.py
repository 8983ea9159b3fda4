"""`demo seed --url` writes the same fleet to MariaDB and PostgreSQL, and ingest reads it back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from meshinsights.config import MachineConfig, PipelineConfig
from meshinsights.demo import seed
from meshinsights.engine.ingest import run_ingest
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.connectors.servers import mysql_url, postgres_url  # noqa: F401 - fixtures

PIPELINE = PipelineConfig(name="srv", steps=[], validation={"temperature": {"max": 60}})


@pytest.mark.parametrize("server", [pytest.param("mysql", marks=pytest.mark.mysql),
                                    pytest.param("postgres", marks=pytest.mark.postgres)])
def test_seed_to_server_matches_sqlite_and_ingests(server: str, request: pytest.FixtureRequest,
                                                   tmp_path: Path, store: DeltaStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = request.getfixturevalue(f"{server}_url")
    fleet = seed(url, machines=6, days=1, seed=11)
    local = seed(f"sqlite:///{tmp_path / 'same.db'}", machines=6, days=1, seed=11)
    assert (fleet.rows, fleet.events) == (local.rows, local.events)
    checksum = ("SELECT machine_id, COUNT(*), SUM(value) FROM telemetry GROUP BY machine_id "
                "ORDER BY machine_id")
    sums = []
    for target in (url, f"sqlite:///{tmp_path / 'same.db'}"):
        engine = create_engine(target)
        with engine.connect() as conn:
            sums.append([tuple(r) for r in conn.execute(text(checksum))])
        engine.dispose()
    server_sums, local_sums = sums
    assert [r[:2] for r in server_sums] == [r[:2] for r in local_sums]
    assert [r[2] for r in server_sums] == pytest.approx([r[2] for r in local_sums])

    monkeypatch.setenv("AIRFLOW_CONN_SRV", url)
    machine = MachineConfig.model_validate({
        "machine_id": "hvac-006", "pipeline": "srv", "start_date": "2024-01-01",
        "source": {"type": "sql", "conn_id": "srv",
                   "query": "SELECT machine_id, ts, metric, value, unit, ingested_at FROM "
                            "telemetry WHERE machine_id = :machine_id AND ts >= :start AND "
                            "ts < :end",
                   "events_query": "SELECT * FROM events WHERE machine_id = :machine_id AND "
                                   "ts >= :start AND ts < :end"}})
    s = run_ingest(machine, PIPELINE, Window.day("2024-01-01"), store, run_id=server)
    assert s["rows_in"] == s["rows_clean"] + s["rows_quarantined"] + s["duplicates_removed"]
    assert s["duplicates_removed"] > 0 and s["rows_in"] > 4 * 1440
    assert s["events"]["quarantine_rules"] == {"events.kind": 1}
    assert s["watermark"] == "2024-01-02 00:00:00+00:00"
