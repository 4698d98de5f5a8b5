# comms-bridge developer entry points. Everything installs itself into .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
SAM_STAMP := $(SAM_VENV)/.installed
SAM_CLI_VERSION := 1.170.0
UV_VERSION := 0.13.8
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION := 3.3.30
# The template's Fn::ForEach (one poller schedule per account) needs SAM CLI's local AWS::LanguageExtensions
# expansion, which it runs only when asked (docs/many-accounts.md).
export SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS := 1
PY_SOURCES := layers/shared/python/comms_bridge simulator/comms_sim tools/comms_bridge_tools functions benchmarks

.PHONY: help setup test lint typecheck cfn-lint checkov unit docs demo local bench bench-1m build deploy delete lock clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Two stages: what the demo and the local stack need (runtime dependencies, moto server, the simulator, the
# renderer), then the lint/type/test/docs toolchain on top. `make demo` and `make local` stop at the first.
$(DEMO_STAMP): requirements-demo.txt layers/shared/requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-demo.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(STAMP): $(DEMO_STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(SAM_STAMP):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

# Its own virtualenv: checkov pins versions of libraries the project uses too.
$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	@touch $@

setup: $(STAMP) ## create .venv with every dependency (done by the other targets too)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on the package, the simulator, the tools, the handlers and the benchmarks
	$(BIN)/mypy $(PY_SOURCES)

cfn-lint: $(STAMP) $(SAM_STAMP) ## cfn-lint and sam validate --lint on template.yaml
	$(BIN)/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(SAM_VENV)/bin/sam validate --lint --template template.yaml

checkov: $(CHECKOV_STAMP) ## checkov on template.yaml: every finding fixed, or skipped next to its resource with a reason
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

unit: $(STAMP) ## unit tests only (no servers)
	$(BIN)/pytest tests/product/unit

test: $(STAMP) lint typecheck cfn-lint checkov docs ## everything CI runs: lint, types, template checks, all tests, the docs
	$(BIN)/pytest

docs: $(STAMP) ## the documentation site into site/ (mkdocs build --strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: $(DEMO_STAMP) ## the whole pipeline locally: simulator + moto server + both functions (ARGS=--fast, --push ...)
	$(BIN)/python -m comms_bridge_tools.demo $(ARGS)

local: $(DEMO_STAMP) ## simulator + moto provisioned from template.yaml for the CLI; prints the exports (Ctrl-C stops)
	$(BIN)/python -m comms_bridge_tools.local_up $(ARGS)

bench: $(STAMP) ## cost and speed figures against the simulator and moto server, the targets with PASS/FAIL
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.push
	$(BIN)/python -m benchmarks.accounts

bench-1m: $(STAMP) ## the 1M-operation window and 100k beside it, resumable bootstraps (hours; bench-results/scale.json)
	$(BIN)/python -m benchmarks.run --scale

build: $(STAMP) $(SAM_STAMP) ## sam build for python3.13/arm64 (no Docker) and check the built layer
	$(SAM_VENV)/bin/sam build --template template.yaml
	$(BIN)/python -m comms_bridge_tools.check_build .aws-sam/build

lock: $(STAMP) ## pin the layer's dependencies with their hashes: requirements.txt -> requirements.lock
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile --quiet --generate-hashes --python-platform aarch64-manylinux_2_17 --python-version 3.13 \
		--custom-compile-command "make lock" layers/shared/requirements.txt -o layers/shared/requirements.lock

# The first deploy is guided and saves the answers in samconfig.toml; later ones read it (see
# samconfig.toml.example). ARGS go to sam deploy, e.g. ARGS="--parameter-overrides AlertEmail=me@example.com".
deploy: build ## sam deploy: --guided the first time, then from samconfig.toml (ARGS=...)
	@if [ -f samconfig.toml ]; then \
		echo "$(SAM_VENV)/bin/sam deploy $(ARGS)   (settings from samconfig.toml)"; \
		$(SAM_VENV)/bin/sam deploy $(ARGS); \
	else \
		echo "no samconfig.toml yet: sam deploy --guided asks for each setting and saves your answers there"; \
		$(SAM_VENV)/bin/sam deploy --guided $(ARGS); \
	fi

delete: $(SAM_STAMP) ## sam delete the stack of samconfig.toml (remove your own rules on its bus first)
	$(SAM_VENV)/bin/sam delete $(ARGS)

clean: ## remove the virtualenvs and build output
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache site
