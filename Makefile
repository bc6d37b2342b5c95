# The two commands a newcomer needs: `make up` (local stack) and `make test` (the suite).
# Both create the virtualenv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install up test lint format deploy-check bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

up: install
	$(BIN)/pioneer-telemetry up

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python bench/bench_parser.py
	$(BIN)/python bench/bench_collector.py --quick
	$(BIN)/python bench/bench_worker.py --quick

deploy-check:
	bash deploy/validate.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
