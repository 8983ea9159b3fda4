"""Surfaces invalid MeshInsights configs as one Airflow import error naming every bad file.

It lives apart from meshinsights_dags.py so that the valid machines' DAGs keep loading.
"""

from __future__ import annotations

from meshinsights.config import load_configs
from meshinsights.errors import ConfigError
from meshinsights.settings import get_settings

_loaded = load_configs(get_settings().configs_dir)
if _loaded.errors:
    raise ConfigError(
        "invalid MeshInsights config(s) — the other machines' DAGs still load:\n"
        + "\n".join(f"- {msg}" for msg in _loaded.errors.values())
    )
