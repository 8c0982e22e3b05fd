# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench schemas docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/agentic run demo --topic "durable agent workflows"

# Two parts: most tests on two processes, then the `serial` ones (timing, fail-over) alone.
test: setup
	@status=0; \
	$(BIN)/pytest -q -n 2 -m "not serial" || status=$$?; \
	$(BIN)/pytest -q -m serial || status=$$?; \
	exit $$status

lint: setup
	$(BIN)/ruff check agentic services tests benchmarks scripts
	$(BIN)/ruff format --check agentic services tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python -m benchmarks.run_all

schemas: setup
	$(BIN)/python -m agentic.schemas_export

docs: setup
	$(BIN)/python -m agentic.settings > docs/settings.md

clean:
	rm -rf $(VENV) .agentic .pytest_cache .mypy_cache .ruff_cache
