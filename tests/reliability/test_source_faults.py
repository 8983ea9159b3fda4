"""Source faults on the real MariaDB through a fault-injecting TCP proxy (real PyMySQL driver).

The database down (a refused port), slow (every result chunk delayed past the driver's read
timeout), and dropping the connection mid-result. In each case the incremental ingest (what the
Airflow ``ingest`` task runs) retries with backoff, fails with one clear ``ConnectorError`` when
its budget is spent, writes nothing (table versions and the watermark stay put), and the next
run, with the source back, catches up to exactly what an undisturbed run wrote.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from meshinsights.config import MachineConfig, PipelineConfig
from meshinsights.connectors.base import PluginManager
from meshinsights.engine.ingest import last_watermark, run_incremental
from meshinsights.errors import ConnectorError
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS
from tests.reliability.conftest import SeededMySQL, record, soak
from tests.reliability.proxy import FaultProxy, closed_port

pytestmark = pytest.mark.mysql

NS = "faults"
MID = "hvac-006"  # spikes and duplicate rows: quarantine and dedupe are part of the result
DAY1, DAY2 = Window.parse("2024-01-01", "2024-01-02"), Window.parse("2024-01-02", "2024-01-03")
TABLES = ("telemetry", "events", "quarantine")
ATTEMPTS = 4  # the SOURCE policy's budget (meshinsights.retry)
#: with_retry waits base·2^k · U(0.5, 1): at least 0.25 + 0.5 + 1.0 s over four attempts.
MIN_BACKOFF = 1.75

PIPELINE = PipelineConfig(name=NS, steps=[], validation={
    "temperature": {"min": -40, "max": 120, "max_rate_per_min": 10, "unit": "degC"}})


def _machine() -> MachineConfig:
    """hvac-006 with the repo's default SQL source queries (telemetry, events, late rows)."""
    defaults = yaml.safe_load((CONFIGS / "machines" / "_defaults.yaml").read_text())
    source = {**defaults["source"], "conn_id": "rel_faults"}
    return MachineConfig.model_validate({"machine_id": MID, "pipeline": NS,
                                         "start_date": "2024-01-01", "source": source})


def ingest(store: DeltaStore, url: str, window: Window) -> list[dict]:
    """One incremental ingest with its own connector pool (as a fresh task process would)."""
    with PluginManager() as manager:
        return run_incremental(_machine(), PIPELINE, window, store, run_id=f"rel-{window.start:%d}",
                               resolver=lambda _conn_id: url, manager=manager)


def tables(store: DeltaStore) -> dict[str, pd.DataFrame]:
    out = {}
    for t in TABLES:
        df = store.read_all(NS, t).drop(columns="month")
        out[t] = df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)
    return out


def state(store: DeltaStore) -> tuple[dict[str, int | None], pd.Timestamp | None]:
    return {t: store.version(NS, t) for t in TABLES}, last_watermark(store, NS, MID)


@pytest.fixture(scope="module")
def reference(seeded_mysql: SeededMySQL, tmp_path_factory: pytest.TempPathFactory) -> DeltaStore:
    """Both days ingested straight from the server: what a run without faults writes."""
    store = DeltaStore(str(tmp_path_factory.mktemp("ref") / "artifacts"))
    for day in (DAY1, DAY2):
        ingest(store, seeded_mysql.url(), day)
    return store


@pytest.fixture
def after_day1(seeded_mysql: SeededMySQL, tmp_path: Path) -> DeltaStore:
    """A store where day 1 ingested normally (so there is a watermark to protect)."""
    store = DeltaStore(str(tmp_path / "artifacts"))
    ingest(store, seeded_mysql.url(), DAY1)
    return store


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    """A fault proxy in front of the real MariaDB."""
    with FaultProxy(3306) as p:
        yield p


def retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "meshinsights.retry" and ": retrying in " in r.getMessage()]


def fails_cleanly(store: DeltaStore, url: str, seeded: SeededMySQL,
                  caplog: pytest.LogCaptureFixture) -> tuple[ConnectorError, float]:
    """Day 2 fails after the whole retry budget and changes nothing in the store."""
    before = state(store)
    caplog.clear()
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info, caplog.at_level(logging.WARNING):
        ingest(store, url, DAY2)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert f"failed after {ATTEMPTS} attempts" in message and "watermark did not move" in message
    assert seeded.password not in message and seeded.password not in caplog.text
    assert [m.split("(attempt ")[1][:3] for m in retries(caplog)] == ["1/4", "2/4", "3/4"]
    assert elapsed >= MIN_BACKOFF
    assert state(store) == before  # no table version moved, the watermark neither
    return info.value, elapsed


def catches_up(store: DeltaStore, url: str, reference: DeltaStore, *, advances: bool = True
               ) -> None:
    """The next run with the source back: the tables equal an undisturbed run's, row for row."""
    before = last_watermark(store, NS, MID)
    [summary] = ingest(store, url, DAY2)
    assert summary["rows_in"] == (summary["rows_clean"] + summary["rows_quarantined"]
                                  + summary["duplicates_removed"])
    result, expected = tables(store), tables(reference)
    for t in TABLES:
        pd.testing.assert_frame_equal(result[t], expected[t], obj=t)
    after = last_watermark(store, NS, MID)
    assert after == last_watermark(reference, NS, MID) and (after > before or not advances)


def test_database_down_retries_with_backoff_then_catches_up(
        seeded_mysql, reference, after_day1, caplog):
    down = seeded_mysql.url(port=closed_port())
    exc, elapsed = fails_cleanly(after_day1, down, seeded_mysql, caplog)
    assert "transient database error" in str(exc) and "Can't connect" in str(exc)
    assert elapsed < 30  # refusals are immediate: the time is the backoff
    catches_up(after_day1, seeded_mysql.url(), reference)
    record("source_down", attempts=ATTEMPTS, seconds_to_fail=round(elapsed, 2), caught_up=True)


def test_connection_dropped_mid_result_retries_then_catches_up(
        seeded_mysql, reference, after_day1, proxy, caplog):
    # ~40 kB into a ~400 kB result: the handshake and the small late-data query get through.
    proxy.set("cut", cut_after=40_000)
    exc, elapsed = fails_cleanly(after_day1, seeded_mysql.url(port=proxy.port), seeded_mysql,
                                 caplog)
    assert proxy.cuts == ATTEMPTS and len(proxy.accepted) >= ATTEMPTS
    gaps = pd.Series(proxy.accepted).diff().dropna().tolist()[-(ATTEMPTS - 1):]
    assert gaps == sorted(gaps), f"backoff must grow: {gaps}"
    assert "Lost connection" in str(exc) or "lost connection" in str(exc).lower()
    record("source_dropped", attempts=ATTEMPTS, cuts=proxy.cuts, seconds_to_fail=round(elapsed, 2),
           backoff_gaps_s=[round(g, 2) for g in gaps], caught_up=True)
    proxy.set("pass")
    catches_up(after_day1, seeded_mysql.url(port=proxy.port), reference)


def test_one_dropped_connection_is_absorbed_by_a_retry(seeded_mysql, reference, after_day1,
                                                       proxy, caplog):
    proxy.set("cut", cut_after=40_000, times=1)
    with caplog.at_level(logging.WARNING):
        catches_up(after_day1, seeded_mysql.url(port=proxy.port), reference)
    assert proxy.cuts == 1 and len(retries(caplog)) == 1
    record("source_one_drop", cuts=1, retries=1, same_rows_as_clean_run=True)


def test_slow_database_past_the_read_timeout_fails_then_catches_up(
        seeded_mysql, reference, after_day1, proxy, caplog):
    # Handshake and the late-data query pass; then each result chunk waits 3 s > read_timeout.
    proxy.set("slow", delay=3.0, delay_after=4_000)
    url = seeded_mysql.url(port=proxy.port, read_timeout="1")
    exc, elapsed = fails_cleanly(after_day1, url, seeded_mysql, caplog)
    assert "timed out" in str(exc) or "Lost connection" in str(exc)
    record("source_slow_timeout", attempts=ATTEMPTS, seconds_to_fail=round(elapsed, 2),
           caught_up=True)
    proxy.set("pass")
    catches_up(after_day1, url, reference)


def test_slow_database_within_the_timeout_gives_the_same_rows(
        seeded_mysql, reference, after_day1, proxy, caplog):
    proxy.set("slow", delay=0.02)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        catches_up(after_day1, seeded_mysql.url(port=proxy.port, read_timeout="5"), reference)
    seconds = time.monotonic() - started
    assert retries(caplog) == [] and seconds > 0.5
    record("source_slow_ok", seconds=round(seconds, 2), retries=0, same_rows_as_clean_run=True)


def random_faults(store: DeltaStore, seeded: SeededMySQL, reference: DeltaStore,
                  proxy: FaultProxy, trials: int, seed: int) -> dict[str, int]:
    """Random cut points and counts: every run ends correct or cleanly failed, never partial."""
    rng = random.Random(seed)
    url = seeded.url(port=proxy.port)
    outcome = {"trials": trials, "succeeded": 0, "failed_cleanly": 0, "connections_cut": 0}
    for _ in range(trials):
        before = state(store)
        proxy.set("cut", cut_after=rng.choice([0, 50, 300, 5_000, 60_000, 250_000]),
                  times=rng.randint(0, 6))
        try:
            ingest(store, url, DAY2)
        except ConnectorError as exc:
            assert "failed after 4 attempts" in str(exc), exc
            assert state(store) == before
            outcome["failed_cleanly"] += 1
        else:
            for t, frame in tables(store).items():
                pd.testing.assert_frame_equal(frame, tables(reference)[t], obj=t)
            outcome["succeeded"] += 1
        outcome["connections_cut"] += proxy.cuts
    proxy.set("pass")
    catches_up(store, url, reference, advances=not outcome["succeeded"])
    return outcome


def test_random_drops_end_correct_or_cleanly_failed(seeded_mysql, reference, after_day1, proxy):
    record("source_random_drops",
           **random_faults(after_day1, seeded_mysql, reference, proxy, trials=4, seed=7))


@soak
def test_soak_random_drops(seeded_mysql, reference, after_day1, proxy):
    outcome = random_faults(after_day1, seeded_mysql, reference, proxy, trials=60,
                            seed=int(time.time()))
    assert outcome["succeeded"] and outcome["failed_cleanly"]  # both paths were exercised
    record("source_random_drops_soak", **outcome)
