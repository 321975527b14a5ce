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
	$(BIN)/python -m pytest -q -n 4 --dist loadgroup  # 4 at a time; the chaos runs one by one

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/run.py

.PHONY: bench-servers
bench-servers: $(STAMP)
	$(BIN)/python bench/servers.py

# Long fault-injection runs at full size (several minutes; not part of `make test`, which runs
# each scenario small): the kill storm and the soak on SQLite, Redis and PostgreSQL, and the
# 16-producer SQLite hammer. Figures go to docs/guarantees.md.
.PHONY: chaos
CHAOS := $(BIN)/python -m conveyor.testing.chaos
chaos: $(STAMP)
	$(CHAOS) storm --backend sqlite --backend redis --backend postgresql
	$(CHAOS) soak --backend sqlite --backend redis --backend postgresql
	$(CHAOS) hammer

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The documentation site (mkdocs, from docs/ and the docstrings) into site/; warnings fail it.
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Django 6's own django.tasks needs Python 3.12+: run the Django tests there too when such a
# Python works here; the main suite runs them on Django 5 with the django-tasks backport.
.PHONY: test-django6
test-django6:
	@py=""; for c in python3.13 python3.12 $$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python 2>/dev/null); do \
	  if $$c -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then py=$$c; break; fi; done; \
	if [ -z "$$py" ]; then echo "test-django6: no Python 3.12+ here, skipped"; exit 0; fi; \
	test -x .venv-django6/bin/python || $$py -m venv .venv-django6; \
	.venv-django6/bin/python -m pip install -q 'django>=6,<7' 'psycopg[binary]>=3.2' pytest \
	  pytest-timeout hypothesis -e . && \
	.venv-django6/bin/python -m pytest -q -p no:cacheprovider tests/contrib/test_django.py
