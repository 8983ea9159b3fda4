"""Layer 5, orchestration: configs → DAGs, the local runner, and task glue."""
