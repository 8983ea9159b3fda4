"""The live demo source: a timeline that ends at *now*, and a feeder that appends what arrives.

A live demo is the ordinary demo fleet (:func:`meshinsights.demo.seed`) started a couple of
days before today, seeded with the rows that had arrived by now; the feeder then appends,
every ``interval`` seconds, the rows whose ``ingested_at`` has come since — the fleet's faults
included (the late block two days after its time, re-sent duplicates, the alarm flood, the
stuck sensor). Given the seed and the start the rows are fixed, so a seed at ``t1`` and a seed
at ``t0`` fed up to ``t1`` hold the same rows. ``make run`` starts it as its own process:
``python -m meshinsights.demo_feed --url ... --start ... --since ...``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from meshinsights.demo import (
    DemoFleet,
    arrived,
    event_rows_of,
    generate_machine,
    machine_ids,
    rows_of,
    seed,
    timestamps,
)
from meshinsights.demo_sql import SQLWriter

__all__ = ["LiveDemo", "Feeder", "seed_live", "run_feeder", "main"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveDemo:
    """What fixes a live demo's rows: the source, the fleet size, the timeline and the seed."""

    url: str
    start: datetime
    machines: int = 10
    days: int = 7
    seed: int = 7

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def argv(self, since: datetime, *, interval: float = 60.0) -> list[str]:
        """The feeder's command line (a fresh interpreter: never a fork of this process)."""
        return [
            sys.executable,
            "-m",
            "meshinsights.demo_feed",
            "--url",
            self.url,
            "--start",
            self.start.isoformat(),
            "--machines",
            str(self.machines),
            "--days",
            str(self.days),
            "--seed",
            str(self.seed),
            "--since",
            since.isoformat(),
            "--interval",
            str(interval),
        ]


def seed_live(demo: LiveDemo, now: datetime) -> DemoFleet:
    """(Re)write the source with every row of ``demo`` that had arrived by ``now``."""
    return seed(
        demo.url,
        machines=demo.machines,
        days=demo.days,
        seed=demo.seed,
        start=demo.start,
        until=now,
    )


class Feeder:
    """Appends the rows of a live demo that arrive in a time range (timeline generated once)."""

    def __init__(self, demo: LiveDemo) -> None:
        self.demo = demo
        self.ts_text = timestamps(demo.start, demo.days)
        self.data = {
            mid: generate_machine(number, demo.start, demo.days, demo.seed)
            for number, mid in enumerate(machine_ids(demo.machines), start=1)
        }

    def _minutes(self, moment: datetime) -> float:
        return (moment - self.demo.start).total_seconds() / 60

    def feed(self, after: datetime, upto: datetime) -> tuple[int, int]:
        """Append the rows that arrived in ``(after, upto]``; returns (telemetry, events) rows."""
        writer = SQLWriter(self.demo.url, mode="append")
        rows = events = 0
        try:
            for mid, data in self.data.items():
                came = arrived(data, after=self._minutes(after), upto=self._minutes(upto))
                writer.insert("telemetry", rows_of(mid, came, self.ts_text))
                writer.insert("events", event_rows_of(mid, came.events, self.ts_text))
                rows += len(came.minute)
                events += len(came.events)
            writer.close()
        except BaseException:
            writer.conn.close()
            raise
        return rows, events


def _utcnow() -> datetime:
    return datetime.now(UTC)


def run_feeder(
    demo: LiveDemo,
    since: datetime,
    *,
    interval: float = 60.0,
    clock: Callable[[], datetime] = _utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Feed every ``interval`` seconds until the timeline ends (or SIGTERM); returns rows fed."""
    feeder = Feeder(demo)
    last, total = since, 0
    logger.warning("feeding %s from %s every %.0fs", demo.url, since.isoformat(), interval)
    while last < demo.end:
        sleep(interval)
        now = min(clock(), demo.end)
        rows, events = feeder.feed(last, now)
        total += rows
        # WARNING: the feeder's log is what `make run` keeps; one line a minute.
        logger.warning(
            "fed %d telemetry rows and %d events that arrived in (%s, %s]",
            rows,
            events,
            last.isoformat(timespec="seconds"),
            now.isoformat(timespec="seconds"),
        )
        last = now
    logger.warning("the demo timeline ends at %s: nothing more to feed", demo.end.isoformat())
    return total


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_feed", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--start", required=True, type=datetime.fromisoformat)
    parser.add_argument("--since", required=True, type=datetime.fromisoformat)
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--interval", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    demo = LiveDemo(args.url, args.start, args.machines, args.days, args.seed)
    run_feeder(demo, args.since, interval=args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
