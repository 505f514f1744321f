# The front door. `make demo` and `make test` work on a fresh clone: they create
# .venv from the lock (uv.lock) and run.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
export GX_ANALYTICS_ENABLED := false

.PHONY: demo test lint bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	touch $@

demo: $(VENV)/.synced
	$(VENV)/bin/tiers demo

test: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.synced
	$(VENV)/bin/python bench/bench_pipeline.py

clean:
	rm -rf demo lake runs .pytest_cache .hypothesis
