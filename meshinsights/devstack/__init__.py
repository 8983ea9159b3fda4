"""Developer tooling behind ``meshinsights stack run|stop|demo`` (``make run/stop/demo``): the
local stack, its live demo and warm-up, process groups and a small Airflow REST client. Not
imported by the library; the CLI and the tests use it."""
