# flowdeck: `make run` serves the example flows, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install dev chromium everything phoenix run test reliability bench bench-lengths lint audit screenshots clean

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
	$(BIN)/flowdeck serve --host $(HOST) --port $(PORT) --flows examples/flows examples/composed \
		--servers examples/servers.json

# The browser tests drive Debian's Chromium (Playwright's own download does not work offline).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium for the browser tests"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi; }

# The reference MCP server the tests call (mcp nodes), from npm into a cache folder, once.
EVERYTHING_VERSION := 2026.8.31
EVERYTHING := .cache/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js
$(EVERYTHING):
	npm install --silent --no-audit --no-fund --prefix .cache/npm @modelcontextprotocol/server-everything@$(EVERYTHING_VERSION)

everything: $(EVERYTHING)

# A tracing backend the trace tests export to (Arize Phoenix: OTLP/HTTP in, spans queryable), in a
# virtualenv of its own: it is not a dependency of flowdeck, and its own would clash.
PHOENIX_VERSION := 20.26.1
PHOENIX := .cache/phoenix/bin/phoenix
$(PHOENIX):
	$(PYTHON) -m venv .cache/phoenix
	.cache/phoenix/bin/python -m pip install -q "arize-phoenix==$(PHOENIX_VERSION)"

phoenix: $(PHOENIX)

# two workers, a test file each at a time (a file's tests share its servers): most tests wait on
# servers, processes and a browser, so two keep two cores busy
test: dev chromium everything phoenix
	$(BIN)/python -m pytest --ignore=tests/reliability -n 2 --dist loadfile

# the crash rounds and the 10,000-call load tests (CI runs them after `make test`), with their figures
reliability: dev
	$(BIN)/python -m pytest tests/reliability -s -q

bench: dev everything
	$(BIN)/python -m bench.run $(if $(QUICK),--quick)

# tracking's cost by flow length (1 ms to 1 s), beside the database's own: a Markdown table
bench-lengths: dev
	$(BIN)/python -m bench.flow_length

screenshots: dev chromium everything
	$(BIN)/python -m tests.e2e.screenshots docs/screenshots

# known vulnerabilities in what is installed (asks pypi.org, so it needs the internet)
audit: dev
	$(BIN)/python -m pip install -q -e '.[audit]'
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache .cache
