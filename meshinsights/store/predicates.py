"""Pure builders for the SQL predicates Delta overwrites and deletes use; values are quoted here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from meshinsights.model import Windows, month_of, spans

__all__ = [
    "quote",
    "window_predicate",
    "partition_predicate",
    "machine_predicate",
    "before_predicate",
]


def quote(value: str) -> str:
    """A SQL string literal: single quotes doubled, so a value can never end the literal."""
    if "\x00" in value:
        raise ValueError("NUL byte in a predicate value")
    return "'" + value.replace("'", "''") + "'"


def _in(column: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f"{column} = {quote(values[0])}"
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def window_predicate(machine_ids: Iterable[str], window: Windows) -> str:
    """Select exactly these machines' rows in ``window``: the idempotent-overwrite contract.

    Several windows (a batched run) select the rows of any of them; touching windows are
    merged into one range. The ``month`` partition term lets delta-rs prune files before it
    looks at ``ts``.
    """
    machines = sorted(set(machine_ids))
    if not machines:
        raise ValueError("window_predicate needs at least one machine id")
    ranges = spans(window)
    months = sorted({m for r in ranges for m in r.months()})
    terms = [f"ts >= '{_ts(r.start)}' AND ts < '{_ts(r.end)}'" for r in ranges]
    ts = terms[0] if len(terms) == 1 else "(" + " OR ".join(f"({t})" for t in terms) + ")"
    parts = [_in("machine_id", machines), _in("month", months), ts]
    if ranges[0].run is not None:  # a run window (always alone): that run's rows only
        parts.append(_in("run_id", [ranges[0].run]))
    return " AND ".join(parts)


def partition_predicate(machine_ids: Iterable[str], month: str) -> str:
    """Select whole machine-month partitions (what compaction rewrites)."""
    machines = sorted(set(machine_ids))
    if not machines:
        raise ValueError("partition_predicate needs at least one machine id")
    return f"{_in('machine_id', machines)} AND {_in('month', [month])}"


def machine_predicate(machine_id: str) -> str:
    """Every row of one machine, in every partition (what erasure deletes)."""
    return _in("machine_id", [machine_id])


def before_predicate(cutoff: datetime) -> str:
    """Rows older than ``cutoff`` (what retention deletes); the month term prunes partitions."""
    return f"month <= {quote(month_of(cutoff))} AND ts < '{_ts(cutoff)}'"
