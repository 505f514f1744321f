# The front door. `make demo` and `make test` work on a fresh clone: they create
# .venv from the lock (uv.lock) and run.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
export GX_ANALYTICS_ENABLED := false

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test test-fast lint bench clean compose-tools browser-tools airflow

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# --compile-bytecode: every process imports Airflow, pandas and Great Expectations; without
# .pyc files (uv does not write them by default, and PYTHONDONTWRITEBYTECODE stops Python
# from caching them) each import compiles them again: GX took 8 s of CPU instead of 3.4.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode
	touch $@

demo: $(VENV)/.synced
	$(VENV)/bin/tiers demo

# two workers (pytest-xdist), a test file each at a time: many tests wait on subprocesses,
# servers and PostgreSQL; every test has its own folders, schemas, ports and databases
test: $(VENV)/.synced compose-tools browser-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n 2 --dist loadfile

# what needs no server (no PostgreSQL, Airflow, S3, SMTP or browser) and is not slow:
# a few minutes, for the edit-test loop; `make test` runs everything
test-fast: $(VENV)/.synced
	$(VENV)/bin/pytest -n 2 --dist loadfile -m "not services and not postgres and not slow"

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.synced
	$(VENV)/bin/python bench/bench_pipeline.py

# docker-compose renders docker-compose.yml in the tests (no Docker engine needed)
compose-tools:
	@command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose; }

# headless Chromium opens the monthly report in the tests (Debian's package; Playwright
# drives it and downloads no browser of its own)
browser-tools:
	@command -v chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core; }

# Airflow 3 on this machine (standalone) on the demo data: http://localhost:8080, user
# admin, password in .airflow/simple_auth_manager_passwords.json.generated. Sized for a
# small machine: the metadata database is PostgreSQL (SQLite locks under a backfill's
# concurrent writers), the LocalExecutor runs at most AIRFLOW_PARALLELISM tasks at once
# (4: one per active month, the DAG's max_active_runs; measured fastest on two cores, see
# the README; docker-compose.yml uses the same default), one API server worker, one
# DAG-parsing process.
AIRFLOW_DB_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/airflow_tiers
AIRFLOW_PARALLELISM ?= 4
AIRFLOW_ENV = AIRFLOW_HOME=$(CURDIR)/.airflow \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=false \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/dags/plugins \
	AIRFLOW__CORE__EXECUTOR=LocalExecutor \
	AIRFLOW__CORE__PARALLELISM=$(AIRFLOW_PARALLELISM) \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(AIRFLOW_DB_URL) \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=$(AIRFLOW_DB_URL) \
	AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__WORKERS=1 \
	AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1 \
	TIERS_CONFIG=$(CURDIR)/demo/tiers.toml \
	TIERS_TIMEZONE=$$($(VENV)/bin/python -c 'import tomllib; print(tomllib.load(open("demo/tiers.toml", "rb"))["business"]["timezone"])') \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH

# creates the metadata database named at the end of AIRFLOW_DB_URL if it is missing
AIRFLOW_CREATE_DB = import sys, psycopg; from psycopg import sql; \
	server, name = sys.argv[1].replace("+psycopg", "").rsplit("/", 1); \
	conn = psycopg.connect(server + "/postgres", autocommit=True); \
	found = conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone(); \
	found or conn.execute(sql.SQL("create database {}").format(sql.Identifier(name))); \
	print(f"metadata database {name}:", "exists" if found else "created")

airflow: demo/tiers.toml
	$(VENV)/bin/python -c '$(AIRFLOW_CREATE_DB)' "$(AIRFLOW_DB_URL)"
	$(AIRFLOW_ENV) airflow db migrate
	$(AIRFLOW_ENV) airflow pools set tiers_warehouse 1 "Single writer of the tiers warehouse"
	@echo "UI http://localhost:8080 - user admin, password in .airflow/simple_auth_manager_passwords.json.generated"
	$(AIRFLOW_ENV) airflow standalone

demo/tiers.toml: | $(VENV)/.synced
	$(VENV)/bin/tiers demo

clean:
	rm -rf demo lake runs .pytest_cache .hypothesis
