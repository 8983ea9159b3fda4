"""The demo fleet honours its contract: signals, stages, faults, events, determinism, CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from meshinsights.demo import DEMO_START, PROMPT_INJECTION, fault_of, generate_machine, seed


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default fleet (10 units × 7 days, seed 7) in SQLite."""
    path = tmp_path_factory.mktemp("fleet") / "fleet.db"
    seed(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def telemetry(fleet_db: Path) -> pd.DataFrame:
    """All telemetry rows with parsed times."""
    with sqlite3.connect(fleet_db) as conn:
        df = pd.read_sql("SELECT * FROM telemetry", conn)
    df["ts"] = pd.to_datetime(df["ts"])
    df["ingested_at"] = pd.to_datetime(df["ingested_at"])
    return df


@pytest.fixture(scope="module")
def events(fleet_db: Path) -> pd.DataFrame:
    """All event rows with parsed times."""
    with sqlite3.connect(fleet_db) as conn:
        df = pd.read_sql("SELECT * FROM events", conn)
    df["ts"] = pd.to_datetime(df["ts"])
    return df


def _series(telemetry: pd.DataFrame, machine: str, metric: str) -> pd.Series:
    rows = telemetry[(telemetry["machine_id"] == machine) & (telemetry["metric"] == metric)]
    return rows.drop_duplicates().set_index("ts")["value"].sort_index()


def _cycles(power: pd.Series) -> pd.DataFrame:
    """Compressor on-runs: their length in minutes and median power."""
    on = power > 1.0
    run_id = (on != on.shift()).cumsum()
    runs = power[on].groupby(run_id[on]).agg(["size", "median"])
    return runs.iloc[1:-1]  # drop runs cut by the seed range


def test_fleet_shape_and_resolution(telemetry: pd.DataFrame) -> None:
    assert sorted(telemetry["machine_id"].unique()) == [f"hvac-{i:03d}" for i in range(1, 11)]
    assert telemetry["ts"].min() == pd.Timestamp("2024-01-01")
    assert telemetry["ts"].max() == pd.Timestamp("2024-01-07 23:59")
    units = telemetry.groupby("metric")["unit"].unique().map(list).to_dict()
    assert units == {"temperature": ["degC"], "return_temperature": ["degC"],
                     "power_kw": ["kW"], "humidity": ["%"]}
    one = _series(telemetry, "hvac-001", "temperature")
    assert len(one) == 7 * 1440 and (one.index.to_series().diff().dropna() ==
                                      pd.Timedelta(minutes=1)).all()


def test_two_stage_compressor_cycles_of_tens_of_minutes(telemetry: pd.DataFrame) -> None:
    power = _series(telemetry, "hvac-001", "power_kw")
    assert abs(power[power < 1].median() - 0.3) < 0.05
    cycles = _cycles(power)
    stage1 = cycles["median"][cycles["median"] < 4.5]
    stage2 = cycles["median"][cycles["median"] >= 4.5]
    assert abs(stage1.median() - 3.0) < 0.2 and abs(stage2.median() - 6.0) < 0.3
    assert len(stage2) >= 3
    assert 10 <= cycles["size"].median() <= 40
    assert cycles["median"].std() / cycles["median"].mean() < 0.3


@pytest.mark.parametrize("machine", ["hvac-001", "hvac-009", "hvac-010"])
def test_normal_units_have_steady_stage_power(telemetry: pd.DataFrame, machine: str) -> None:
    medians = _cycles(_series(telemetry, machine, "power_kw"))["median"]
    stage1 = medians[medians < 4.5]
    assert stage1.std() / stage1.mean() < 0.1


def test_high_power_variance_unit(telemetry: pd.DataFrame) -> None:
    medians = _cycles(_series(telemetry, "hvac-002", "power_kw"))["median"]
    assert medians.std() / medians.mean() > 0.3


def test_short_cycling_unit_and_alarm_flood(telemetry: pd.DataFrame,
                                            events: pd.DataFrame) -> None:
    cycles = _cycles(_series(telemetry, "hvac-003", "power_kw"))
    assert 2 <= cycles["size"].median() <= 4
    alarms = events[(events["machine_id"] == "hvac-003") & (events["kind"] == "alarm")]
    per_10min = alarms.set_index("ts").sort_index()["code"].rolling("10min").count()
    assert per_10min.max() > 20


def test_stuck_sensor_on_day_three(telemetry: pd.DataFrame) -> None:
    temp = _series(telemetry, "hvac-004", "temperature")
    runs = (temp != temp.shift()).cumsum()
    longest = temp.groupby(runs).size().max()
    day3 = temp["2024-01-03"]
    assert longest >= 8 * 60 and (day3.groupby((day3 != day3.shift()).cumsum()).size().max()
                                  >= 8 * 60)
    normal = _series(telemetry, "hvac-001", "temperature")
    assert normal.groupby((normal != normal.shift()).cumsum()).size().max() < 10


def test_temperature_drift(telemetry: pd.DataFrame) -> None:
    def slope(machine: str) -> float:
        daily = _series(telemetry, machine, "temperature").resample("1D").mean()
        return float(np.polyfit(np.arange(len(daily)), daily.to_numpy(), 1)[0])

    assert slope("hvac-005") == pytest.approx(0.8, abs=0.1)
    assert abs(slope("hvac-001")) < 0.1


def test_spikes_duplicates_and_prompt_injection(telemetry: pd.DataFrame,
                                                events: pd.DataFrame) -> None:
    rows = telemetry[telemetry["machine_id"] == "hvac-006"]
    spikes = rows[(rows["metric"] == "temperature") & (rows["value"] >= 95)]
    assert 1 <= spikes["ts"].nunique() <= 10 and spikes["value"].max() <= 120
    assert rows.duplicated().sum() > 0
    assert telemetry[telemetry["machine_id"] != "hvac-006"].duplicated().sum() == 0
    logs = events[(events["machine_id"] == "hvac-006") & (events["kind"] == "log")]
    assert (logs["message"] == PROMPT_INJECTION).sum() == 1
    assert PROMPT_INJECTION.startswith("Ignore all previous instructions")


def test_gaps(telemetry: pd.DataFrame) -> None:
    ts = _series(telemetry, "hvac-007", "temperature").index.to_series()
    holes = ts.diff()[ts.diff() > pd.Timedelta(minutes=1)]
    assert len(holes) >= 2
    assert ((holes >= pd.Timedelta(hours=2)) & (holes <= pd.Timedelta(hours=3, minutes=1))).all()
    for metric in ("power_kw", "humidity"):  # no rows at all, not just one metric
        assert len(_series(telemetry, "hvac-007", metric)) == len(ts)


def test_late_rows(telemetry: pd.DataFrame) -> None:
    lag = telemetry["ingested_at"] - telemetry["ts"]
    late = telemetry[lag == pd.Timedelta(days=2)]
    assert set(late["machine_id"]) == {"hvac-008"} and len(late) >= 4 * 60
    assert (lag[lag != pd.Timedelta(days=2)] == pd.Timedelta(minutes=1)).all()


def test_events_kinds_and_codes(events: pd.DataFrame) -> None:
    assert {"event", "alarm", "log"} <= set(events["kind"])
    per_machine = events.groupby("machine_id")["kind"].nunique()
    assert (per_machine >= 3).all() and len(per_machine) == 10


def test_deterministic_for_a_seed() -> None:
    a, b = (generate_machine(6, DEMO_START, 2, seed=1) for _ in range(2))
    c = generate_machine(6, DEMO_START, 2, seed=2)
    assert np.array_equal(a.value, b.value) and a.events.equals(b.events)
    assert not np.array_equal(a.value[:1000], c.value[:1000])


def test_large_fleets_repeat_the_faults() -> None:
    assert [fault_of(i) for i in (1, 11, 13, 20, 108)] == [
        "normal", "normal", "short_cycling", "normal", "late_rows"]


def test_cli_seed_prints_machines_and_range(tmp_path: Path) -> None:
    from meshinsights.cli import app

    db = tmp_path / "cli.db"
    result = CliRunner().invoke(app, ["demo", "seed", "--machines", "2", "--days", "1",
                                      "--seed", "3", "--url", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.output
    assert "hvac-001, hvac-002" in result.output
    assert "2024-01-01T00:00:00+00:00" in result.output and "2024-01-02T00:00:00" in result.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 2 * 1440 * 4
        indexes = {r[1] for r in conn.execute("SELECT * FROM sqlite_master WHERE type='index'")}
    assert {"ix_telemetry_machine_ts", "ix_events_machine_ts"} <= indexes
