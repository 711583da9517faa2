# flowdeck: `make run` serves the example flows, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install dev run test bench lint clean

$(BIN)/flowdeck: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(BIN)/flowdeck

$(VENV)/.dev: $(BIN)/flowdeck
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(VENV)/.dev

install: $(BIN)/flowdeck

dev: $(VENV)/.dev

run: install
	$(BIN)/flowdeck serve --host $(HOST) --port $(PORT) --flows examples/flows

test: dev
	$(BIN)/python -m pytest

bench: dev
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
