# The front door. `make demo` and `make test` work on a fresh clone: they create
# .venv from the lock (uv.lock) and run.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
export GX_ANALYTICS_ENABLED := false

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test lint bench clean compose-tools browser-tools airflow

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

test: $(VENV)/.synced compose-tools browser-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

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

# Airflow 3 on this machine (SQLite, standalone) on the demo data: http://localhost:8080,
# user admin, password in .airflow/simple_auth_manager_passwords.json.generated
AIRFLOW_ENV = AIRFLOW_HOME=$(CURDIR)/.airflow \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=false \
	AIRFLOW__API__HOST=127.0.0.1 \
	TIERS_CONFIG=$(CURDIR)/demo/tiers.toml \
	TIERS_TIMEZONE=$$($(VENV)/bin/python -c 'import tomllib; print(tomllib.load(open("demo/tiers.toml", "rb"))["business"]["timezone"])') \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH

airflow: demo/tiers.toml
	$(AIRFLOW_ENV) airflow db migrate
	$(AIRFLOW_ENV) airflow pools set tiers_warehouse 1 "Single writer of the tiers warehouse"
	@echo "UI http://localhost:8080 - user admin, password in .airflow/simple_auth_manager_passwords.json.generated"
	$(AIRFLOW_ENV) airflow standalone

demo/tiers.toml: | $(VENV)/.synced
	$(VENV)/bin/tiers demo

clean:
	rm -rf demo lake runs .pytest_cache .hypothesis
