"""A run's conf may override step params for that run only (a backfill with another reference
period, a rerun at another grain), through real Airflow ``dag.test()``."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from meshinsights.airflow.tasks import _setup
from meshinsights.config import load_configs
from meshinsights.engine.plan import plan
from meshinsights.engine.status import stale_windows
from meshinsights.errors import MeshInsightsError
from meshinsights.store import DeltaStore
from tests.orchestration.test_dags import dagbag

pytestmark = pytest.mark.airflow
DAY3 = {"start": "2024-01-03T00:00:00+00:00", "end": "2024-01-04T00:00:00+00:00"}


def test_conf_overrides_apply_to_that_run_and_are_recorded(demo_env, airflow_db) -> None:
    dag = dagbag().get_dag("minimal__hvac-001")
    run = dag.test(logical_date=datetime(2024, 1, 3, tzinfo=UTC),
                   run_conf={**DAY3, "overrides": {"average_temperature": {"freq": "30min"}}})
    assert run.state == "success"
    store = DeltaStore(demo_env["MESHINSIGHTS_STORE"])
    hourly = store.read_all("minimal", "temperature_hourly")
    assert len(hourly) == 48  # half-hour means: the override, not the file's 1h
    # The commit's fingerprint records the definition used: status says it differs from the
    # machine's own, so the window is visibly not what the config would write.
    configs = load_configs(demo_env["MESHINSIGHTS_CONFIGS"])
    machine = configs.machine("hvac-001")
    stale = stale_windows(store, configs.pipeline_of(machine), machine)
    assert [(s.step, s.reason) for s in stale] == [
        ("average_temperature", "definition changed (params or code)")]


@pytest.mark.parametrize("overrides,expected", [
    ({"average_temprature": {"freq": "30min"}}, "did you mean average_temperature"),
    ({"average_temperature": {"freq": "soon"}}, "not a duration"),
    (["freq"], "must map step ids to params"),
])
def test_bad_conf_overrides_are_refused_with_a_named_reason(demo_env, overrides,
                                                            expected) -> None:
    """What every task does first with the run's context (Airflow passes the DagRun; here its
    conf is the only part used)."""
    context = {"dag_run": SimpleNamespace(conf={**DAY3, "overrides": overrides})}
    with pytest.raises(MeshInsightsError, match=expected):
        _, machine, pipeline, _ = _setup(demo_env["MESHINSIGHTS_CONFIGS"],
                                         demo_env["MESHINSIGHTS_STORE"], "hvac-001", context)
        plan(pipeline, machine)
