"""The partition store: idempotent overwrite, isolation of machines/windows, and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.errors import ConfigError, StoreError
from meshinsights.model import TELEMETRY_SCHEMA, Window
from meshinsights.store import DeltaStore
from meshinsights.store.predicates import quote, window_predicate

NS = "unit"


def frame(machine: str, start: str, hours: int, value: float = 1.0) -> pd.DataFrame:
    ts = pd.date_range(start, periods=hours, freq="1h", tz="UTC")
    return pd.DataFrame(
        {
            "machine_id": machine,
            "ts": ts,
            "metric": "temperature",
            "value": value + np.arange(hours, dtype=float),
            "unit": "degC",
            "ingested_at": ts,
        }
    )


def write(store: DeltaStore, df: pd.DataFrame, machine: str, window: Window) -> None:
    store.overwrite(
        NS, "telemetry", df, machine_ids=machine, window=window, schema=TELEMETRY_SCHEMA
    )


def everything(store: DeltaStore) -> pd.DataFrame:
    df = store.read_all(NS, "telemetry").drop(columns="month")
    return df.sort_values(["machine_id", "ts"]).reset_index(drop=True)


def test_overwrite_twice_leaves_same_rows_and_others_untouched(store: DeltaStore, day: Window):
    day2 = Window(day.end, day.end + timedelta(days=1))
    write(store, frame("a", "2024-01-01", 24), "a", day)
    write(store, frame("a", "2024-01-02", 24, 100.0), "a", day2)
    write(store, frame("b", "2024-01-01", 24, 50.0), "b", day)
    before = everything(store)

    write(store, frame("a", "2024-01-01", 24), "a", day)
    assert_frame_equal(everything(store), before)

    # A changed rerun replaces only machine a, day 1.
    write(store, frame("a", "2024-01-01", 12, 7.0), "a", day)
    after = everything(store)
    assert len(after) == 24 + 24 + 12
    got = after[(after.machine_id == "a") & (after.ts < pd.Timestamp(day.end))]
    assert got["value"].tolist() == [7.0 + i for i in range(12)]
    untouched = before[(before.machine_id == "b") | (before.ts >= pd.Timestamp(day.end))]
    rest = after[(after.machine_id == "b") | (after.ts >= pd.Timestamp(day.end))]
    assert_frame_equal(rest.reset_index(drop=True), untouched.reset_index(drop=True))


def test_read_returns_only_the_machine_window(store: DeltaStore, day: Window):
    write(
        store, frame("a", "2024-01-01", 48), "a", Window(day.start, day.start + timedelta(days=2))
    )
    write(store, frame("b", "2024-01-01", 24), "b", day)
    got = store.read(NS, "telemetry", "a", day)
    assert set(got.machine_id) == {"a"}
    assert len(got) == 24
    assert got.ts.min() == pd.Timestamp("2024-01-01", tz="UTC")
    assert got.ts.max() == pd.Timestamp("2024-01-01T23:00", tz="UTC")


def test_window_spanning_months_and_group_write(store: DeltaStore):
    w = Window(datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 2, 2, tzinfo=UTC))
    both = pd.concat([frame("a", "2024-01-31", 48), frame("b", "2024-01-31", 48)])
    store.overwrite(
        NS, "telemetry", both, machine_ids=["a", "b"], window=w, schema=TELEMETRY_SCHEMA
    )
    assert w.months() == ["2024-01", "2024-02"]
    assert len(store.read(NS, "telemetry", ["a", "b"], w)) == 96
    assert sorted(store.read_all(NS, "telemetry")["month"].unique()) == ["2024-01", "2024-02"]


def test_empty_frame_clears_the_window(store: DeltaStore, day: Window):
    write(store, frame("a", "2024-01-01", 24), "a", day)
    write(store, frame("a", "2024-01-01", 0), "a", day)
    assert store.read(NS, "telemetry", "a", day).empty


def test_commit_metadata_is_recorded(store: DeltaStore, day: Window):
    store.overwrite(
        NS,
        "telemetry",
        frame("a", "2024-01-01", 3),
        machine_ids="a",
        window=day,
        schema=TELEMETRY_SCHEMA,
        metadata={"meshinsights.run_id": "r-1"},
    )
    last = store.history(NS, "telemetry", 1)[0]
    assert last["meshinsights.run_id"] == "r-1"
    assert last["meshinsights.rows_written"] == 3
    assert last["meshinsights.window"] == day.as_dict()


def test_nan_is_stored_as_null(store: DeltaStore, day: Window):
    df = frame("a", "2024-01-01", 3)
    df.loc[1, "value"] = np.nan
    write(store, df, "a", day)
    got = store.read(NS, "telemetry", "a", day)
    assert got["value"].isna().tolist() == [False, True, False]


BAD_CASES = [
    ("naive_ts", lambda df: df.assign(ts=df.ts.dt.tz_localize(None)), "timezone-naive"),
    ("string_ts", lambda df: df.assign(ts=df.ts.astype(str)), "expected timezone-aware"),
    ("missing_machine", lambda df: df.drop(columns="machine_id"), "lacks key column"),
    ("inf_value", lambda df: df.assign(value=[np.inf, 1.0, 2.0]), "infinite"),
    ("text_in_value", lambda df: df.assign(value=["x", "1", "2"]), "column value has type"),
    ("missing_column", lambda df: df.drop(columns="unit"), "lacks column(s) ['unit']"),
    ("extra_column", lambda df: df.assign(extra=1), "does not declare"),
    ("outside_window", lambda df: df.assign(ts=df.ts + pd.Timedelta(days=3)), "outside the window"),
    ("other_machine", lambda df: df.assign(machine_id="z"), "other than"),
    ("null_machine", lambda df: df.assign(machine_id=None), "null machine_id"),
]


@pytest.mark.parametrize(
    "mutate,message", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    store: DeltaStore, day: Window, mutate, message
):
    write(store, frame("a", "2024-01-01", 3), "a", day)
    before = store.version(NS, "telemetry")
    with pytest.raises(
        StoreError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        write(store, mutate(frame("a", "2024-01-01", 3)), "a", day)
    assert store.version(NS, "telemetry") == before


def test_schema_evolution_is_explicit(store: DeltaStore, day: Window):
    schema = pa.schema(
        [("machine_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("v", pa.float64())]
    )
    df = pd.DataFrame(
        {"machine_id": ["a"], "ts": [pd.Timestamp("2024-01-01", tz="UTC")], "v": [1.0]}
    )
    store.overwrite(NS, "t", df, machine_ids="a", window=day, schema=schema)
    with pytest.raises(StoreError, match="set evolve: true on the step"):
        store.overwrite(NS, "t", df.assign(w=2.0), machine_ids="a", window=day)
    store.overwrite(NS, "t", df.assign(w=2.0), machine_ids="a", window=day, evolve=True)
    assert store.read(NS, "t", "a", day)["w"].tolist() == [2.0]


def test_unsafe_names_are_rejected(store: DeltaStore):
    for bad in ("../etc", "a/b", "Tele", ""):
        with pytest.raises(ConfigError):
            store.uri(NS, bad)


def test_predicate_quotes_values(day: Window):
    assert quote("o'neil") == "'o''neil'"
    pred = window_predicate(["x' OR '1'='1"], day)
    assert "machine_id = 'x'' OR ''1''=''1'" in pred
    assert "month = '2024-01'" in pred


def test_missing_table_read_is_a_clear_error(store: DeltaStore, day: Window):
    with pytest.raises(StoreError, match="does not exist.*run the step"):
        store.read(NS, "nothing", "a", day)


def test_tables_lists_versions_and_rows(store: DeltaStore, day: Window):
    write(store, frame("a", "2024-01-01", 5), "a", day)
    write(store, frame("b", "2024-01-01", 7), "b", day)
    (info,) = store.tables()
    # version 0 creates the empty table, then one commit per write
    assert (info.namespace, info.name, info.version, info.rows) == (NS, "telemetry", 2, 12)


def test_stray_folders_in_the_store_are_skipped(store: DeltaStore, day: Window):
    from pathlib import Path

    write(store, frame("a", "2024-01-01", 2), "a", day)
    (Path(store.root) / "lost+found").mkdir()
    (Path(store.root) / NS / "Not-A-Table").mkdir()
    assert [(t.namespace, t.name) for t in store.tables()] == [(NS, "telemetry")]


def test_a_kept_table_sees_other_writers_commits(store: DeltaStore, day: Window):
    """Open tables are kept per thread and refreshed: another writer's commit is never missed."""
    write(store, frame("a", "2024-01-01", 24), "a", day)
    assert len(store.read(NS, "telemetry", "a", day)) == 24  # this store now keeps the table
    other = DeltaStore(store.root)
    other.overwrite(
        NS,
        "telemetry",
        frame("a", "2024-01-01", 5, 9.0),
        machine_ids="a",
        window=day,
        schema=TELEMETRY_SCHEMA,
    )
    seen = store.read(NS, "telemetry", "a", day)
    assert seen["value"].tolist() == [9.0, 10.0, 11.0, 12.0, 13.0]
    assert store.version(NS, "telemetry") == other.version(NS, "telemetry")
    # ...and a commit made through the kept table returns its own version.
    result = store.overwrite(
        NS,
        "telemetry",
        frame("a", "2024-01-01", 24),
        machine_ids="a",
        window=day,
        schema=TELEMETRY_SCHEMA,
    )
    assert result.version == other.version(NS, "telemetry")


def test_tables_checkpoint_every_ten_commits(store: DeltaStore, day: Window):
    """Opening replays at most ten JSON commits after a Parquet checkpoint (bench: partitions)."""
    import json
    from pathlib import Path

    from meshinsights.store.delta import CHECKPOINT_INTERVAL

    for i in range(CHECKPOINT_INTERVAL + 1):
        write(store, frame("a", "2024-01-01", 24, float(i)), "a", day)
    log = store.uri(NS, "telemetry") + "/_delta_log"
    last = json.loads((Path(log) / "_last_checkpoint").read_text())
    assert 0 < store.version(NS, "telemetry") - last["version"] <= CHECKPOINT_INTERVAL
    assert store.read(NS, "telemetry", "a", day)["value"].iloc[0] == float(CHECKPOINT_INTERVAL)


def test_files_carry_statistics_for_ts_only(store: DeltaStore, day: Window):
    """The log keeps min/max for ts (window reads) and no other column (bench: partitions)."""
    from deltalake import DeltaTable

    write(store, frame("a", "2024-01-01", 24), "a", day)
    actions = DeltaTable(store.uri(NS, "telemetry")).get_add_actions(flatten=True)
    stats = sorted(c for c in actions.schema.names if c.startswith(("min.", "max.")))
    assert stats == ["max.ts", "min.ts"]
    assert actions.column("min.ts")[0].as_py() == pd.Timestamp("2024-01-01", tz="UTC")
    afternoon = Window(day.start + timedelta(hours=12), day.end)
    assert store.read(NS, "telemetry", "a", afternoon)["value"].tolist() == [
        13.0 + i for i in range(12)
    ]


def test_compact_upgrades_a_table_created_without_the_properties(store: DeltaStore, day: Window):
    from deltalake import DeltaTable, write_deltalake

    from meshinsights.store.delta import TABLE_PROPERTIES
    from meshinsights.store.frames import prepare

    uri = store.uri(NS, "telemetry")
    for hours in (range(0, 12), range(12, 24)):  # an older table: all stats, two files
        df = frame("a", "2024-01-01", 24).iloc[list(hours)]
        arrow = prepare(df, table="t", schema=TELEMETRY_SCHEMA, evolve=False)
        write_deltalake(uri, arrow, mode="append", partition_by=["machine_id", "month"])
    assert "min.value" in DeltaTable(uri).get_add_actions(flatten=True).schema.names

    store.compact(NS, "telemetry")

    dt = DeltaTable(uri)
    assert dt.metadata().configuration == TABLE_PROPERTIES
    actions = dt.get_add_actions(flatten=True)
    assert actions.num_rows == 1
    assert "min.value" not in actions.schema.names and "min.ts" in actions.schema.names
    assert everything(store)["value"].tolist() == [1.0 + i for i in range(24)]


def test_a_kept_table_is_reloaded_after_many_commits(store: DeltaStore, day: Window, monkeypatch):
    """A kept table grows with every commit it is brought forward by: past a bound, reload."""
    import meshinsights.store.handles as handles

    monkeypatch.setattr(handles, "_MAX_REFRESHED_COMMITS", 3)
    write(store, frame("a", "2024-01-01", 24), "a", day)  # loaded at creation (v0), now v1
    first = store._open(NS, "telemetry")
    other = DeltaStore(store.root)
    for i in range(2):
        write(other, frame("a", "2024-01-01", 24, float(i)), "a", day)
    assert store._open(NS, "telemetry") is first  # 3 commits since loading: refreshed
    write(other, frame("a", "2024-01-01", 24, 7.0), "a", day)
    fresh = store._open(NS, "telemetry")
    assert fresh is not first and fresh.version() == other.version(NS, "telemetry")
    assert store.read(NS, "telemetry", "a", day)["value"].iloc[0] == 7.0
