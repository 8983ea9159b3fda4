"""The Airflow adapter: configs → DAGs (factory, shards), TaskFlow tasks that call the engine,
callbacks, the listener and the links plugin. Every Airflow import of the library lives here but
two lazy Connection lookups (the credential resolver, the data API's keys), which the layer
contracts in pyproject.toml name."""
