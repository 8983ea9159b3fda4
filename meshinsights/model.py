"""The data model: canonical table schemas, the ``Window`` a step runs over, and table names.

No I/O here. Every artifact table has ``machine_id`` and ``ts`` (UTC); the store adds the
``month`` partition column derived from ``ts``. A source that names a run column (a robot
run, a batch, a test) adds ``run_id`` to its tables (:func:`with_run`), and a pipeline
windowed by run processes one run at a time: a :class:`Window` whose ``run`` is set covers
that run's rows only, over the run's span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from meshinsights.errors import ConfigError

__all__ = [
    "TS",
    "TELEMETRY_SCHEMA",
    "EVENTS_SCHEMA",
    "QUARANTINE_SCHEMA",
    "SOURCE_TABLES",
    "RESERVED_TABLES",
    "Window",
    "Windows",
    "contiguous_groups",
    "spans",
    "check_table_name",
    "check_machine_id",
    "month_of",
    "parse_instant",
    "RUN",
    "RUN_INDEX",
    "with_run",
]

TS = pa.timestamp("us", tz="UTC")

#: Tables ingest writes: steps read them, none may write them.
SOURCE_TABLES = frozenset({"telemetry", "events", "quarantine"})
#: The run column a source with runs adds to every table derived from it.
RUN = "run_id"
#: The per-run index ingest keeps for sources with runs (each run's span, digest, update).
RUN_INDEX = "run_index"
#: Table names no step may write: ingest's, the run index, and the run registry's.
RESERVED_TABLES = SOURCE_TABLES | {"runs", RUN_INDEX}

TELEMETRY_SCHEMA = pa.schema(
    [
        pa.field("machine_id", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("unit", pa.string()),
        pa.field("ingested_at", TS),
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("machine_id", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("kind", pa.string()),  # event | alarm | log
        pa.field("severity", pa.string()),
        pa.field("code", pa.string()),
        pa.field("message", pa.string()),
        pa.field("ingested_at", TS),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("machine_id", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),  # the row's own time, or the window start if unparsable
        pa.field("source_table", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("original", pa.string()),  # the offending row as JSON, values untouched
    ]
)


def with_run(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the nullable ``run_id`` column (unchanged if it has one)."""
    return schema if RUN in schema.names else schema.append(pa.field(RUN, pa.string()))


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_MACHINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_table_name(name: str) -> str:
    """Return ``name`` if it is a safe table name (it becomes a path segment), else raise."""
    # fullmatch: with match, "$" also accepts a trailing newline ("telemetry\n").
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"invalid table name {name!r}: use lowercase letters, digits and '_' "
            "(starting with a letter, at most 63 characters)"
        )
    return name


def check_machine_id(machine_id: str) -> str:
    """Return ``machine_id`` if it is a safe machine id, else raise ConfigError."""
    if not isinstance(machine_id, str) or not _MACHINE.fullmatch(machine_id):
        raise ConfigError(
            f"invalid machine id {machine_id!r}: use letters, digits, '_', '-', '.' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return machine_id


def month_of(ts: datetime | date) -> str:
    """The ``month`` partition value of a timestamp: ``YYYY-MM``."""
    return f"{ts.year:04d}-{ts.month:02d}"


def _as_utc(value: datetime | str, field: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(
                f"window {field} {value!r} is not an ISO date/time; use e.g. 2024-01-31 or "
                "2024-01-31T00:00:00+00:00"
            ) from exc
    if not isinstance(value, datetime):  # a date or pendulum Date
        value = datetime(value.year, value.month, value.day)
    # Naive times are taken as UTC: the documented normalization for CLI input.
    v = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # A plain datetime, never a subclass: pendulum's (Airflow's) loses its zone in arithmetic.
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=UTC)


#: The span any window must lie in: wide for sensor data, and far enough inside datetime's
#: limits that a lookback or a schedule tick from its edge cannot overflow.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def parse_instant(value: datetime | str, field: str = "time") -> datetime:
    """One ISO date/time (naive = UTC) as an aware UTC datetime; ConfigError naming ``field``."""
    return _as_utc(value, field)


@dataclass(frozen=True, order=True)
class Window:
    """A half-open time range ``[start, end)`` in UTC: what one run of a step covers.

    With ``run`` set, the window is one run of the machine (a pipeline windowed by run): its
    rows are the run's, and ``[start, end)`` is the run's span. Runs of one machine may
    overlap in time; two run windows never share a row.
    """

    start: datetime
    end: datetime
    run: str | None = None

    def __post_init__(self) -> None:
        if self.run is not None and (not isinstance(self.run, str) or not self.run.strip()):
            raise ConfigError(f"run id {self.run!r} is not a non-empty string; pass a run id")
        start, end = _as_utc(self.start, "start"), _as_utc(self.end, "end")
        if start < EARLIEST or end > LATEST:
            raise ConfigError(
                f"window {start.date()} → {end.date()} reaches outside "
                f"{EARLIEST.date()} → {LATEST.date()}, the range MeshInsights windows cover "
                "(a typo in a date?); pass --start/--end inside it"
            )
        if end <= start:
            raise ConfigError(
                f"window end {end.isoformat()} is not after start {start.isoformat()}; "
                "pass --end later than --start"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @classmethod
    def parse(cls, start: Any, end: Any, run: str | None = None) -> Window:
        return cls(_as_utc(start, "start"), _as_utc(end, "end"), run)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        """The inverse of :meth:`as_dict`."""
        return cls.parse(data["start"], data["end"], data.get("run"))

    @classmethod
    def day(cls, day: date | str) -> Window:
        start = _as_utc(
            day if isinstance(day, str) else datetime(day.year, day.month, day.day), "start"
        )
        return cls(start, start + timedelta(days=1))

    def months(self) -> list[str]:
        """Every ``month`` partition value the window touches."""
        out, cur = [], datetime(self.start.year, self.start.month, 1, tzinfo=UTC)
        while cur < self.end:
            out.append(month_of(cur))
            cur = datetime(cur.year + cur.month // 12, cur.month % 12 + 1, 1, tzinfo=UTC)
        return out

    def split(self, freq: timedelta) -> list[Window]:
        """Consecutive sub-windows of length ``freq`` (the last may be shorter)."""
        out, cur = [], self.start
        while cur < self.end:
            nxt = min(cur + freq, self.end)
            out.append(Window(cur, nxt))
            cur = nxt
        return out

    def as_dict(self) -> dict[str, str]:
        out = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        if self.run is not None:
            out["run"] = self.run
        return out

    def overlaps(self, other: Window) -> bool:
        """Whether the two windows share any row: an instant, and the run if both have one."""
        if self.run is not None and other.run is not None and self.run != other.run:
            return False
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        span = f"[{self.start.isoformat()}, {self.end.isoformat()})"
        return span if self.run is None else f"run {self.run} {span}"


Windows = Window | Sequence[Window]
"""What a batched step run or overwrite covers: one window, or several that do not overlap."""


def contiguous_groups(windows: Windows) -> list[list[Window]]:
    """``windows`` sorted and cut into runs where each window starts where the last ended.

    A batch of daily windows is one group (read once, ``[first start, last end)``); a late
    day plus today are two. Overlapping windows are an error: a row would belong to two.
    """
    ordered = sorted(
        [windows] if isinstance(windows, Window) else windows,
        key=lambda w: (w.start, w.end, w.run or ""),
    )
    if not ordered:
        raise ValueError("no window given")
    if any(w.run is not None for w in ordered):
        # A run window stands alone: its rows are the run's, whatever other windows hold.
        if len(ordered) > 1:
            raise ConfigError(
                f"{len(ordered)} windows given with runs among them; a run window is "
                "processed on its own (one run per step call)"
            )
        return [ordered]
    groups: list[list[Window]] = [[ordered[0]]]
    for w in ordered[1:]:
        last = groups[-1][-1]
        if w.start < last.end:
            raise ConfigError(
                f"windows {last} and {w} overlap; pass windows that do not overlap (a row "
                "belongs to exactly one window)"
            )
        if w.start == last.end:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def spans(windows: Windows) -> list[Window]:
    """The contiguous stretches ``windows`` cover, in order: what an overwrite replaces."""
    return [Window(g[0].start, g[-1].end, g[0].run) for g in contiguous_groups(windows)]
