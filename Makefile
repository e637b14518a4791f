# Lookalike: `make demo` and `make test` work from a clean clone.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := $(CURDIR)/.cache/models
DEMO_DIR ?= $(CURDIR)/data/demo
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test lint typecheck unit bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[samples,dev,postgres,mysql]'
	@touch $(STAMP)

# Converts the offline model once (cached in .cache/models), loads the sample photos, serves.
demo: $(STAMP)
	LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) $(BIN)/lookalike model pull efficientnet-lite0
	LOOKALIKE_AUTH=off LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) LOOKALIKE_DATA_DIR=$(DEMO_DIR) \
		$(BIN)/lookalike demo --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) $(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) $(BIN)/python bench/ingest.py
	$(BIN)/python bench/search.py

clean:
	rm -rf $(VENV) .cache data .pytest_cache .mypy_cache .ruff_cache
