"""Pure builders for the SQL predicates Delta overwrites and deletes use; values are quoted here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from meshinsights.model import Window

__all__ = ["quote", "window_predicate", "partition_predicate"]


def quote(value: str) -> str:
    """A SQL string literal: single quotes doubled, so a value can never end the literal."""
    if "\x00" in value:
        raise ValueError("NUL byte in a predicate value")
    return "'" + value.replace("'", "''") + "'"


def _in(column: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f"{column} = {quote(values[0])}"
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def window_predicate(machine_ids: Iterable[str], window: Window) -> str:
    """Select exactly these machines' rows in ``window``: the idempotent-overwrite contract.

    The ``month`` partition term lets delta-rs prune files before it looks at ``ts``.
    """
    machines = sorted(set(machine_ids))
    if not machines:
        raise ValueError("window_predicate needs at least one machine id")
    start = window.start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    end = window.end.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return " AND ".join(
        [
            _in("machine_id", machines),
            _in("month", window.months()),
            f"ts >= '{start}'",
            f"ts < '{end}'",
        ]
    )


def partition_predicate(machine_ids: Iterable[str], month: str) -> str:
    """Select whole machine-month partitions (what compaction rewrites)."""
    machines = sorted(set(machine_ids))
    if not machines:
        raise ValueError("partition_predicate needs at least one machine id")
    return f"{_in('machine_id', machines)} AND {_in('month', [month])}"
