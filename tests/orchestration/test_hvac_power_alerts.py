"""The alert-threshold sink: upsert by machine and stage with history, on SQLite, MariaDB and
PostgreSQL; and the hvac_power pipeline's threshold rows landing in the real MySQL server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from sqlalchemy import create_engine, text

from meshinsights.config import load_configs
from meshinsights.connectors.alerts import (
    ALERTS_CONN_ID,
    AlertThresholdSink,
    alerts_url,
    run_sink,
    write_threshold_updates,
)
from meshinsights.credentials import DEMO_CONN_ID
from meshinsights.demo import seed
from meshinsights.engine.runner import run_pipeline
from meshinsights.errors import ConfigError, ConnectorError
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS
from tests.connectors.servers import mysql_url, postgres_url  # noqa: F401 - fixtures


def updates(valid_from: str, lower: float, *, machine: str = "hvac-009",
            stages: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    """A threshold_updates partition as the update_thresholds step writes it."""
    n = len(stages)
    return pd.DataFrame({
        "machine_id": machine, "ts": pd.Timestamp(valid_from, tz="UTC") - pd.Timedelta(days=1),
        "metric": "power_kw", "stage": list(stages), "lower": [lower + 3 * s for s in stages],
        "upper": [lower + 1 + 3 * s for s in stages], "center": [lower + 0.5 + 3 * s
                                                                 for s in stages],
        "method": "mad", "n_cycles": [40] * n, "valid_from": pd.Timestamp(valid_from, tz="UTC"),
        "variance_class": "low", "cv": 0.03,
    })


def stored(rows: list[tuple[str, int, float, str, str]]) -> pd.DataFrame:
    """Expected sink rows from ``(machine, stage, lower, valid_from, run_id)``."""
    return pd.DataFrame({
        "machine_id": [r[0] for r in rows], "stage": [r[1] for r in rows],
        "metric": "power_kw", "lower_limit": [r[2] for r in rows],
        "upper_limit": [r[2] + 1 for r in rows], "center": [r[2] + 0.5 for r in rows],
        "method": "mad", "n_cycles": 40, "variance_class": "low", "cv": 0.03,
        "valid_from": pd.to_datetime([r[3] for r in rows]).astype("datetime64[ns]"),
        "run_id": [r[4] for r in rows],
    })


def read(sink: AlertThresholdSink, *, history: bool = False) -> pd.DataFrame:
    df = sink.read(history=history).drop(columns="written_at")
    df["valid_from"] = pd.to_datetime(df["valid_from"]).astype("datetime64[ns]")
    return df


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def sink_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An alert database on SQLite (a file) or on the real MariaDB / PostgreSQL servers."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def sink(sink_url: str, request: pytest.FixtureRequest) -> AlertThresholdSink:
    """A sink on a table private to this test."""
    table = "at_" + request.node.name.split("[")[0][-20:].lower().replace("-", "_")
    s = AlertThresholdSink(sink_url, table=table)
    yield s
    with s._sql.client.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {table}_history"))
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    s.close()


def test_upsert_keeps_history_and_a_rerun_is_idempotent(sink: AlertThresholdSink) -> None:
    sink.write(updates("2024-01-02", 0.2), run_id="run-a")
    sink.write(updates("2024-01-02", 0.25), run_id="run-a2")  # rerun of the same window
    sink.write(updates("2024-01-03", 0.3), run_id="run-b")
    assert_frame_equal(read(sink), stored([
        ("hvac-009", 0, 0.3, "2024-01-03", "run-b"), ("hvac-009", 1, 3.3, "2024-01-03", "run-b")]),
        check_dtype=False)
    assert_frame_equal(read(sink, history=True), stored([
        ("hvac-009", 0, 0.25, "2024-01-02", "run-a2"), ("hvac-009", 0, 0.3, "2024-01-03", "run-b"),
        ("hvac-009", 1, 3.25, "2024-01-02", "run-a2"), ("hvac-009", 1, 3.3, "2024-01-03", "run-b"),
    ]), check_dtype=False)


def test_backfilling_an_older_window_never_overwrites_newer_thresholds(
        sink: AlertThresholdSink) -> None:
    sink.write(updates("2024-01-05", 0.5), run_id="new")
    sink.write(updates("2024-01-02", 0.2, stages=(1, 2)), run_id="backfill")
    current = read(sink)
    # stages 0 and 1 keep the newer thresholds; stage 2 had none, so the backfill provides it
    assert current[["stage", "lower_limit", "run_id"]].values.tolist() == [
        [0, 0.5, "new"], [1, 3.5, "new"], [2, 6.2, "backfill"]]
    assert len(read(sink, history=True)) == 4


def test_machines_are_kept_apart(sink: AlertThresholdSink) -> None:
    sink.write(updates("2024-01-02", 0.2, machine="hvac-009"), run_id="a")
    sink.write(updates("2024-01-02", 0.4, machine="hvac-010"), run_id="b")
    current = read(sink)
    assert current.groupby("machine_id")["lower_limit"].min().to_dict() == {
        "hvac-009": 0.2, "hvac-010": 0.4}


def test_empty_update_writes_nothing(sink: AlertThresholdSink) -> None:
    assert sink.write(updates("2024-01-02", 0.2).head(0), run_id="r")["rows"] == 0
    assert sink.read().empty


def test_rows_without_the_step_columns_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lack column\(s\) \['lower', 'upper'\].*update_thresh"):
        write_threshold_updates(updates("2024-01-02", 0.2).drop(columns=["lower", "upper"]),
                                url=f"sqlite:///{tmp_path / 'a.db'}", run_id="r")


@pytest.mark.parametrize(
    ("config", "message"),
    [({"type": "webhook"}, "unknown sink type 'webhook'"),
     ({"type": "alert_thresholds", "url": "x"}, r"unknown field\(s\) \['url'\]")],
    ids=["unknown-type", "unknown-field"],
)
def test_bad_sink_config_is_a_clear_error(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_sink(config, updates("2024-01-02", 0.2), run_id="r")


def test_alerts_connection_defaults_to_a_sqlite_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MESHINSIGHTS_ALERTS", raising=False)
    monkeypatch.setenv("MESHINSIGHTS_ALERTS_DB", str(tmp_path / "data" / "alerts.db"))
    assert alerts_url() == f"sqlite:///{tmp_path / 'data' / 'alerts.db'}"
    summary = run_sink({"type": "alert_thresholds"}, updates("2024-01-02", 0.2), run_id="r")
    assert summary["rows"] == 2 and (tmp_path / "data" / "alerts.db").exists()
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_ALERTS", "mysql://u:secret@db:3306/alerts")
    assert alerts_url() == "mysql://u:secret@db:3306/alerts"
    with pytest.raises(ConnectorError, match="AIRFLOW_CONN_OTHER_ALERTS"):
        alerts_url("other_alerts")


@pytest.mark.mysql
@pytest.mark.slow
def test_pipeline_threshold_rows_land_in_mysql(mysql_url: str, tmp_path: Path) -> None:  # noqa: F811
    demo = f"sqlite:///{tmp_path / 'demo.db'}"
    seed(demo, machines=10, days=2, seed=7)
    urls = {DEMO_CONN_ID: demo, ALERTS_CONN_ID: mysql_url}
    store = DeltaStore(str(tmp_path / "artifacts"))
    window = Window.parse("2024-01-01", "2024-01-03")
    configs = load_configs(CONFIGS)
    for machine in ("hvac-009", "hvac-002"):
        run_pipeline(configs, machine, window, store, resolver=urls.__getitem__,
                     run_id=f"mysql-{machine}")
    expected = store.read("hvac_power", "threshold_updates", ["hvac-009", "hvac-002"], window)
    assert set(expected["machine_id"]) == {"hvac-009"}  # the high-variance unit has none
    engine = create_engine(mysql_url)
    with engine.connect() as conn:
        history = pd.read_sql(text("SELECT * FROM alert_thresholds_history "
                                   "ORDER BY valid_from, stage"), conn)
        current = pd.read_sql(text("SELECT * FROM alert_thresholds ORDER BY stage"), conn)
    engine.dispose()
    expected = expected.sort_values(["valid_from", "stage"]).reset_index(drop=True)
    assert history["machine_id"].tolist() == expected["machine_id"].tolist()
    assert history["stage"].tolist() == expected["stage"].tolist()
    assert history["lower_limit"].tolist() == expected["lower"].tolist()
    assert history["upper_limit"].tolist() == expected["upper"].tolist()
    assert set(history["run_id"]) == {"mysql-hvac-009"}
    assert sorted(history["valid_from"].unique()) == [pd.Timestamp("2024-01-02"),
                                                      pd.Timestamp("2024-01-03")]
    last = expected[expected["valid_from"] == expected["valid_from"].max()]
    assert current["stage"].tolist() == last["stage"].tolist()
    assert (current["valid_from"] == pd.Timestamp("2024-01-03")).all()
