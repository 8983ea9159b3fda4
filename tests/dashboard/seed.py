"""Seed an artifact store by running real pipelines over the demo source (shared by the SQL,
export and dashboard tests)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from meshinsights.config import load_configs
from meshinsights.engine.runner import run_pipeline
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS

#: Environment variables that would send the GenAI step to a real provider.
PROVIDER_VARS = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_BASE_URL",
    "AIRFLOW_CONN_MESHINSIGHTS_GENAI",
)


def run_demo(
    root: Path,
    demo_db: Path,
    machines: Sequence[str],
    start: str,
    end: str,
    *,
    pipeline: str | None = "minimal",
) -> DeltaStore:
    """Run each machine's pipeline (forced to ``pipeline`` unless None) over the demo source."""
    saved = {k: os.environ.get(k) for k in ("AIRFLOW_CONN_MESHINSIGHTS_DEMO", *PROVIDER_VARS)}
    os.environ["AIRFLOW_CONN_MESHINSIGHTS_DEMO"] = f"sqlite:///{demo_db}"
    for k in PROVIDER_VARS:
        os.environ.pop(k, None)  # the offline analyst answers: deterministic, no network
    try:
        configs = load_configs(CONFIGS)
        missing = [m for m in machines if m not in configs.machines]
        assert not missing, f"machines {missing} do not load from {CONFIGS}: {configs.errors}"
        store = DeltaStore(str(root))
        for machine_id in machines:
            if pipeline is not None:
                # The demo machines are spread over pipelines in configs/; a test picks one.
                machine = configs.machines[machine_id].model_copy(update={"pipeline": pipeline})
                configs.machines[machine_id] = machine
            run_pipeline(configs, machine_id, Window.parse(start, end), store)
        return store
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
