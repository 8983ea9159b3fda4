# MeshInsights — every target sets up what it needs (venv, installs, demo data) on a fresh clone.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` opens the live demo (configs/live: hourly, over a source that ends at now) unless
# MESHINSIGHTS_CONFIGS names another folder; every other target uses configs/.
ifeq ($(origin MESHINSIGHTS_CONFIGS),undefined)
RUN_CONFIGS := $(CURDIR)/configs/live
else
RUN_CONFIGS := $(MESHINSIGHTS_CONFIGS)
endif
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export MESHINSIGHTS_CONFIGS ?= $(CURDIR)/configs
export MESHINSIGHTS_STORE ?= $(CURDIR)/data/artifacts


# How tests/chromium.py finds the browser tests' Chromium; `make test` ends with this without it.
NO_CHROMIUM := NOTE: the browser tests were skipped (Chromium is not installed). Enable them \
with: sudo apt-get install -y chromium chromium-driver

.PHONY: venv test test-unit test-integration lint demo run stop clean lock bench soak

venv: $(STAMP)

# Re-installs only when the lock or pyproject changes: quick when nothing did.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Re-pin after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

# The README's test command (what CI runs): the unit/component suite, then the multi-process
# stack tests under tests/integration (a real scheduler + API server driving backfills, a
# Celery worker on Redis + PostgreSQL, Delta on moto S3 and Azurite). Each half alone:
# `make test-unit` (the quick loop) and `make test-integration`.
test: test-unit test-integration
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || echo "$(NO_CHROMIUM)"

test-unit: venv
	$(BIN)/python -m pytest -q --ignore=tests/integration $(PYTEST_ARGS)

test-integration: venv
	$(BIN)/python -m pytest -q tests/integration $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check meshinsights tests dags plugins
	$(BIN)/ruff format --check meshinsights
	$(BIN)/mypy meshinsights
	$(BIN)/lint-imports

# Headless: seed, run every demo machine's DAG once through Airflow, print tables + a DuckDB query.
demo: venv
	scripts/run.sh demo

# The live demo source + its feeder, Airflow standalone, the dashboard; the last day runs
# through Airflow, then it prints URLs and login. Ctrl-C or `make stop` ends it all.
run: venv
	MESHINSIGHTS_CONFIGS="$(RUN_CONFIGS)" scripts/run.sh run

stop:
	@test -x $(BIN)/python && scripts/run.sh stop || true

# Full run (~2 h on 2 cores) -> bench/results/latest.json; BENCH_ARGS="--quick" for a <2 min
# smoke run, BENCH_ARGS="--only partitions" for one benchmark. Results: BENCHMARKS.md.
bench: venv
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Long reliability runs (see RELIABILITY.md): 200 kill -9 trials, 64 writers × 3 generations,
# 2,000 random examples per property. Figures land in test-artifacts/reliability/.
soak: venv
	MESHINSIGHTS_SOAK=1 $(BIN)/python -m pytest -q tests/reliability $(PYTEST_ARGS)

clean:
	rm -rf data .airflow .pytest_cache .mypy_cache .ruff_cache test-artifacts
