"""The live demo behind ``make run``: a source that ends at now, its feeder, and a warm-up.

Before the stack prints its URLs, the last day of the warm machine(s) runs through Airflow
(one manual DAG run each, triggered through the REST API with that window as conf), so the
first look at the dashboard shows telemetry, hourly averages and an analysis. The heavier
``hvac_power`` machine's last day (issues, cycles, thresholds: 21 tasks) is triggered right
after, in the background. Those DAGs stay unpaused and run every hour on what the feeder
appends; the other live machines start paused: unpausing one in the UI makes its next hourly
run ingest the rows that arrived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from meshinsights.devstack.airflow_api import FINISHED, AirflowAPI
from meshinsights.devstack.processes import Component

__all__ = [
    "FEED_INTERVAL",
    "LIVE_MACHINES",
    "WARM_MACHINES",
    "BACKGROUND_MACHINES",
    "WarmRun",
    "live_demo",
    "feeder_component",
    "dag_ids_of",
    "start_runs",
    "warm_window",
    "warm_up",
]

logger = logging.getLogger(__name__)

#: Units of the demo fleet the live source holds (hvac-008 is the late-rows unit).
LIVE_MACHINES = 8
#: Machines whose last day runs through Airflow before the URLs are printed.
WARM_MACHINES = ("hvac-001",)
#: Machines whose last day is triggered once the URLs are printed (not waited for).
BACKGROUND_MACHINES = ("hvac-003",)
#: Seconds between the feeder's appends.
FEED_INTERVAL = 60.0


@dataclass(frozen=True)
class WarmRun:
    """One warm-up DAG run: its state, window and how many telemetry rows its ingest wrote."""

    dag_id: str
    run_id: str
    state: str
    start: str
    end: str
    telemetry_rows: int | None
    seconds: float


def live_demo(url: str, now: datetime) -> Any:
    """The live demo timeline for ``now`` (starting two midnights back, a week long)."""
    from meshinsights.demo import live_start
    from meshinsights.demo_feed import LiveDemo

    return LiveDemo(url, live_start(now), machines=LIVE_MACHINES, days=7)


def feeder_component(demo: Any, since: datetime, *, interval: float = FEED_INTERVAL) -> Component:
    return Component("feeder", demo.argv(since, interval=interval))


def warm_window(now: datetime) -> tuple[datetime, datetime]:
    """The last day up to the hour before the current one (the schedule takes that hour)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour - timedelta(hours=24), hour - timedelta(hours=1)


def dag_ids_of(configs_dir: str, machines: tuple[str, ...]) -> list[str]:
    """The DAG ids of those machines that the config folder defines."""
    from meshinsights.config import load_configs

    configs = load_configs(configs_dir)
    return [f"{configs.machines[m].pipeline}__{m}" for m in machines if m in configs.machines]


def start_runs(
    api: AirflowAPI, dag_ids: list[str], window: tuple[datetime, datetime], *, timeout: float
) -> tuple[dict[str, str], list[str]]:
    """Unpause each DAG and trigger one run for ``window``: ``({dag_id: run_id}, not loaded)``."""
    missing = api.wait_dags(dag_ids, timeout=timeout)
    conf = {"start": window[0].isoformat(), "end": window[1].isoformat()}
    # Unique per start-up: a second `make run` on the same AIRFLOW_HOME triggers anew.
    run_id = f"warmup__{datetime.now(UTC):%Y%m%dT%H%M%S}"
    started = {}
    for dag_id in dag_ids:
        if dag_id not in missing:
            api.unpause(dag_id)
            started[dag_id] = api.trigger(dag_id, conf, run_id=run_id)
    return started, missing


def warm_up(
    api: AirflowAPI,
    dag_ids: list[str],
    window: tuple[datetime, datetime],
    *,
    timeout: float = 600.0,
    on_done: Callable[[WarmRun], None] | None = None,
) -> list[WarmRun]:
    """Unpause each DAG, trigger one run for ``window``, wait until every run has finished."""
    t0 = time.monotonic()
    pending, missing = start_runs(api, dag_ids, window, timeout=timeout)
    start, end = window[0].isoformat(), window[1].isoformat()
    done = [WarmRun(d, "", "not loaded", start, end, None, 0.0) for d in missing]
    while pending and time.monotonic() < t0 + timeout:
        time.sleep(1)
        for dag_id, run_id in list(pending.items()):
            state = str(api.run(dag_id, run_id)["state"])
            if state not in FINISHED:
                continue
            del pending[dag_id]
            rows = _ingested(api, dag_id, run_id) if state == "success" else None
            done.append(WarmRun(dag_id, run_id, state, start, end, rows, time.monotonic() - t0))
            if on_done:
                on_done(done[-1])
    done += [WarmRun(d, r, "still running", start, end, None, timeout) for d, r in pending.items()]
    return done


def _ingested(api: AirflowAPI, dag_id: str, run_id: str) -> int | None:
    try:
        value: Mapping[str, Any] = api.result(dag_id, run_id, "ingest") or {}
    except Exception as exc:  # the count is a courtesy: a missing XCom must not fail start-up
        logger.warning("no ingest result for %s %s: %s", dag_id, run_id, exc)
        return None
    rows = value.get("rows_out") if isinstance(value, Mapping) else None
    return int(rows) if rows is not None else None
