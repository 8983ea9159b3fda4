"""Surfaces invalid MeshInsights configs as one Airflow import error naming every bad file.

It lives apart from the shard files (meshinsights_shard_<k>.py) so that the valid machines'
DAGs keep loading. It also reports a DAG folder missing one of the shard files, and a machine
file whose id the shards cannot read from its text, either of which would hide a DAG.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import get_parsing_context

from meshinsights.errors import ConfigError

# A task process parses only its own DAG's file; this one holds no DAG, so it has nothing to do.
if get_parsing_context().dag_id is None:
    from meshinsights.airflow.shards import fleet_problems
    from meshinsights.settings import get_settings

    _problems = fleet_problems(get_settings().configs_dir, Path(__file__).parent)
    if _problems:
        raise ConfigError(
            "invalid MeshInsights config(s) — the other machines' DAGs still load:\n"
            + "\n".join(f"- {msg}" for msg in _problems)
        )
