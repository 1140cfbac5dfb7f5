# Two commands for a newcomer: `make run` (install + whole stack + demo) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run down test lint bytecode
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(MAKE) -s bytecode
	touch $@

# The workflow sandbox re-imports workflow modules for every new case: without .pyc files (e.g.
# under PYTHONDONTWRITEBYTECODE=1) each import recompiles from source (bench/README.md).
bytecode:
	$(BIN)/python -m compileall -q schemas decisions workflows activities

run: install
	$(BIN)/accord stack up --detach
	$(BIN)/accord stack status

down: install
	$(BIN)/accord stack down

# The cluster tests need the Go builds (Temporal server and UI, into the user cache: ~4 min the
# first time, nothing after) and PostgreSQL (`apt-get install postgresql`).
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/accord stack fetch --topology cluster
	# Two sessions: the time-skipping tier in its own (after the integration tier in one session
	# some workflow tests lost their server; not investigated further).
	$(BIN)/pytest tests/unit tests/workflow
	$(BIN)/pytest tests/contract tests/integration tests/cluster

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
