# Two commands: `make demo` (set up and run the demo) and `make test` (set up and test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup setup-test browser lint bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet ".[demo]"

setup-test: $(BIN)/python browser
	$(BIN)/python -m pip install --quiet -e . --group test

# The browser tests drive Debian's Chromium (Playwright never downloads one).
# Installed through apt when missing and we are root (as CI is); otherwise the
# browser tests skip, except under CI=true where a missing browser fails them.
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium >/dev/null) || \
	    echo "warning: could not install chromium; browser tests will not run"; \
	  else echo "note: install chromium (apt-get install chromium) for the browser tests"; fi

demo: setup
	$(BIN)/clusterlens demo --out clusterlens-demo

test: setup-test
	$(BIN)/python -m pytest -n 2

lint: setup-test
	$(BIN)/python -m pip install --quiet --group lint
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/clusterlens --ignore-missing-imports

bench-smoke: setup-test
	$(BIN)/python benchmarks/kmeans_exact.py --smoke

clean:
	rm -rf $(VENV) clusterlens-demo .pytest_cache
