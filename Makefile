# Two entry points (README quickstart): `make run` (main job) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-ray

.PHONY: run test bench gallery server server-stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# the sweep's figures are drawn by the plots command, into figures/quickstart/ and onto the parent
run: $(STAMP)
	$(BIN)/python -m experiments.train -m experiment=quickstart mlflow.sweep_figures=false
	$(BIN)/python -m experiments.plots --experiment quickstart --formats png

# the Ray launcher's test needs the `ray` extra (large: `make run` does without it)
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $(TEST_STAMP)

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 --dist loadgroup  # two workers: most tests wait on processes they start

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_tracking.py
	$(BIN)/python benchmarks/bench_plots.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_peer.py

gallery: $(STAMP)
	$(BIN)/python -m experiments.figures.gallery

# A local MLflow server on PostgreSQL (data in ./mlflow-server/); see `python -m experiments.server -h`
server: $(STAMP)
	$(BIN)/python -m experiments.server start

server-stop: $(STAMP)
	$(BIN)/python -m experiments.server stop
