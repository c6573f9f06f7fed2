# Every install step lives here: a fresh clone needs only python3, npm and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint dev demo bench clean

# The web page (web/), built into function_app/ui/: the API serves it, the Functions package
# carries it.
WEB_SOURCES := $(wildcard web/index.html web/tsconfig.json web/vite.config.mts web/src/*)
# The browser tests drive Debian's chromium (Playwright's own browser download needs more
# than the package registries).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

setup: $(VENV)/.installed node_modules/.installed function_app/ui/index.html

$(VENV)/.installed: requirements/api.txt requirements/worker.txt requirements/cli.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --requirement requirements/dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

function_app/ui/index.html: node_modules/.installed $(WEB_SOURCES)
	npm run --silent build

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

test: setup $(CHROMIUM)
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
	rm -rf $(VENV) node_modules function_app/ui .pytest_cache .mypy_cache .ruff_cache demo-output web/screenshots
