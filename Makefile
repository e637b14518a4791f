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

WEB := web
WEB_STAMP := $(WEB)/node_modules/.installed
OUT := $(CURDIR)/test-output
CHROMIUM := /usr/bin/chromium
CLAMD := /usr/sbin/clamd

.PHONY: demo test lint typecheck unit unit-main unit-milvus bench venv clean web web-check api-types e2e chromium clamav

venv: $(STAMP)

# llama.cpp's server and a small model for the answer tests (the llm-test extra): without a job
# count its build starts a compiler per source file at once (~20 GB); built for any x86-64 with
# AVX2, not just this CPU, since pip's wheel cache may serve the wheel to another machine.
LLM_STAMP := $(VENV)/.installed-llm
LLAMA_CMAKE_ARGS := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF \
	-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

$(LLM_STAMP): $(STAMP)
	LLAMA_CPP_BUILD_JOBS=2 CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		$(BIN)/python -m pip install --quiet -e '.[llm-test]'
	@touch $(LLM_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[samples,dev,postgres,mysql,s3,milvus,pgvector,qdrant,redis,documents]'
	$(BIN)/python -m pip install --quiet --no-deps 'rapidocr-onnxruntime>=1.3,<2'
	@touch $(STAMP)

# npm ci again only when the lock file changed.
$(WEB_STAMP): $(WEB)/package-lock.json $(WEB)/package.json
	cd $(WEB) && npm ci --no-audit --no-fund
	@touch $(WEB_STAMP)

# The web app's bundle in web/dist, which `lookalike serve` serves at /.
web: $(WEB_STAMP)
	cd $(WEB) && npm run build

# Regenerates the web app's API types from the OpenAPI document (after an API change).
api-types: $(STAMP) $(WEB_STAMP)
	@mkdir -p $(OUT)
	$(BIN)/python scripts/openapi.py > $(OUT)/openapi.json
	cd $(WEB) && npm run --silent gen:api -- $(OUT)/openapi.json -o src/api/schema.d.ts

# Types, lint, component tests, and the committed API types against the current API.
web-check: $(STAMP) $(WEB_STAMP)
	cd $(WEB) && npm run typecheck && npm run lint && npx vitest run
	@mkdir -p $(OUT)
	$(BIN)/python scripts/openapi.py > $(OUT)/openapi.json
	cd $(WEB) && npm run --silent gen:api -- $(OUT)/openapi.json -o $(OUT)/schema.d.ts
	@diff -u $(WEB)/src/api/schema.d.ts $(OUT)/schema.d.ts > $(OUT)/schema.diff || { \
		cat $(OUT)/schema.diff; \
		echo "web/src/api/schema.d.ts is stale: run 'make api-types' and commit it"; exit 1; }

# The end-to-end tests drive Debian's Chromium (never a downloaded browser).
chromium:
	@test -x $(CHROMIUM) || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y chromium chromium-driver || \
		{ apt-get update && apt-get install -y chromium chromium-driver; }; }

# The virus-scan tests start their own clamd (own config, socket and EICAR-only signatures) from
# Debian's clamav-daemon. The packaged services are kept from starting and disabled: they would
# have no signatures, and freshclam would reach for the internet.
clamav:
	@test -x $(CLAMD) || { export DEBIAN_FRONTEND=noninteractive; \
		policy=/usr/sbin/policy-rc.d; ours=; \
		test -e $$policy || { printf '#!/bin/sh\nexit 101\n' > $$policy; chmod +x $$policy; ours=1; }; \
		apt-get install -y --no-install-recommends clamav-daemon || \
		{ apt-get update && apt-get install -y --no-install-recommends clamav-daemon; }; \
		status=$$?; test -z "$$ours" || rm -f $$policy; \
		systemctl disable clamav-daemon.socket clamav-daemon clamav-freshclam >/dev/null 2>&1; \
		exit $$status; }

# Real server, real collection, real browser; screenshots in test-output/screenshots.
e2e: $(STAMP) $(LLM_STAMP) web chromium
	LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) WEB_E2E_OUT=$(OUT) WEB_E2E_REQUIRED=1 \
		$(BIN)/pytest -q -m e2e tests/e2e

# Converts the offline model once (cached in .cache/models), loads the sample photos, serves.
demo: $(STAMP) web
	LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) $(BIN)/lookalike model pull efficientnet-lite0
	LOOKALIKE_AUTH=off LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) LOOKALIKE_DATA_DIR=$(DEMO_DIR) \
		$(BIN)/lookalike demo --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The Milvus tests mostly wait on the Milvus server (its collections take seconds to load), so
# they run beside the rest instead of after it; each half prints when it is done.
unit: $(STAMP) clamav
	$(MAKE) --no-print-directory -j2 --output-sync=target unit-main unit-milvus

unit-main: $(STAMP) $(LLM_STAMP)
	LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) $(BIN)/pytest -q -p no:cacheprovider -m "not e2e and not milvus"

unit-milvus: $(STAMP)
	LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) $(BIN)/pytest -q -p no:cacheprovider -m milvus tests/vectors

test: lint typecheck web-check unit e2e

bench: $(STAMP)
	LOOKALIKE_MODEL_CACHE_DIR=$(MODELS) $(BIN)/python bench/ingest.py
	$(BIN)/python bench/search.py

clean:
	rm -rf $(VENV) .cache data .pytest_cache .mypy_cache .ruff_cache test-output \
		$(WEB)/node_modules $(WEB)/dist
