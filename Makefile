# Updraft: every set-up step a new Debian machine needs lives here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv system-deps check install-check test unit integration demo lab-up lab-down clean

help:
	@echo "make demo   lab up, factory and frontend as services, 42 jobs run on pilots (grid sites, Slurm with a two-node pilot, cloud instances), a summary (KEEP=1 leaves it running)"
	@echo "make test   install what is missing, then run the whole suite, lab tests included"
	@echo "make unit   only the fast unit tests (no daemons, no monitoring backends)"

$(BIN)/updraft: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/updraft

system-deps:
	@scripts/system-deps

# Lint, format check and type check (settings in pyproject.toml).
# All three run, so one report shows everything; any failure fails the target.
check: venv
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/python scripts/typecheck || status=1; \
	exit $$status

# A non-editable install into a fresh venv validates the shipped configs.
install-check:
	PYTHON=$(PYTHON) scripts/install-check

test: venv check system-deps install-check
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv system-deps
	$(BIN)/pytest -m "not integration and not backends" $(PYTEST_ARGS)

integration: venv system-deps
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

demo: venv system-deps
	scripts/demo

lab-up: venv system-deps
	$(BIN)/updraft lab up

lab-down: venv
	$(BIN)/updraft lab down

clean:
	rm -rf $(VENV) build *.egg-info
