"""Stores for the dashboard tests, seeded by running real pipelines over a demo source."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshinsights.demo import seed
from tests.dashboard.seed import run_demo

#: hvac-006 of a 6-unit demo fleet has temperature spikes: quarantined rows to show.
MINIMAL_MACHINES = ("hvac-001", "hvac-006")
DAYS = ("2024-01-01", "2024-01-03")


@pytest.fixture(scope="session")
def fleet_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-unit × 2-day demo source (the 3-unit session source has no quarantine faults)."""
    path = tmp_path_factory.mktemp("fleet") / "demo_source.db"
    seed(f"sqlite:///{path}", machines=6, days=2, seed=7)
    return path


@pytest.fixture(scope="session")
def minimal_store(fleet_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The day-one ``minimal`` pipeline run for hvac-001 and hvac-006 over 2024-01-01..02."""
    root = tmp_path_factory.mktemp("dash_minimal") / "artifacts"
    run_demo(root, fleet_db, MINIMAL_MACHINES, *DAYS, pipeline="minimal")
    return root


@pytest.fixture(scope="session")
def hvac_store(fleet_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``hvac_power`` pipeline run for hvac-003 (short cycling) over 2024-01-01..02."""
    root = tmp_path_factory.mktemp("dash_hvac") / "artifacts"
    run_demo(root, fleet_db, ["hvac-003"], *DAYS, pipeline="hvac_power")
    return root
