"""The engine: plan a pipeline, run its steps over windows (local runner, batching, ingest,
run windows, status, maintenance and the data lifecycle). Imports no Airflow: the Airflow
adapter (:mod:`meshinsights.airflow`) and the CLI call it."""
