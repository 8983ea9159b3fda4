"""``make demo``: the headless day one — seed, run every demo machine's DAG through Airflow, query.

Each machine's DAG runs once, in this process, with Airflow's own ``dag.test`` (real task
runner, XCom, listeners and metadata DB; no scheduler to start), for the seeded window passed
as run conf — exactly what ``airflow dags trigger <dag> --conf '{"start":…,"end":…}'`` does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from meshinsights.devstack.environment import _say, airflow_env, airflow_home

__all__ = ["run_demo", "DEMO_QUERY"]

logger = logging.getLogger(__name__)

#: The one DuckDB query the demo prints: hourly temperature per machine.
DEMO_QUERY = (
    "SELECT machine_id, count(*) AS hours, round(avg(mean), 2) AS avg_temp_c, "
    "round(min(min), 2) AS min_c, round(max(max), 2) AS max_c "
    "FROM temperature_hourly GROUP BY machine_id ORDER BY machine_id"
)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run_dags(start: str, end: str, *, machines: list[str] | None = None) -> dict[str, str]:
    """Run each MeshInsights DAG once for ``[start, end)`` via ``dag.test``; ``{dag_id: state}``."""
    from airflow.utils import db

    from meshinsights.airflow.dag_factory import build_dags

    db.initdb()
    dags, errors = build_dags()
    for error in errors.values():
        _say(f"config error: {error}")
    states: dict[str, str] = {}
    for dag_id, dag in sorted(dags.items()):
        if machines is not None and not any(dag_id.endswith(f"__{m}") for m in machines):
            continue
        t0 = time.perf_counter()
        dr = dag.test(logical_date=_parse(start), run_conf={"start": start, "end": end})
        states[dag_id] = str(getattr(dr.state, "value", dr.state))
        _say(f"  {dag_id}: {states[dag_id]} in {time.perf_counter() - t0:.1f}s")
    return states


def _parse(value: str) -> Any:
    from datetime import UTC, datetime

    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def print_query(env: dict[str, str]) -> None:
    """The demo query through ``meshinsights sql`` if this build has it, else DuckDB directly."""
    _say(f'\n$ meshinsights sql -e "{DEMO_QUERY}"')
    if importlib.util.find_spec("meshinsights.cli.sql") is not None:
        done = subprocess.run([_bin("meshinsights"), "sql", "-e", DEMO_QUERY], env=env)
        if done.returncode == 0:
            return
        _say("(meshinsights sql failed; querying with DuckDB directly)")
    import duckdb

    from meshinsights.settings import get_settings

    store = get_settings().open_store()
    con = duckdb.connect()
    con.register("temperature_hourly", store.dataset("minimal", "temperature_hourly"))
    _say(str(con.sql(DEMO_QUERY)))


def run_demo() -> int:
    """Seed the demo source, run every demo machine's DAG through Airflow, print tables + query."""
    home = airflow_home()
    # Task logs at INFO drown the result; AIRFLOW__LOGGING__LOGGING_LEVEL=INFO shows them.
    env = airflow_env(
        home,
        extra={
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
                "AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"
            )
        },
    )
    # Airflow reads its configuration when first imported: set the environment before that.
    os.environ.update(env)
    from meshinsights.demo import seed
    from meshinsights.settings import get_settings

    settings = get_settings()
    settings.demo_source.parent.mkdir(parents=True, exist_ok=True)
    fleet = seed(settings.demo_source_url, machines=3, days=3, seed=7)
    start, end = fleet.start.isoformat(), fleet.end.isoformat()
    _say(f"seeded {fleet.rows:,} rows for {', '.join(fleet.machines)}")
    _say(f"running each machine's DAG through Airflow for [{start}, {end}) …")
    t0 = time.perf_counter()
    states = run_dags(start, end, machines=fleet.machines)
    _say(f"{len(states)} DAG run(s) in {time.perf_counter() - t0:.1f}s")
    failed = [d for d, s in states.items() if s != "success"]
    _say("\n$ meshinsights tables")
    subprocess.run([_bin("meshinsights"), "tables"], env=env, check=False)
    print_query(env)
    if failed or not states:
        _say(f"failed DAG runs: {failed or 'none ran'}; see the task logs above")
        return 1
    return 0
