# Two commands for a newcomer: `make run` (install + whole stack + demo) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run down test lint
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

run: install
	$(BIN)/accord stack up --detach
	$(BIN)/accord stack status

down: install
	$(BIN)/accord stack down

test: install
	$(BIN)/ruff check .
	$(BIN)/accord stack fetch
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
