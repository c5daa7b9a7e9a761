# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := examples/ml/pipeline.py:Evaluate
DEMO_DATA := examples/ml/data

.PHONY: demo test services lint bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,demo]"
	touch $(VENV)/.installed $@

## demo: install, then run a real ML pipeline end to end (SQLite run record in .dagmill/)
demo: $(VENV)/.installed
	@bash examples/ml/demo.sh $(BIN)/dagmill $(DEMO) $(DEMO_DATA)

## test: install dev extras, lint, type-check, check layers, run the whole suite
## (pytest-xdist, one worker per core: most tests wait on the subprocesses they start;
## every test has its own tmp dir, DAGMILL_HOME and database, so any order works)
test: $(VENV)/.installed-dev services
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n auto --dist worksteal

## services: the local servers the tests talk to (PostgreSQL); started if they are down
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
	  || { command -v pg_ctlcluster >/dev/null \
	       && pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start \
	       && for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; } \
	  || echo "PostgreSQL is not running and could not be started: the PostgreSQL tests will fail"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix src tests examples bench
	$(BIN)/ruff format src tests examples bench

## bench: engine overhead figures, then `dagmill server` with 1,000 scheduled jobs
## (due -> task latency, idle CPU and memory, start-up); plain scripts, print medians
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/scheduler.py

## chaos: kill -9 the engine 30 times and resume; two runs of one graph 30 times (counts)
chaos: $(VENV)/.installed-dev
	-$(BIN)/python bench/chaos_kill.py
	-$(BIN)/python bench/chaos_concurrent.py

clean:
	rm -rf $(VENV) .dagmill $(DEMO_DATA) .pytest_cache .mypy_cache .ruff_cache
