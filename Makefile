# Two commands for a new user: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv on first use: torch 2.13.0 (CPU build) first, then the package.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs bench-teacher clean-venv

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# OCAtari (localization score) pins numpy<2 but runs with numpy 2 in RAM mode: its imports first,
	# then OCAtari itself last and without deps, so that pip has no pin to report
	$(BIN)/pip install -q termcolor scikit-image pygame
	$(BIN)/pip install -q --no-deps ocatari==2.2.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m rl_compress.demo

test: $(STAMP)
	$(BIN)/ruff check rl_compress tests experiments docs/hooks.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q
	$(BIN)/python -m pytest -q --durations=10

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "site: build/site/index.html (or: .venv/bin/mkdocs serve)"

bench-teacher: $(STAMP)
	$(BIN)/rl-compress bench teacher --json experiments/results/bench_teacher.json

clean-venv:
	rm -rf $(VENV)
