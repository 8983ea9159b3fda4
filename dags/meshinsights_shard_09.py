"""Shard 9 of the MeshInsights machine DAGs for Airflow (`meshinsights dag-shards`)."""

from meshinsights.orchestration.shards import register_shard

register_shard(globals(), __file__)
