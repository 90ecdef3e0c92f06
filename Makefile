# The two commands of the README, and a few helpers. Every target creates the
# virtual environment (.venv) on first use, so a fresh clone needs nothing else.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check-config clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)          ## run the whole service on embedded Redis + simulators
	$(BIN)/triage demo

test: $(STAMP)          ## run the test suite (Redis: 127.0.0.1:6379 db 15, else a private one)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

check-config: $(STAMP)  ## load the configuration from the environment and report problems
	$(BIN)/triage check-config

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
