"""Registers one Airflow DAG per machine config (see meshinsights.orchestration.dag_factory).

Kept light: no pandas/deltalake at module level; task bodies import them when they run.
Bad configs are reported by meshinsights_config_errors.py so they never hide valid DAGs.
"""

from __future__ import annotations

import logging

from meshinsights.orchestration.dag_factory import build_dags

_dags, _errors = build_dags()
globals().update(_dags)
for _error in _errors.values():
    logging.getLogger("meshinsights.dags").error("config error: %s", _error)
