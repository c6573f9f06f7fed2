# Every install step lives here: a fresh clone needs only python3, npm and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint dev demo bench clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements/api.txt requirements/worker.txt requirements/cli.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --requirement requirements/dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pylint --score=n worker function_app shared cli

dev: setup
	$(BIN)/python -m dev

demo: setup
	$(BIN)/python -m dev.demo

bench: setup
	$(BIN)/python bench/api_latency.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache demo-output
