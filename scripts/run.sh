#!/usr/bin/env bash
# The local stack: `scripts/run.sh run|stop|demo` (what `make run`, `make stop`, `make demo` call).
# run  : seed the demo source, start `airflow standalone` + the dashboard, print URLs and login;
#        Ctrl-C (or `make stop` from another shell) stops everything it started.
# stop : stop a running `make run` (pid files under $AIRFLOW_HOME/run/).
# demo : headless — seed, run every demo machine's DAG once through Airflow, print tables + a query.
# Ports: AIRFLOW_PORT (default 8080), DASHBOARD_PORT (default 8501).
set -euo pipefail
cd "$(dirname "$0")/.."
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow}"
exec .venv/bin/meshinsights stack "$@"
