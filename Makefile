# Two commands: `make demo` (set up and run the demo) and `make test` (set up and test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup setup-test lint bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet .

setup-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e . --group test

demo: setup
	$(BIN)/clusterlens demo --out clusterlens-demo --overwrite

test: setup-test
	$(BIN)/python -m pytest

lint: setup-test
	$(BIN)/python -m pip install --quiet --group lint
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/clusterlens --ignore-missing-imports

bench-smoke: setup-test
	$(BIN)/python benchmarks/kmeans_exact.py --smoke

clean:
	rm -rf $(VENV) clusterlens-demo .pytest_cache
