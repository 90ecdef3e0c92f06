# The two commands of the README, and a few helpers. Every target creates the
# virtual environment (.venv) on first use, so a fresh clone needs nothing else.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint check-config clean

# Dependencies come from the pinned, hashed set (config/requirements-dev.txt, made by pip-compile:
# see its header); the project itself is installed editable on top, without resolving again.
$(STAMP): pyproject.toml config/requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r config/requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)          ## run the whole service on embedded Redis + simulators
	$(BIN)/triage demo

# Four pytest-xdist workers on two cores: most tests wait on sockets, RQ's scheduler or a killed
# process, not on the CPU (the suite took 3.7 min this way against 10.6 min in one process).
test: $(STAMP)          ## run the test suite (Redis: 127.0.0.1:6379 dbs 15..12, else a private one)
	$(BIN)/python -m pytest -q -n 4 --dist worksteal

test-fast: $(STAMP)     ## the suite without the slow (wheel, venv, fault) tests
	$(BIN)/python -m pytest -q -n 4 --dist worksteal -m 'not slow'

lint: $(STAMP)
	$(BIN)/ruff check .

check-config: $(STAMP)  ## load the configuration from the environment and report problems
	$(BIN)/triage check-config

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
