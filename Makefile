# Homeward — targets a newcomer can guess. `make demo` and `make test` work on a fresh
# machine: they create the virtualenv, install, and start embedded services if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml package-lock.json | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install deps demo test test-random test-explore lint format bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml package-lock.json
	@bash deploy/install-system-deps.sh
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error  # the web app's design system (node_modules/)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Homeward needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

deps:
	@bash deploy/install-system-deps.sh

demo: $(STAMP)
	$(BIN)/homeward demo

test: $(STAMP)
	$(BIN)/pytest -p no:randomly $(PYTEST_ARGS)

# The suite in a random order (pytest-randomly; the seed is printed to repeat a run).
test-random: $(STAMP)
	$(BIN)/pytest -p randomly $(PYTEST_ARGS)

# Property tests with fresh random examples instead of the reproducible ones.
test-explore: $(STAMP)
	HYPOTHESIS_PROFILE=explore $(BIN)/pytest -p no:randomly tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/deptry .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/homeward bench --json bench-results.json

bench-quick: $(STAMP)
	$(BIN)/homeward bench --quick --json bench-quick.json

clean:
	rm -rf $(VENV) .homeward .pytest_cache .mypy_cache .ruff_cache
