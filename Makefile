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

# every contender on one fresh local Kafka; writes bench/results/<time>.json and docs/benchmarks.md
BENCH_ARGS ?= --quick
bench: install
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

deploy-check:
	bash deploy/validate.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
