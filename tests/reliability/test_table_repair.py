"""A damaged table is reported by name, the others keep working, and `maintenance repair`
brings it back: a truncated commit file, a deleted data file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from meshinsights.cli import app
from meshinsights.errors import BrokenTableError, StoreError
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from meshinsights.store.repair import repair_table
from meshinsights.store.sql import ArtifactSQL

runner = CliRunner()
NS = "pipe"


def day(n: int) -> Window:
    start = datetime(2024, 1, n, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


def _frame(n: int) -> pd.DataFrame:
    ts = pd.date_range(day(n).start, periods=24, freq="1h")
    values = [float(n * 100 + h) for h in range(24)]
    return pd.DataFrame({"machine_id": "m-1", "ts": ts, "value": values})


@pytest.fixture
def damaged(store: DeltaStore) -> DeltaStore:
    """Tables ``good`` and ``bad`` with days 1-3; ``bad``'s last commit file truncated."""
    for table in ("good", "bad"):
        for n in (1, 2, 3):
            store.overwrite(NS, table, _frame(n), machine_ids="m-1", window=day(n),
                            metadata={"meshinsights.step": table})
    log = Path(store.uri(NS, "bad")) / "_delta_log"
    last = sorted(log.glob("*.json"))[-1]
    last.write_bytes(last.read_bytes()[:120])  # a disk filled up mid-write
    return store


def _cli(store: DeltaStore, *args: str):
    return runner.invoke(app, ["--store", store.root, *args])


def test_a_truncated_commit_is_named_and_every_other_table_keeps_working(damaged) -> None:
    fresh = DeltaStore(damaged.root)  # a new process's view: nothing cached
    with pytest.raises(BrokenTableError, match=f"{NS}/bad cannot be read.*maintenance repair"):
        fresh.read_all(NS, "bad")
    assert [t.name for t in fresh.tables()] == ["good"]
    assert list(fresh.broken) == [f"{NS}/bad"]

    listing = _cli(damaged, "tables")
    assert listing.exit_code == 1  # visible, not a quiet success
    assert "good" in listing.output and "unreadable" in listing.output
    assert "maintenance repair" in listing.output
    with ArtifactSQL(fresh) as sql:
        assert sql.execute(f"SELECT count(*) AS n FROM {NS}__good").to_pylist() == [{"n": 72}]
        with pytest.raises(StoreError, match="bad cannot be read"):
            sql.execute(f"SELECT * FROM {NS}__bad")
    query = _cli(damaged, "sql", "-e", f"SELECT count(*) FROM {NS}__good")
    assert query.exit_code == 0 and "72" in query.output
    compacted = _cli(damaged, "maintenance", "compact")
    assert compacted.exit_code == 0 and "good" in compacted.output
    # Writing the broken table is a one-line StoreError too, not a Rust traceback.
    with pytest.raises(BrokenTableError):
        fresh.overwrite(NS, "bad", _frame(4), machine_ids="m-1", window=day(4))


def test_repair_restores_the_last_readable_version_and_lists_what_to_rerun(damaged) -> None:
    dry = _cli(damaged, "maintenance", "repair", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    (planned,) = [r for r in json.loads(dry.output) if r["moved_aside"]]
    unchanged = DeltaStore(damaged.root)
    assert [t.name for t in unchanged.tables()] == ["good"] and unchanged.broken

    done = _cli(damaged, "maintenance", "repair", "--json")
    assert done.exit_code == 0, done.output
    (fixed,) = [r for r in json.loads(done.output) if r["table"] == "bad"]
    assert fixed["restored_version"] == planned["restored_version"] == 2
    assert fixed["moved_aside"] == ["_delta_log/00000000000000000003.json"]
    assert fixed["lost_writes"] == [{"version": 3, "unreadable": True}]
    fresh = DeltaStore(damaged.root)
    assert sorted(fresh.read_all(NS, "bad")["ts"].dt.day.unique().tolist()) == [1, 2]
    assert fresh.broken == {}
    # The damaged commit is kept aside, not deleted; the lost window can be written again.
    aside = list((Path(fresh.uri(NS, "bad")) / "_delta_log" / "_damaged").rglob("*.json"))
    assert [p.name for p in aside] == ["00000000000000000003.json"]
    fresh.overwrite(NS, "bad", _frame(3), machine_ids="m-1", window=day(3))
    assert len(fresh.read_all(NS, "bad")) == 72
    again = repair_table(fresh, NS, "bad")
    assert not again.changed  # a healthy table: repair changes nothing


def test_repair_drops_a_lost_data_file_so_its_window_can_be_rewritten(store: DeltaStore) -> None:
    for n in (1, 2):
        store.overwrite(NS, "t", _frame(n), machine_ids="m-1", window=day(n))
    actions = pa.table(store._open(NS, "t").get_add_actions(flatten=True)).to_pylist()
    (path,) = [a["path"] for a in actions if a["min.ts"].day == 1]
    lost = Path(store.uri(NS, "t")) / path
    lost.unlink()
    fresh = DeltaStore(store.root)
    # Reading or rewriting that window is a one-line error naming the table and the way out.
    with pytest.raises(BrokenTableError, match="maintenance repair"):
        fresh.read_all(NS, "t")
    with pytest.raises(BrokenTableError, match="maintenance repair"):
        fresh.read(NS, "t", "m-1", day(1))
    with pytest.raises(BrokenTableError, match="(?i)failed to fetch metadata.*maintenance repair"):
        fresh.overwrite(NS, "t", _frame(1), machine_ids="m-1", window=day(1))

    shown = _cli(store, "maintenance", "repair", "-t", "t", "--dry-run")
    assert shown.exit_code == 0 and "1 missing file(s) dropped" in shown.output
    done = _cli(store, "maintenance", "repair", "-t", "t", "--json")
    assert done.exit_code == 0, done.output
    (fixed,) = json.loads(done.output)
    assert [Path(f).name for f in fixed["missing_files"]] == [lost.name]
    fresh = DeltaStore(store.root)
    assert len(fresh.read_all(NS, "t")) == 24  # the other day's rows
    fresh.overwrite(NS, "t", _frame(1), machine_ids="m-1", window=day(1))
    fresh.overwrite(NS, "t", _frame(2), machine_ids="m-1", window=day(2))
    assert len(fresh.read_all(NS, "t")) == 48
    unknown = _cli(store, "maintenance", "repair", "-t", "nope")
    assert unknown.exit_code == 1 and "no table matches" in str(unknown.exception)


def test_maintenance_on_a_store_it_cannot_write_fails_in_one_line(store, monkeypatch) -> None:
    """Root ignores file modes here, so the read-only store is injected where delta-rs would
    raise it (PermissionError from the object store layer)."""
    import meshinsights.store.delta as delta

    for n in (1, 2):
        store.overwrite(NS, "t", _frame(n), machine_ids="m-1", window=day(n))

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied (os error 13)")

    monkeypatch.setattr(delta, "compact_table", refuse)
    done = _cli(store, "maintenance", "compact")
    assert done.exit_code == 1
    message = str(done.exception)
    assert f"{NS}/t" in message and "read-only for this user" in message
    assert "\n" not in message and "Traceback" not in message
