PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: test test-fast lint bench demo clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(INSTALLED)

# Three workers on two cores: the drills spend much of their time waiting on processes.
WORKERS ?= 3

## make test: set up .venv and run every check (lint, format, the whole test suite).
test: lint
	$(BIN)/pytest -n $(WORKERS) --dist worksteal

## make test-fast: the suite without its slow drills (under a minute), for the edit loop.
test-fast: $(INSTALLED)
	$(BIN)/pytest -n 4 --dist worksteal -m "not slow"

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## make bench: print the figures of the store (SQLite, PostgreSQL; with a wake at 1k to 1M
## events of logs the brain's compaction policy made, snapshot sizes and compaction cost), the
## hands (local, Docker), the brain (durable steps, recovery, lazy hands) and the gateway
## (requests/s, SSE fan-out, sessions through the API), the Managed Agents API with the
## anthropic SDK as client, what tracing costs a brain's step, and threads (spawn to first
## model request, a coordinator with 10 workers).
bench: $(INSTALLED)
	$(BIN)/python -m tests.benchmarks.store --backend sqlite
	$(BIN)/python -m tests.benchmarks.store --backend postgres
	$(BIN)/python -m tests.benchmarks.hands --backend local
	$(BIN)/python -m tests.benchmarks.hands --backend docker
	$(BIN)/python -m tests.benchmarks.brain --backend docker
	$(BIN)/python -m tests.benchmarks.gateway
	$(BIN)/python -m tests.benchmarks.managed_agents
	$(BIN)/python -m tests.benchmarks.traces
	$(BIN)/python -m tests.benchmarks.threads --backend sqlite
	$(BIN)/python -m tests.benchmarks.threads --backend postgres

## make demo: start keel (NATS, store, hands, brain, gateway), run the scripted coding demo
## live in the terminal, say how to run it with a real model, and stop.
demo: $(INSTALLED)
	$(BIN)/keel demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .keel
