# The two commands a newcomer needs: `make up` (local stack) and `make test` (the suite).
# Both create the virtualenv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install up test test-faults bench-faults test-clock lint format deploy-check compose-up compose-down k8s-up k8s-down k8s-test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

up: install
	$(BIN)/pioneer-telemetry up

# everything but the Kubernetes tests (k8s-test: they build and start a cluster of their own)
test: install
	$(BIN)/pytest -m "not k8s"

# every fault-injection scenario on a local 3-broker cluster (`make test` runs the quick ones), ~10 min
test-faults: install
	PIONEER_FAULTS=full $(BIN)/pytest -m faults tests/test_faults.py

# the six fault scenarios, measured; writes docs/reliability.md
bench-faults: install
	$(BIN)/python bench/bench_faults.py

# the clock guard: the tests whose code reads the wall clock, with every process's clock moved 30 and
# 400 days ahead (tests/timeshift); a test that depends on the day it runs fails here first
CLOCK_TESTS ?= tests/test_api.py tests/test_dashboard.py tests/test_worker.py
test-clock: install
	for days in 30 400; do \
	  echo "--- clock moved $$days days ahead"; \
	  CLOCK_SHIFT_DAYS=$$days PYTHONPATH=tests/timeshift $(BIN)/pytest -q -p no:cacheprovider -W ignore::pytest.PytestAssertRewriteWarning $(CLOCK_TESTS) || exit 1; \
	done

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

# docker compose on this machine's own Docker engine (deploy/docker/local-docker.sh): engine, base image,
# compose plugin, image, a local Kafka the containers reach, `compose up`; PIONEER_LOG_DIR is the folder
# the collector tails (default: a named volume). compose-down stops all of it.
compose-up: install
	bash deploy/docker/local-docker.sh up

compose-down: install
	bash deploy/docker/local-docker.sh down

# the Helm chart installed on a single-node Kubernetes v1.34 built and started on this machine
# (deploy/k8s/local-cluster.sh; built once, ~10 min, then cached): hooks, every workload Ready, pods'
# logs collected from the kubelet's files, a worker deleted mid-stream, upgrade, uninstall. The cluster
# keeps running for the next run; k8s-down stops it.
k8s-test: install
	$(BIN)/pytest -m k8s

k8s-up:
	bash deploy/k8s/local-cluster.sh up

k8s-down:
	bash deploy/k8s/local-cluster.sh down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
