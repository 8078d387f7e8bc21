# Two commands for a new user: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv on first use: torch 2.13.0 first, then the package. TORCH_INDEX picks the build:
# make TORCH_INDEX=https://download.pytorch.org/whl/cpu (CPU only) or the whl/cu1xx index of your CUDA.
PY ?= python3
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow docs bench-teacher gpu-check clean-venv

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[test]"
	# OCAtari (localization score) pins numpy<2 but runs with numpy 2 in RAM mode: its imports come
	# with the [score] extra (in [test]), OCAtari itself last and without deps, so that pip has no pin to report
	$(BIN)/pip install -q --no-deps ocatari==2.2.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m rl_compress.demo

test: $(STAMP)
	$(BIN)/ruff check rl_compress tests experiments docs/hooks.py examples
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15

# the checks marked slow (not in `make test`)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "site: build/site/index.html (or: .venv/bin/mkdocs serve)"

bench-teacher: $(STAMP)
	$(BIN)/rl-compress bench teacher --json experiments/results/bench_teacher.json

# On a machine with a CUDA GPU (~5 min): the tests marked gpu, then our DQN against SB3's on that GPU
gpu-check: $(STAMP)
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: torch sees no CUDA device (torch ' + torch.__version__ + ')')"
	$(BIN)/python -m pytest -q -m gpu -p no:cacheprovider tests/test_device.py
	$(BIN)/rl-compress bench teacher --device cuda --env-threads 0 --json experiments/results/bench_teacher_cuda.json

clean-venv:
	rm -rf $(VENV)
