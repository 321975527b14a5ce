# Two commands do all set-up on a fresh machine with Python 3.11+: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q -n 4  # most tests wait on real processes: 4 at a time

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/run.py

.PHONY: bench-servers
bench-servers: $(STAMP)
	$(BIN)/python bench/servers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The documentation site (mkdocs, from docs/ and the docstrings) into site/; warnings fail it.
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
