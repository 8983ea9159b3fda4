"""Real Airflow: the hvac_power DAG of a demo unit passes dag.test with the expected branches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest

from meshinsights.demo import seed
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS, REPO

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAY2 = Window.parse("2024-01-02", "2024-01-03")


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The demo fleet (10 units × 3 days; hvac-009 normal, hvac-002 erratic power), configs
    from the repo and one store for every DAG here (an Airflow asset name maps to one URI)."""
    root = tmp_path_factory.mktemp("fleet")
    seed(f"sqlite:///{root / 'demo.db'}", machines=10, days=3, seed=7)
    env = {
        "MESHINSIGHTS_CONFIGS": str(CONFIGS),
        "MESHINSIGHTS_STORE": str(root / "artifacts"),
        "AIRFLOW_CONN_MESHINSIGHTS_DEMO": f"sqlite:///{root / 'demo.db'}",
        "AIRFLOW_CONN_MESHINSIGHTS_ALERTS": f"sqlite:///{root / 'alerts.db'}",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield env


def run_dag(dag_id: str) -> tuple[str, dict[str, str]]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    # A manual run at logical date D covers the data interval ending at D: 2024-01-02.
    run = bag.get_dag(dag_id).test(logical_date=datetime(2024, 1, 3, tzinfo=UTC))
    return run.state, {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_normal_unit_updates_thresholds_and_skips_genai(fleet_env, airflow_db) -> None:
    state, states = run_dag("hvac_power__hvac-009")
    assert state == "success", states
    assert states["check_update_thresholds"] == "success"
    assert states["update_thresholds"] == "success"
    assert states["check_genai"] == "success"
    assert states["genai"] == "skipped"
    others = {t: s for t, s in states.items() if t != "genai"}
    assert set(others.values()) == {"success"}, others
    store = DeltaStore(fleet_env["MESHINSIGHTS_STORE"])
    updates = store.read("hvac_power", "threshold_updates", "hvac-009", DAY2)
    assert set(updates["stage"]) >= {0, 1}
    assert (updates["valid_from"] == pd.Timestamp("2024-01-03", tz="UTC")).all()
    variance = store.read("hvac_power", "variance", "hvac-009", DAY2)
    assert variance["variance_class"].tolist() == ["low"]


def test_high_variance_unit_skips_the_update_and_runs_genai(fleet_env, airflow_db) -> None:
    state, states = run_dag("hvac_power__hvac-002")
    assert state == "success", states
    assert states["update_thresholds"] == "skipped"
    assert states["genai"] == "success"
    store = DeltaStore(fleet_env["MESHINSIGHTS_STORE"])
    assert store.read("hvac_power", "variance", "hvac-002", DAY2)["variance_class"].tolist() == [
        "high"]
    assert not store.exists("hvac_power", "threshold_updates") or store.read(
        "hvac_power", "threshold_updates", "hvac-002", DAY2).empty
    analysis = store.read("hvac_power", "genai_analysis", "hvac-002", DAY2)
    assert len(analysis) == 1 and analysis["status"].tolist() == ["ok"]
