"""The live demo source: a timeline ending at now, a feeder appending what arrives, and where
``demo seed`` writes when paths are redirected."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from meshinsights.demo import live_start
from meshinsights.demo_feed import Feeder, LiveDemo, run_feeder, seed_live
from meshinsights.settings import PROJECT_ROOT, get_settings

#: A fixed start keeps the tests deterministic; make run uses live_start(now).
START = datetime(2026, 3, 1, tzinfo=UTC)


def _table(db: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:
        frame = pd.read_sql(f"SELECT * FROM {table}", conn)  # noqa: S608 (fixed names)
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def test_live_start_is_midnight_two_days_back():
    now = datetime(2026, 12, 7, 5, 47, 12, tzinfo=UTC)
    assert live_start(now) == datetime(2026, 12, 5, tzinfo=UTC)
    assert live_start(now, days_back=0) == datetime(2026, 12, 7, tzinfo=UTC)


def test_seed_then_feed_equals_a_later_seed_and_late_rows_arrive_late(tmp_path: Path):
    # Unit 8 (late_rows) sends its day-2 09:00-12:00 block two days late: day 4 from 09:00.
    t0 = START + timedelta(days=3, hours=8)
    t1 = t0 + timedelta(hours=2)
    fed_db, later_db = tmp_path / "fed.db", tmp_path / "later.db"
    demo = LiveDemo(f"sqlite:///{fed_db}", START, machines=8, days=5)
    fleet = seed_live(demo, t0)
    assert fleet.end == t0 and fleet.machines[-1] == "hvac-008"
    seeded = _table(fed_db, "telemetry")
    assert pd.to_datetime(seeded["ingested_at"]).max() <= pd.Timestamp(t0).tz_localize(None)
    rows, events = Feeder(demo).feed(t0, t1)
    seed_live(LiveDemo(f"sqlite:///{later_db}", START, machines=8, days=5), t1)
    fed, later = _table(fed_db, "telemetry"), _table(later_db, "telemetry")
    pd.testing.assert_frame_equal(fed, later)
    pd.testing.assert_frame_equal(_table(fed_db, "events"), _table(later_db, "events"))
    assert rows == len(fed) - len(seeded) and rows > 8 * 4 * 110 and events > 0
    new = fed.merge(seeded, how="left", indicator=True).query("_merge == 'left_only'")
    late = new[pd.to_datetime(new["ts"]) < pd.Timestamp(t0 - timedelta(days=1)).tz_localize(None)]
    assert set(late["machine_id"]) == {"hvac-008"}
    assert len(late) == 61 * 4  # day 2 09:00 through 10:00 (arrived by t1 inclusive), 4 metrics


def test_the_feeder_loop_stops_where_the_timeline_ends(tmp_path: Path):
    demo = LiveDemo(f"sqlite:///{tmp_path / 'src.db'}", START, machines=1, days=1)
    since = demo.end - timedelta(minutes=3)
    seed_live(demo, since)
    ticks = iter(since + timedelta(minutes=m) for m in range(1, 10))
    total = run_feeder(demo, since, interval=60, clock=lambda: next(ticks), sleep=lambda s: None)
    assert total == 3 * 4  # three minutes of four metrics, then the end of the timeline
    assert len(_table(tmp_path / "src.db", "telemetry")) == 1440 * 4


def test_the_feeder_process_appends_and_stops_on_sigterm(tmp_path: Path):
    db = tmp_path / "src.db"
    now = datetime.now(UTC)
    demo = LiveDemo(f"sqlite:///{db}", live_start(now), machines=2, days=3)
    since = now - timedelta(minutes=5)
    seed_live(demo, since)
    before = len(_table(db, "telemetry"))
    proc = subprocess.Popen(demo.argv(since, interval=0.5), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_table(db, "telemetry")) == before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(_table(db, "telemetry")) >= before + 2 * 4 * 4  # ≥ 4 of the 5 minutes
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "fed " in out and "telemetry rows" in out


@pytest.fixture
def unredirected_demo_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the store is redirected: demo source and alert sink paths follow it."""
    for name in ("MESHINSIGHTS_DEMO_SOURCE", "MESHINSIGHTS_ALERTS_DB",
                 "AIRFLOW_CONN_MESHINSIGHTS_DEMO", "AIRFLOW_CONN_MESHINSIGHTS_ALERTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MESHINSIGHTS_ENV_FILE", "/nonexistent/.env")


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime_ns if path.exists() else None


@pytest.mark.usefixtures("unredirected_demo_paths")
def test_demo_seed_and_the_alert_sink_stay_out_of_the_checkout(tmp_path, monkeypatch):
    from meshinsights.cli import app
    from meshinsights.connectors.alerts import alerts_url

    checkout = [PROJECT_ROOT / "data" / "demo_source.db", PROJECT_ROOT / "data" / "alerts.db"]
    before = [_mtime(p) for p in checkout]
    monkeypatch.setenv("MESHINSIGHTS_STORE", str(tmp_path / "elsewhere" / "artifacts"))
    result = CliRunner().invoke(app, ["demo", "seed", "--machines", "1", "--days", "1"])
    assert result.exit_code == 0, result.output
    assert len(_table(tmp_path / "elsewhere" / "demo_source.db", "telemetry")) == 1440 * 4
    assert get_settings().alerts_db == tmp_path / "elsewhere" / "alerts.db"
    assert alerts_url() == f"sqlite:///{tmp_path / 'elsewhere' / 'alerts.db'}"
    # The demo connection, when set, is where the seed writes (where the pipelines read).
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{tmp_path / 'conn.db'}")
    result = CliRunner().invoke(app, ["demo", "seed", "--machines", "1", "--days", "1"])
    assert result.exit_code == 0, result.output
    assert len(_table(tmp_path / "conn.db", "telemetry")) == 1440 * 4
    assert [_mtime(p) for p in checkout] == before
