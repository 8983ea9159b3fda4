"""MeshInsights: composable IoT time-series pipelines — YAML configs to Airflow DAGs over Delta."""

from __future__ import annotations

__version__ = "0.1.0"

# Light on purpose: Airflow parses DAG files that import this package constantly, so the
# heavy modules (pandas, deltalake) load only when the names below are first used.
__all__ = [
    "__version__",
    "MeshInsightsError",
    "ConfigError",
    "ConnectorError",
    "StepError",
    "StoreError",
    "Window",
    "step",
    "run_step",
    "run_pipeline",
    "DeltaStore",
    "load_configs",
]

from meshinsights.errors import (  # noqa: E402
    ConfigError,
    ConnectorError,
    MeshInsightsError,
    StepError,
    StoreError,
)

_LAZY = {
    "Window": "meshinsights.model",
    "step": "meshinsights.steps.registry",
    "run_step": "meshinsights.engine.runner",
    "run_pipeline": "meshinsights.engine.runner",
    "DeltaStore": "meshinsights.store",
    "load_configs": "meshinsights.config",
}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attribute
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'meshinsights' has no attribute {name!r}")
