"""Shard 62 of the MeshInsights DAGs for Airflow; see `meshinsights dag-shards`."""

from meshinsights.airflow.shards import register_shard

register_shard(globals(), __file__)
