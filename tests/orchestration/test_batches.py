"""Batched runs: several windows per step run, one commit, the same tables as one run each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.config import Condition, When
from meshinsights.engine.runner import PlannedStep, batches, run_step, run_steps
from meshinsights.errors import ConfigError, StoreError
from meshinsights.model import TELEMETRY_SCHEMA, Window, contiguous_groups, spans
from meshinsights.steps.registry import get_step, step
from meshinsights.store import DeltaStore
from meshinsights.store.predicates import window_predicate

NS = "batch"


def day(n: int) -> Window:
    start = datetime(2024, 1, n, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


def telemetry(machine: str, first: int, days: int, value: float = 0.0) -> pd.DataFrame:
    ts = pd.date_range(day(first).start, periods=24 * days, freq="1h")
    return pd.DataFrame(
        {
            "machine_id": machine,
            "ts": ts,
            "metric": "temperature",
            "value": value + np.arange(len(ts), dtype=float),
            "unit": "degC",
            "ingested_at": ts,
        }
    )


@step(inputs=["telemetry"], output="batch_probe")
def batch_probe(telemetry: pd.DataFrame, *, window: Window) -> pd.DataFrame:
    """One row per call: what the function was given for its window."""
    return pd.DataFrame(
        {
            "ts": [pd.Timestamp(window.start)],
            "rows": [len(telemetry)],
            "first": [telemetry["ts"].min()],
            "last": [telemetry["ts"].max()],
            "total": [float(telemetry["value"].sum())],
        }
    )


def probe(lookback: str | None = "2D", when: When | None = None) -> PlannedStep:
    """The probe step; ``lookback`` is the read length ending at the window end."""
    spec = get_step("batch_probe")
    return PlannedStep("probe", spec, {}, {"telemetry": "telemetry"}, spec.output, when, lookback)


def with_four_days(store: DeltaStore) -> DeltaStore:
    """``store`` with hourly telemetry of machine m for 2024-01-01..04."""
    store.overwrite(
        NS,
        "telemetry",
        telemetry("m", 1, 4),
        machine_ids="m",
        window=Window(day(1).start, day(4).end),
        schema=TELEMETRY_SCHEMA,
    )
    return store


@pytest.fixture
def four_days(store: DeltaStore) -> DeltaStore:
    return with_four_days(store)


def test_windows_group_into_contiguous_stretches():
    assert contiguous_groups([day(4), day(2), day(1)]) == [[day(1), day(2)], [day(4)]]
    assert spans([day(4), day(2), day(1)]) == [Window(day(1).start, day(3).start), day(4)]
    assert contiguous_groups(day(3)) == [[day(3)]]
    with pytest.raises(ConfigError, match="overlap"):
        contiguous_groups([day(1), Window(day(1).start, day(2).end)])
    assert day(1).overlaps(Window(day(1).start, day(2).end))
    assert not day(1).overlaps(day(2))  # touching is not overlapping


def test_predicate_over_several_windows_selects_each_range():
    single = window_predicate(["m"], day(1))
    assert single == (
        "machine_id = 'm' AND month = '2024-01' AND ts >= '2024-01-01T00:00:00.000000Z' "
        "AND ts < '2024-01-02T00:00:00.000000Z'"
    )
    several = window_predicate(["m"], [day(4), day(1), day(2)])
    assert several.endswith(
        "((ts >= '2024-01-01T00:00:00.000000Z' AND ts < '2024-01-03T00:00:00.000000Z') OR "
        "(ts >= '2024-01-04T00:00:00.000000Z' AND ts < '2024-01-05T00:00:00.000000Z'))"
    )


def test_overwrite_of_two_windows_replaces_those_and_leaves_the_gap(four_days: DeltaStore):
    store = four_days
    version = store.version(NS, "telemetry")
    new = pd.concat([telemetry("m", 1, 1, 1000.0), telemetry("m", 3, 1, 3000.0)])
    store.overwrite(
        NS, "telemetry", new, machine_ids="m", window=[day(1), day(3)], schema=TELEMETRY_SCHEMA
    )
    assert store.version(NS, "telemetry") == version + 1  # one commit for both windows
    got = store.read(NS, "telemetry", "m", Window(day(1).start, day(4).end))
    per_day = got.groupby(got["ts"].dt.day)["value"].min().to_dict()
    assert per_day == {1: 1000.0, 2: 24.0, 3: 3000.0, 4: 72.0}
    assert len(got) == 96
    commit = store.history(NS, "telemetry", limit=1)[0]
    assert commit["meshinsights.windows"] == [day(1).as_dict(), day(3).as_dict()]

    # A row in the gap is outside both windows: refused, nothing written.
    with pytest.raises(StoreError, match=r"1 row\(s\) fall outside the window .*, \["):
        store.overwrite(
            NS,
            "telemetry",
            pd.concat([new, telemetry("m", 2, 1).head(1)]),
            machine_ids="m",
            window=[day(1), day(3)],
            schema=TELEMETRY_SCHEMA,
        )
    # An empty frame clears both windows and nothing else.
    store.overwrite(
        NS,
        "telemetry",
        new.head(0),
        machine_ids="m",
        window=[day(1), day(3)],
        schema=TELEMETRY_SCHEMA,
    )
    left = store.read(NS, "telemetry", "m", Window(day(1).start, day(4).end))
    assert sorted(left["ts"].dt.day.unique()) == [2, 4]


def test_a_batched_step_gets_what_each_one_window_run_gets(four_days: DeltaStore, tmp_path):
    batched = run_step(probe(), "m", [day(2), day(3), day(4)], four_days, namespace=NS)
    assert batched["windows"] == [day(n).as_dict() for n in (2, 3, 4)]
    assert batched["rows_in"] == 96  # days 1-4 read once (day 1 as day 2's lookback)
    got = four_days.read(NS, "batch_probe", "m", Window(day(1).start, day(4).end))

    alone = with_four_days(DeltaStore(str(tmp_path / "alone")))
    for n in (2, 3, 4):
        run_step(probe(), "m", day(n), alone, namespace=NS)
    want = alone.read(NS, "batch_probe", "m", Window(day(1).start, day(4).end))
    assert_frame_equal(got, want)
    # Each call saw its own day plus one day of lookback: 48 hourly rows.
    assert got["rows"].tolist() == [48, 48, 48]
    assert got["first"].dt.day.tolist() == [1, 2, 3]


def test_a_batch_with_a_gap_reads_each_stretch_once(four_days: DeltaStore):
    summary = run_step(probe(lookback=None), "m", [day(1), day(4)], four_days, namespace=NS)
    assert summary["rows_in"] == 48  # day 1 and day 4, not days 2-3
    got = four_days.read(NS, "batch_probe", "m", Window(day(1).start, day(4).end))
    assert got["ts"].dt.day.tolist() == [1, 4] and got["rows"].tolist() == [24, 24]


def test_a_branch_rule_that_fails_for_one_window_leaves_that_window(four_days: DeltaStore):
    store = four_days
    start = pd.Timestamp(day(3).start)
    old = pd.DataFrame(
        {"machine_id": "m", "ts": [start], "rows": [-1], "first": start, "last": start}
    ).assign(total=0.0)
    store.overwrite(NS, "batch_probe", old, machine_ids="m", window=day(3))
    # Hourly values are 0..23 on day 1, 24..47 on day 2, 48..71 on day 3: "any value < 40"
    # holds on days 1 and 2 only.
    rule = When(any=[Condition(table="telemetry", column="value", lt=40)])
    summaries = run_steps(
        [probe(lookback=None, when=rule)], "m", NS, [day(n) for n in (1, 2, 3)], store, run_id="r"
    )
    assert [(s.get("skipped", False), s["window"]["start"][:10]) for s in summaries] == [
        (True, "2024-01-03"),
        (False, "2024-01-01"),
    ]
    assert summaries[1]["windows"] == [day(1).as_dict(), day(2).as_dict()]
    got = store.read(NS, "batch_probe", "m", Window(day(1).start, day(4).end))
    assert got["ts"].dt.day.tolist() == [1, 2, 3]
    assert got["rows"].tolist() == [24, 24, -1]  # day 3 kept what it had


def test_batches_are_bounded_by_the_data_they_cover():
    days = Window(day(1).start, day(1).start + timedelta(days=40)).split(timedelta(days=1))
    assert [len(b) for b in batches(days)] == [31, 9]
    assert [len(b) for b in batches(days, timedelta(days=7))] == [7] * 5 + [5]
    assert batches(days[:3], timedelta(0)) == [[d] for d in days[:3]]
    long = Window(day(1).start, day(1).start + timedelta(days=90))
    assert batches([long]) == [[long]]


def test_run_history_shows_a_gapped_batch_only_for_the_days_it_wrote(four_days: DeltaStore):
    from meshinsights.dashboard import data

    run_step(probe(lookback=None), "m", [day(1), day(3)], four_days, namespace=NS, run_id="gap")
    ro = data.ReadOnlyStore(four_days.root)
    catalog = data.load_catalog(ro)

    def steps_on(n: int) -> list[str]:
        history = data.run_history(ro, catalog, NS, "m", day(n))
        return history.loc[history["table_name"] == "batch_probe", "run_id"].tolist()

    assert (steps_on(1), steps_on(2), steps_on(3)) == (["gap"], [], ["gap"])


def test_a_reopened_window_follows_the_schedule_and_joins_the_batch(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    """A late row reopens the schedule interval it falls in (cut where an unaligned run
    starts, here 06:00), and it is processed in the same batch as the run's windows."""
    import sqlite3

    from meshinsights.config import load_configs
    from meshinsights.demo import seed
    from meshinsights.engine.runner import run_pipeline
    from tests.conftest import CONFIGS

    src = tmp_path / "src.db"
    seed(f"sqlite:///{src}", machines=1, days=3, seed=7)
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{src}")
    configs = load_configs(CONFIGS)
    store = DeltaStore(str(tmp_path / "s"))
    run_pipeline(configs, "hvac-001", Window(day(1).start, day(3).start), store)
    # The reopened window is the schedule's (@daily) interval holding the late row, cut
    # where the run starts: [day 2 00:00, day 2 06:00). Its rows before the late one:
    six = timedelta(hours=6)
    reopened = Window(day(2).start, day(2).start + six)
    before = len(store.read("minimal", "telemetry", "hvac-001", reopened))
    with sqlite3.connect(src) as conn:  # day 2, 03:00:30, arriving long after
        conn.execute(
            "INSERT INTO telemetry (machine_id, ts, metric, value, unit, ingested_at) VALUES "
            "('hvac-001', '2024-01-02 03:00:30', 'temperature', 21.5, 'degC', "
            "'2024-01-05 00:00:00')"
        )
    run = Window(day(2).start + six, day(3).start + six)
    version = store.version("minimal", "temperature_hourly")
    summaries = run_pipeline(configs, "hvac-001", run, store)
    ingests = [(s["window"]["start"][:16], s["late"]) for s in summaries if s["step"] == "ingest"]
    # The run's own windows follow the @daily timetable too: cut at day 3 00:00.
    assert ingests == [("2024-01-02T00:00", True), ("2024-01-02T06:00", False),
                       ("2024-01-03T00:00", False)]
    (hourly,) = [s for s in summaries if s["step"] == "average_temperature"]
    assert hourly["windows"] == [reopened.as_dict(),
                                 Window(run.start, day(3).start).as_dict(),
                                 Window(day(3).start, run.end).as_dict()]
    assert store.version("minimal", "temperature_hourly") == version + 1
    # The reopened window was re-ingested with the late row (here quarantined: it jumps).
    late = summaries[0]
    assert late["rows_in"] == late["rows_clean"] + late["rows_quarantined"] == before + 1
    quarantined = store.read("minimal", "quarantine", "hvac-001", day(2))
    assert pd.Timestamp("2024-01-02 03:00:30", tz="UTC") in set(quarantined["ts"])


def test_the_airflow_ingest_task_reruns_reopened_days_as_one_batch(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    """The DAG's ingest task (the function Airflow calls) reruns every window its late rows
    reopened in one batch: one commit per step for both days."""
    import sqlite3

    from meshinsights.airflow.tasks import ingest_task
    from meshinsights.config import load_configs
    from meshinsights.demo import seed
    from meshinsights.engine.runner import run_pipeline
    from tests.conftest import CONFIGS

    src = tmp_path / "src.db"
    seed(f"sqlite:///{src}", machines=1, days=4, seed=7)
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{src}")
    store = DeltaStore(str(tmp_path / "s"))
    run_pipeline(load_configs(CONFIGS), "hvac-001", Window(day(1).start, day(4).start), store)
    with sqlite3.connect(src) as conn:  # one late row each for days 1 and 2
        for ts in ("2024-01-01 05:00:30", "2024-01-02 05:00:30"):
            conn.execute(
                "INSERT INTO telemetry (machine_id, ts, metric, value, unit, ingested_at) "
                "VALUES ('hvac-001', ?, 'humidity', 45.0, '%', '2024-01-09 00:00:00')",
                (ts,),
            )
    version = store.version("minimal", "temperature_hourly")
    context = {"data_interval_start": day(4).start, "data_interval_end": day(4).end}
    out = ingest_task(str(CONFIGS), store.root, "hvac-001", context)
    assert out["late_windows"] == [day(1).as_dict(), day(2).as_dict()]
    assert store.version("minimal", "temperature_hourly") == version + 1
    (commit,) = [
        c for c in store.history("minimal", "temperature_hourly") if c["version"] == version + 1
    ]
    assert commit["meshinsights.window"] == Window(day(1).start, day(3).start).as_dict()
    assert commit["meshinsights.run_id"] == "airflow"


def test_a_run_of_several_machines_reports_each_machines_counts(four_days: DeltaStore):
    """A group's run history is per machine: run_step says what each machine read and got,
    also when no machine had rows and a step without a schema wrote nothing."""
    nothing = run_step(probe(lookback=None), ["m", "n"], day(9), four_days, namespace=NS)
    assert nothing["version"] is None and not four_days.exists(NS, "batch_probe")
    assert nothing["by_machine"] == {"m": {"rows_in": 0, "rows_out": 0},
                                     "n": {"rows_in": 0, "rows_out": 0}}
    done = run_step(probe(lookback=None), ["m", "n"], day(2), four_days, namespace=NS)
    assert done["by_machine"] == {"m": {"rows_in": 24, "rows_out": 1},
                                  "n": {"rows_in": 0, "rows_out": 0}}
