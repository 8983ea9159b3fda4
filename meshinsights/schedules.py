"""One notion of window: a machine's schedule as the intervals between its cron ticks (UTC).

The DAGs use Airflow's ``CronDataIntervalTimetable`` over the same cron expression, so a
scheduled run's data interval, a local ``meshinsights run`` and the window a late row reopens
are the same windows for every schedule Airflow accepts: the presets below and any cron.
No Airflow import here (croniter is what Airflow's timetable uses itself).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from meshinsights.errors import ConfigError
from meshinsights.model import Window

__all__ = ["PRESETS", "cron_of", "check_schedule", "windows", "window_containing"]

#: Airflow's cron presets, as the DAG factory maps them.
PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
#: A run window holds at most this many schedule intervals (a typo like "* * * * *" over a
#: year would otherwise plan half a million windows).
MAX_WINDOWS = 100_000


def cron_of(schedule: str | None) -> str | None:
    """The cron expression of a schedule (None: no schedule, runs only on demand)."""
    if schedule is None:
        return None
    return PRESETS.get(schedule.strip(), schedule.strip())


def check_schedule(schedule: str | None) -> str | None:
    """``schedule`` if Airflow can schedule it as data intervals; else ValueError with the fix."""
    if schedule is None:
        return None
    from croniter import croniter

    cron = cron_of(schedule)
    if cron is None or cron.startswith("@") or not croniter.is_valid(cron):
        raise ValueError(
            f"schedule {schedule!r} is neither a preset ({', '.join(PRESETS)}) nor a valid cron "
            "expression (e.g. '0 6 * * *', '*/15 * * * *'); use null for on-demand runs only"
        )
    return schedule


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ticks(cron: str, start: datetime, end: datetime) -> list[datetime]:
    """Every tick in ``[start, end]``."""
    from croniter import croniter

    it = croniter(cron, start - timedelta(seconds=1))
    out: list[datetime] = []
    while True:
        tick = _utc(it.get_next(datetime))
        if tick > end:
            return out
        out.append(tick)
        if len(out) > MAX_WINDOWS:
            raise ConfigError(
                f"schedule {cron!r} gives more than {MAX_WINDOWS:,} windows between {start} and "
                f"{end}; run a shorter range or use --no-split"
            )


def window_containing(schedule: str | None, ts: datetime) -> Window | None:
    """The schedule interval ``[tick ≤ ts, next tick)`` holding ``ts`` (None without a schedule)."""
    cron = cron_of(schedule)
    if cron is None:
        return None
    from croniter import croniter

    ts = _utc(ts)
    if ts.second == 0 and ts.microsecond == 0 and croniter.match(cron, ts):
        start = ts
    else:
        start = _utc(croniter(cron, ts).get_prev(datetime))
    end = _utc(croniter(cron, start).get_next(datetime))
    return Window(start, end)


def windows(schedule: str | None, span: Window) -> list[Window]:
    """The schedule's intervals covering ``span``, cut at its edges (one window unscheduled).

    Aligned to the ticks, these are exactly the data intervals Airflow gives the DAG's runs; a
    span that starts or ends between ticks gets a shorter first or last window.
    """
    cron = cron_of(schedule)
    if cron is None:
        return [span]
    edges = [t for t in _ticks(cron, span.start, span.end) if span.start < t < span.end]
    bounds = [span.start, *edges, span.end]
    return [Window(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
