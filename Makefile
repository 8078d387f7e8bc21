# Two commands for a new user: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv on first use: torch 2.13.0 (CPU build) first, then the package.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench-teacher clean-venv

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# OCAtari (localization score) pins numpy<2 but runs with numpy 2 in RAM mode: no deps
	$(BIN)/pip install -q --no-deps ocatari==2.2.1
	$(BIN)/pip install -q termcolor scikit-image pygame
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m rl_compress.demo

test: $(STAMP)
	$(BIN)/ruff check rl_compress tests experiments
	$(BIN)/python -m pytest -q --durations=10

bench-teacher: $(STAMP)
	$(BIN)/rl-compress bench teacher --json experiments/results/bench_teacher.json

clean-venv:
	rm -rf $(VENV)
